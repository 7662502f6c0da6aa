//! proto <-> domain: encoding results here, decoding and validating
//! requests into commands' inputs in [`accounts`] and [`auth`]. Nothing
//! else in the crate sees a proto type.

pub mod accounts;
pub mod auth;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use steward_kit::{
    Error, FieldViolations,
    page::{self, Page, PageTokens},
    validate::{DEFAULT_PAGE, MAX_PAGE},
};
use steward_proto::{accounts as pb, common};
use uuid::Uuid;

use crate::{
    collaboration::store::Direction,
    domain::{
        Collaboration, CollaborationStatus, ErasureMode, Group, Role, Settings, StatusAction, User,
        UserStatus,
    },
    users::{batch::Outcome, store::Order},
};

/// One id; a violation names `field`.
pub fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    let id = steward_kit::validate::id(field, raw, &mut v);
    v.check()?;
    Ok(id)
}

/// A validated list request: what to list, and which page.
pub struct Query<F, C> {
    pub filter: F,
    /// Binds page tokens to this query.
    pub fingerprint: String,
    pub page: Page<C>,
}

/// A list request: its page's violations join the request's others `v`.
pub fn query<F, C: DeserializeOwned>(
    tokens: &PageTokens,
    filter: F,
    fingerprint: String,
    request: Option<&common::PageRequest>,
    mut v: FieldViolations,
) -> Result<Query<F, C>, Error> {
    let page = tokens
        .page(&fingerprint, request, DEFAULT_PAGE, MAX_PAGE)
        .map_err(|e| v.merge(e));
    v.check()?;
    Ok(Query {
        filter,
        fingerprint,
        page: page.expect("a page error is a violation"),
    })
}

impl<F, C: serde::Serialize> Query<F, C> {
    /// Cuts the probe row and encodes the next page's token.
    pub fn split<T>(
        &self,
        tokens: &PageTokens,
        rows: Vec<T>,
        cursor: impl Fn(&T) -> C,
    ) -> (Vec<T>, Option<common::PageResponse>) {
        let (rows, next_page_token) = page::split(rows, self.page.size, |row| {
            tokens.encode(&self.fingerprint, &cursor(row))
        });
        (rows, Some(common::PageResponse { next_page_token }))
    }
}

/// The outcome of one user of a batch.
pub fn user_result(o: &Outcome) -> pb::UserResult {
    let (result, reason, message) = match &o.refusal {
        None => (common::Result::Success, String::new(), String::new()),
        Some(r) => (
            common::Result::Failure,
            r.reason.to_owned(),
            r.message.clone(),
        ),
    };
    pb::UserResult {
        user_id: o.id.to_string(),
        result: result as i32,
        reason,
        message,
        user: o.user.as_ref().map(user),
    }
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn status(s: UserStatus) -> pb::UserStatus {
    match s {
        UserStatus::Active => pb::UserStatus::Active,
        UserStatus::Inactive => pb::UserStatus::Inactive,
        UserStatus::Suspended => pb::UserStatus::Suspended,
        UserStatus::Destroyed => pb::UserStatus::Destroyed,
        UserStatus::Deleted => pb::UserStatus::Deleted,
    }
}

pub fn status_from(s: pb::UserStatus) -> Option<UserStatus> {
    Some(match s {
        pb::UserStatus::Unspecified => return None,
        pb::UserStatus::Active => UserStatus::Active,
        pb::UserStatus::Inactive => UserStatus::Inactive,
        pb::UserStatus::Suspended => UserStatus::Suspended,
        pb::UserStatus::Destroyed => UserStatus::Destroyed,
        pb::UserStatus::Deleted => UserStatus::Deleted,
    })
}

pub fn role(r: Role) -> pb::Role {
    match r {
        Role::User => pb::Role::User,
        Role::UserAdmin => pb::Role::UserAdmin,
        Role::PlatformService => pb::Role::PlatformService,
    }
}

/// Roles from a request: known, distinct, sorted.
pub fn roles_from(field: &str, raw: &[i32], v: &mut FieldViolations) -> Vec<Role> {
    let mut roles = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        match pb::Role::try_from(*r) {
            Ok(pb::Role::User) => roles.push(Role::User),
            Ok(pb::Role::UserAdmin) => roles.push(Role::UserAdmin),
            Ok(pb::Role::PlatformService) => roles.push(Role::PlatformService),
            _ => v.add(format!("{field}[{i}]"), "unknown role"),
        }
    }
    roles.sort_by_key(|r| r.as_str());
    roles.dedup();
    roles
}

pub fn user(u: &User) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        email: u.email.clone(),
        status: status(u.status) as i32,
        group: u.group.clone(),
        roles: u.roles.iter().map(|r| role(*r) as i32).collect(),
        phone: u.phone.clone(),
        signup_time: Some(timestamp(u.signup_at)),
        reseller: u.reseller.clone().unwrap_or_default(),
        notes: u.notes.clone(),
        ext_billing_id: u.ext_billing_id.clone().unwrap_or_default(),
        two_factor_state: if u.two_factor_enabled {
            pb::TwoFactorState::Enabled
        } else {
            pb::TwoFactorState::Disabled
        } as i32,
        upgrade_in_progress: u.upgrade_in_progress,
        etag: u.etag(),
        update_time: Some(timestamp(u.updated_at)),
        destroy_time: u.destroyed_at.map(timestamp),
    }
}

pub fn group(g: &Group) -> pb::Group {
    pb::Group {
        name: g.name.clone(),
        display_name: g.display_name.clone(),
        built_in: g.built_in,
        create_time: Some(timestamp(g.created_at)),
    }
}

pub fn settings(s: &Settings) -> pb::Settings {
    pb::Settings {
        erasure_mode: match s.erasure_mode {
            ErasureMode::Anonymization => pb::ErasureMode::Anonymization,
            ErasureMode::Pseudoanonymization => pb::ErasureMode::Pseudoanonymization,
        } as i32,
        auto_erase_enabled: s.auto_erase_enabled,
        auto_erase_delay_days: s.auto_erase_delay_days,
    }
}

pub fn erasure_mode_from(raw: i32) -> Option<ErasureMode> {
    match pb::ErasureMode::try_from(raw) {
        Ok(pb::ErasureMode::Anonymization) => Some(ErasureMode::Anonymization),
        Ok(pb::ErasureMode::Pseudoanonymization) => Some(ErasureMode::Pseudoanonymization),
        _ => None,
    }
}

pub fn collaboration(c: &Collaboration) -> pb::Collaboration {
    pb::Collaboration {
        id: c.id.to_string(),
        owner_user_id: c.owner_id.to_string(),
        owner_email: c.owner_email.clone(),
        collaborator_user_id: c.collaborator_id.to_string(),
        collaborator_email: c.collaborator_email.clone(),
        status: match c.status {
            CollaborationStatus::Pending => pb::CollaborationStatus::Pending,
            CollaborationStatus::Active => pb::CollaborationStatus::Active,
            CollaborationStatus::Revoked => pb::CollaborationStatus::Revoked,
        } as i32,
        create_time: Some(timestamp(c.created_at)),
        update_time: Some(timestamp(c.updated_at)),
    }
}

pub fn direction_from(raw: i32) -> Option<Direction> {
    match pb::CollaborationDirection::try_from(raw) {
        Ok(pb::CollaborationDirection::Unspecified | pb::CollaborationDirection::SharedByUser) => {
            Some(Direction::SharedByUser)
        }
        Ok(pb::CollaborationDirection::SharedWithUser) => Some(Direction::SharedWithUser),
        Err(_) => None,
    }
}

pub fn order_from(raw: i32) -> Option<Order> {
    match pb::UserOrderBy::try_from(raw) {
        Ok(pb::UserOrderBy::Unspecified | pb::UserOrderBy::SignupTimeDesc) => {
            Some(Order::SignupDesc)
        }
        Ok(pb::UserOrderBy::SignupTimeAsc) => Some(Order::SignupAsc),
        Ok(pb::UserOrderBy::EmailAsc) => Some(Order::EmailAsc),
        Ok(pb::UserOrderBy::EmailDesc) => Some(Order::EmailDesc),
        Err(_) => None,
    }
}

pub fn action_from(raw: i32) -> Option<StatusAction> {
    match pb::StatusAction::try_from(raw) {
        Ok(pb::StatusAction::Activate) => Some(StatusAction::Activate),
        Ok(pb::StatusAction::Suspend) => Some(StatusAction::Suspend),
        Ok(pb::StatusAction::Deactivate) => Some(StatusAction::Deactivate),
        Ok(pb::StatusAction::Destroy) => Some(StatusAction::Destroy),
        _ => None,
    }
}
