//! `steward.accounts.v1.AccountsService`: the only module that sees proto
//! types. Each handler: caller + context, validate, one transaction holding
//! the change, its audit record (and notifications), and the idempotency
//! key; refusals are audited as FAILURE in a transaction of their own.

pub mod auth;
pub mod convert;

use std::collections::HashMap;

use diesel_async::AsyncConnection;
use steward_kit::{
    FieldViolations,
    auth::{Caller, Grant},
    db::{Pool, PooledConnection},
    idempotency,
    outbox::{self, AuditRecord},
    page::{self, PageTokens},
};
use steward_proto::{accounts as pb, common, notifications::Notification};
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use crate::{
    commands::{self, NewUserInput},
    domain::{self, Refusal, User, UserStatus, collaboration, status::transition, validate},
    error::{Error, denied},
    store::{
        collaborations, groups, settings,
        users::{self, Cursor, Filter, UserChanges},
    },
};

/// The `source` and `product` of accounts' audit events.
pub const SOURCE: &str = "accounts";

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

#[derive(Clone)]
pub struct AccountsApi {
    pool: Pool,
    tokens: PageTokens,
}

impl AccountsApi {
    pub fn new(pool: Pool, tokens: PageTokens) -> Self {
        Self { pool, tokens }
    }

    async fn conn(&self) -> Result<PooledConnection<'_>, Error> {
        Ok(self.pool.get().await?)
    }

    /// Moves a collaboration to the status `rule` allows, audited on the
    /// owner's log. Refusals naming the caller are PERMISSION_DENIED.
    async fn transition_collaboration(
        &self,
        record: &AuditRecord,
        collaboration_id: &str,
        rule: impl FnOnce(&domain::Collaboration) -> Result<domain::CollaborationStatus, Refusal> + Send,
    ) -> Result<pb::Collaboration, Error> {
        let id = parse_id("collaboration_id", collaboration_id)?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let current = collaborations::lock(conn, id)
                .await?
                .ok_or_else(|| Error::not_found("collaboration", id))?;
            let status = rule(&current).map_err(|refusal| match refusal.reason {
                collaboration::NOT_COLLABORATOR | collaboration::NOT_A_PARTY => {
                    Error::Refused(Code::PermissionDenied, refusal)
                }
                _ => Error::Refused(Code::FailedPrecondition, refusal),
            })?;
            let updated = collaborations::set_status(conn, id, status).await?;
            record
                .clone()
                .subject(&current.owner_id.to_string())
                .comment("collaboration_id", id.to_string())
                .write(conn)
                .await?;
            Ok(convert::collaboration(&updated))
        })
        .await
    }
}

/// Claims the request's idempotency key inside the transaction; `Some`
/// holds the first execution's response to replay.
/// Keys are scoped to the method and the caller: two callers never see
/// each other's responses, however they choose keys.
fn scope(method: &str, caller: &Caller) -> String {
    format!("{method}:{}", caller.user_id)
}

fn parse_id(field: &str, raw: &str) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id(field, raw, &mut v);
    v.check()?;
    Ok(id)
}

fn check_etag(user: &User, etag: &str) -> Result<(), Error> {
    if !etag.is_empty() && etag != user.etag() {
        return Err(Error::Refused(
            Code::Aborted,
            Refusal::new(
                "ETAG_MISMATCH",
                "the user changed since it was read; read it again and retry",
            ),
        ));
    }
    Ok(())
}

fn ensure_live(user: &User) -> Result<(), Error> {
    match user.status {
        UserStatus::Deleted => Err(Error::precondition(
            "USER_DELETED",
            "user's personal data was erased",
        )),
        UserStatus::Destroyed => Err(Error::precondition("USER_DESTROYED", "user is destroyed")),
        _ => Ok(()),
    }
}

fn group_exists(name: &str) -> Error {
    Error::Refused(
        Code::AlreadyExists,
        Refusal::new("GROUP_EXISTS", format!("group {name} exists")),
    )
}

fn success(user: &User) -> pb::UserResult {
    pb::UserResult {
        user_id: user.id.to_string(),
        result: common::Result::Success as i32,
        reason: String::new(),
        message: String::new(),
        user: Some(convert::user(user)),
    }
}

fn failure(id: Uuid, user: Option<&User>, reason: &str, message: &str) -> pb::UserResult {
    pb::UserResult {
        user_id: id.to_string(),
        result: common::Result::Failure as i32,
        reason: reason.to_owned(),
        message: message.to_owned(),
        user: user.map(convert::user),
    }
}

fn notification(
    template_id: &str,
    recipients: Vec<String>,
    subject: &User,
    params: HashMap<String, String>,
) -> (Uuid, Notification) {
    let id = Uuid::now_v7();
    (
        id,
        Notification {
            event_id: id.to_string(),
            occurred_at: Some(convert::timestamp(chrono::Utc::now())),
            template_id: template_id.to_owned(),
            recipients,
            subject_user_id: subject.id.to_string(),
            params,
            source: SOURCE.to_owned(),
        },
    )
}

async fn load_user(conn: &mut diesel_async::AsyncPgConnection, id: Uuid) -> Result<User, Error> {
    users::lock(conn, id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))
}

#[tonic::async_trait]
impl pb::accounts_service_server::AccountsService for AccountsApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "user.created", &request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = FieldViolations::new();
            let email = validate::email("email", &r.email, &mut v);
            let group = if r.group.is_empty() {
                "trial".to_owned()
            } else {
                r.group.clone()
            };
            let phone = r
                .phone
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| validate::phone("phone", p, &mut v));
            validate::notes("notes", &r.notes, &mut v);
            validate::short_text("reseller", &r.reseller, &mut v);
            validate::short_text("ext_billing_id", &r.ext_billing_id, &mut v);
            let mut roles = convert::roles_from("roles", &r.roles, &mut v);
            if roles.is_empty() {
                roles.push(domain::Role::User);
            }
            // Granting power is SetRoles' business: only an administrator
            // may create anything but a plain user.
            let grants_power = roles.iter().any(|r| *r != domain::Role::User);
            if grants_power && caller.grant != Grant::Role(domain::Role::UserAdmin) {
                return Err(Error::Refused(
                    Code::PermissionDenied,
                    Refusal::new(
                        "ROLE_GRANT_REQUIRES_ADMIN",
                        "only a USER_ADMIN may create users with roles beyond USER",
                    ),
                ));
            }
            let status = match pb::UserStatus::try_from(r.initial_status) {
                Ok(pb::UserStatus::Unspecified | pb::UserStatus::Active) => UserStatus::Active,
                Ok(pb::UserStatus::Inactive) => UserStatus::Inactive,
                _ => {
                    v.add("initial_status", "must be ACTIVE or INACTIVE");
                    UserStatus::Active
                }
            };
            if !r.password.is_empty() && r.password.chars().count() < 12 {
                v.add("password", "must be at least 12 characters");
            }
            if r.request_id.len() > 128 {
                v.add("request_id", "must be at most 128 characters");
            }
            v.check()?;
            let password_hash = match r.password.is_empty() {
                true => None,
                false => Some(commands::hash_password(r.password.clone()).await?),
            };
            let input = NewUserInput {
                email,
                group,
                roles,
                phone,
                reseller: Some(r.reseller.clone()).filter(|s| !s.is_empty()),
                ext_billing_id: Some(r.ext_billing_id.clone()).filter(|s| !s.is_empty()),
                notes: r.notes.clone(),
                status,
                password_hash,
            };
            let fingerprint = idempotency::fingerprint(&pb::CreateUserRequest {
                password: String::new(),
                ..r.clone()
            });
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) = idempotency::replay(
                    conn,
                    &scope("CreateUser", &caller),
                    &r.request_id,
                    &fingerprint,
                )
                .await?
                {
                    return Ok(previous);
                }
                let user = commands::create_user(conn, input, record.clone()).await?;
                let response = pb::CreateUserResponse {
                    user: Some(convert::user(&user)),
                };
                idempotency::remember(
                    conn,
                    &scope("CreateUser", &caller),
                    &r.request_id,
                    &response,
                )
                .await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = parse_id("user_id", &r.user_id)?;
        caller.ensure_may_act_on(&r.user_id)?;
        let mut conn = self.conn().await?;
        let user = users::get(&mut conn, id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("user", id))?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(convert::user(&user)),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "user.profile.updated", &request)?;
        let r = request.into_inner();
        let target = r.user.as_ref().map(|u| u.id.clone()).unwrap_or_default();
        let record = record.subject(&target);
        let result = async {
            let Some(patch) = r.user else {
                return Err(FieldViolations::single("user", "required").into());
            };
            let id = parse_id("user.id", &patch.id)?;
            caller.ensure_may_act_on(&patch.id).map_err(denied)?;
            let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
            let mut v = FieldViolations::new();
            if paths.is_empty() {
                v.add("update_mask", "name the fields to update");
            }
            let mut changes = UserChanges::default();
            let mut admin_only = Vec::new();
            for path in &paths {
                let field = format!("user.{path}");
                match path.as_str() {
                    "phone" => {
                        changes.phone = Some(patch.phone.as_deref().filter(|p| !p.is_empty()).map(|p| validate::phone(&field, p, &mut v)));
                    }
                    "notes" => {
                        validate::notes(&field, &patch.notes, &mut v);
                        changes.notes = Some(patch.notes.clone());
                        admin_only.push(path.clone());
                    }
                    "two_factor_state" => {
                        match pb::TwoFactorState::try_from(patch.two_factor_state) {
                            Ok(pb::TwoFactorState::Disabled) => changes.two_factor_enabled = Some(false),
                            _ => v.add(&field, "may only be set to DISABLED; users enable it by enrolling a second factor"),
                        }
                        admin_only.push(path.clone());
                    }
                    "upgrade_in_progress" => {
                        changes.upgrade_in_progress = Some(patch.upgrade_in_progress);
                        admin_only.push(path.clone());
                    }
                    "id" | "signup_time" | "reseller" | "ext_billing_id" => v.add(&field, "immutable"),
                    "email" => v.add(&field, "changed with ChangeEmail"),
                    "status" => v.add(&field, "changed with BatchChangeStatus or BatchDeletePersonalData"),
                    "group" => v.add(&field, "changed with BatchChangeGroup"),
                    "roles" => v.add(&field, "changed with SetRoles"),
                    "etag" | "update_time" | "destroy_time" => v.add(&field, "output only"),
                    _ => v.add(&field, "unknown field"),
                }
            }
            v.check()?;
            if !caller.is_privileged() && !admin_only.is_empty() {
                return Err(Error::Refused(
                    Code::PermissionDenied,
                    Refusal::new("ADMIN_ONLY_FIELD", format!("only an administrator may change {}", admin_only.join(", "))),
                ));
            }
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                check_etag(&user, &patch.etag)?;
                ensure_live(&user)?;
                let updated = users::update(conn, id, changes).await?;
                record.clone().comment("fields", paths.join(",")).write(conn).await?;
                Ok(pb::UpdateUserResponse { user: Some(convert::user(&updated)) })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let order = convert::order_from(r.order_by).unwrap_or_else(|| {
            v.add("order_by", "unknown order");
            users::Order::default()
        });
        let status = match pb::UserStatus::try_from(r.status) {
            Ok(s) => convert::status_from(s),
            Err(_) => {
                v.add("status", "unknown status");
                None
            }
        };
        let query = r.query.trim();
        let mut filter = Filter {
            group: Some(r.group.clone()).filter(|g| !g.is_empty()),
            status,
            ..Filter::default()
        };
        // Only the hyphenated form is an id: 32 hex digits may be an
        // (erased) email digest.
        match Uuid::try_parse(query)
            .ok()
            .filter(|_| query.len() == 36)
            .ok_or(())
        {
            Ok(id) => filter.id = Some(id),
            Err(_) if !query.is_empty() => filter.email_contains = Some(query.to_lowercase()),
            Err(_) => {}
        }
        let fingerprint = format!(
            "users|{:?}|{:?}|{:?}|{:?}|{:?}",
            filter.group, filter.status, filter.id, filter.email_contains, order
        );
        let page =
            match self
                .tokens
                .page::<Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            {
                Ok(page) => Some(page),
                Err(e) => {
                    v.merge(e);
                    None
                }
            };
        v.check().map_err(Error::from)?;
        let page = page.expect("checked above");
        let mut conn = self.conn().await?;
        let rows = users::list(&mut conn, &filter, order, page.after.as_ref(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page::split(rows, page.size, |u| {
            self.tokens.encode(&fingerprint, &Cursor::of(u, order))
        });
        Ok(Response::new(pb::ListUsersResponse {
            users: rows.iter().map(convert::user).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn batch_change_status(
        &self,
        request: Request<pb::BatchChangeStatusRequest>,
    ) -> Result<Response<pb::BatchChangeStatusResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "user.status.changed", &request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = FieldViolations::new();
            validate::request_id("request_id", &r.request_id, &mut v);
            let ids = validate::batch_ids("user_ids", &r.user_ids, &mut v);
            let action = convert::action_from(r.action);
            if action.is_none() {
                v.add("action", "must be ACTIVATE, SUSPEND, DEACTIVATE or DESTROY");
            }
            validate::short_text("reason", &r.reason, &mut v);
            v.check()?;
            let action = action.expect("checked above");
            let fingerprint = idempotency::fingerprint(&r);
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) = idempotency::replay(
                    conn,
                    &scope("BatchChangeStatus", &caller),
                    &r.request_id,
                    &fingerprint,
                )
                .await?
                {
                    return Ok(previous);
                }
                let found: HashMap<Uuid, User> = users::lock_many(conn, &ids)
                    .await?
                    .into_iter()
                    .map(|u| (u.id, u))
                    .collect();
                let mut results = Vec::with_capacity(ids.len());
                for id in &ids {
                    let event = record
                        .clone()
                        .action(action.audit_action())
                        .subject(&id.to_string())
                        .comment("reason", r.reason.clone());
                    let Some(user) = found.get(id) else {
                        event.failed("user not found").write(conn).await?;
                        results.push(failure(*id, None, "USER_NOT_FOUND", "user not found"));
                        continue;
                    };
                    match transition(user.status, action) {
                        Ok(target) => {
                            let changes = UserChanges {
                                status: Some(target.as_str().to_owned()),
                                destroyed_at: (target == UserStatus::Destroyed)
                                    .then_some(Some(chrono::Utc::now())),
                                ..UserChanges::default()
                            };
                            let updated = users::update(conn, *id, changes).await?;
                            event
                                .comment("from", user.status.as_str())
                                .comment("to", target.as_str())
                                .write(conn)
                                .await?;
                            results.push(success(&updated));
                        }
                        Err(refusal) => {
                            event
                                .comment("from", user.status.as_str())
                                .failed(refusal.message.clone())
                                .write(conn)
                                .await?;
                            results.push(failure(
                                *id,
                                Some(user),
                                refusal.reason,
                                &refusal.message,
                            ));
                        }
                    }
                }
                let response = pb::BatchChangeStatusResponse { results };
                idempotency::remember(
                    conn,
                    &scope("BatchChangeStatus", &caller),
                    &r.request_id,
                    &response,
                )
                .await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn batch_change_group(
        &self,
        request: Request<pb::BatchChangeGroupRequest>,
    ) -> Result<Response<pb::BatchChangeGroupResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "user.group.changed", &request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = FieldViolations::new();
            validate::request_id("request_id", &r.request_id, &mut v);
            let ids = validate::batch_ids("user_ids", &r.user_ids, &mut v);
            if r.group.is_empty() {
                v.add("group", "required");
            }
            if r.notify && r.mail_template_id.is_empty() {
                v.add("mail_template_id", "required when notify is set");
            }
            validate::short_text("mail_template_id", &r.mail_template_id, &mut v);
            v.check()?;
            let fingerprint = idempotency::fingerprint(&r);
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) = idempotency::replay(
                    conn,
                    &scope("BatchChangeGroup", &caller),
                    &r.request_id,
                    &fingerprint,
                )
                .await?
                {
                    return Ok(previous);
                }
                if !groups::exists(conn, &r.group).await? {
                    return Err(FieldViolations::single("group", "unknown group").into());
                }
                let found: HashMap<Uuid, User> = users::lock_many(conn, &ids)
                    .await?
                    .into_iter()
                    .map(|u| (u.id, u))
                    .collect();
                let mut results = Vec::with_capacity(ids.len());
                for id in &ids {
                    let event = record
                        .clone()
                        .subject(&id.to_string())
                        .comment("to", r.group.clone());
                    let refused = match found.get(id) {
                        None => Some(Refusal::new("USER_NOT_FOUND", "user not found")),
                        Some(user) if !user.status.is_live() => Some(Refusal::new(
                            "USER_NOT_LIVE",
                            format!("user is {}", user.status),
                        )),
                        Some(user) if user.group == r.group => Some(Refusal::new(
                            "GROUP_UNCHANGED",
                            format!("user is already in {}", r.group),
                        )),
                        Some(_) => None,
                    };
                    if let Some(refusal) = refused {
                        event.failed(refusal.message.clone()).write(conn).await?;
                        results.push(failure(
                            *id,
                            found.get(id),
                            refusal.reason,
                            &refusal.message,
                        ));
                        continue;
                    }
                    let user = &found[id];
                    let updated = users::update(
                        conn,
                        *id,
                        UserChanges {
                            group_name: Some(r.group.clone()),
                            ..UserChanges::default()
                        },
                    )
                    .await?;
                    event
                        .comment("from", user.group.clone())
                        .comment("notify", r.notify.to_string())
                        .write(conn)
                        .await?;
                    if r.notify {
                        let params = HashMap::from([
                            ("old_group".to_owned(), user.group.clone()),
                            ("new_group".to_owned(), r.group.clone()),
                        ]);
                        let (event_id, message) = notification(
                            &r.mail_template_id,
                            vec![updated.email.clone()],
                            &updated,
                            params,
                        );
                        outbox::enqueue(conn, outbox::NOTIFICATIONS, event_id, &message).await?;
                    }
                    results.push(success(&updated));
                }
                let response = pb::BatchChangeGroupResponse { results };
                idempotency::remember(
                    conn,
                    &scope("BatchChangeGroup", &caller),
                    &r.request_id,
                    &response,
                )
                .await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Result<Response<pb::ChangeEmailResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "user.email.changed", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let id = validate::id("user_id", &r.user_id, &mut v);
            let email = validate::email("new_email", &r.new_email, &mut v);
            if r.request_id.len() > 128 {
                v.add("request_id", "must be at most 128 characters");
            }
            v.check()?;
            let fingerprint = idempotency::fingerprint(&r);
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) = idempotency::replay(
                    conn,
                    &scope("ChangeEmail", &caller),
                    &r.request_id,
                    &fingerprint,
                )
                .await?
                {
                    return Ok(previous);
                }
                let user = load_user(conn, id).await?;
                ensure_live(&user)?;
                if user.email == email {
                    return Err(Error::precondition(
                        "EMAIL_UNCHANGED",
                        "the user already has this email",
                    ));
                }
                commands::ensure_email_available(conn, &email).await?;
                let updated = users::update(
                    conn,
                    id,
                    UserChanges {
                        email: Some(email.clone()),
                        ..UserChanges::default()
                    },
                )
                .await
                .map_err(commands::email_taken_on_conflict)?;
                record
                    .clone()
                    .comment("old_email", user.email.clone())
                    .comment("new_email", email.clone())
                    .comment("notify", r.notify.to_string())
                    .write(conn)
                    .await?;
                if r.notify {
                    let params = HashMap::from([
                        ("old_email".to_owned(), user.email.clone()),
                        ("new_email".to_owned(), email.clone()),
                    ]);
                    let (event_id, message) = notification(
                        "user.email.changed",
                        vec![user.email.clone(), email.clone()],
                        &updated,
                        params,
                    );
                    outbox::enqueue(conn, outbox::NOTIFICATIONS, event_id, &message).await?;
                }
                let response = pb::ChangeEmailResponse {
                    user: Some(convert::user(&updated)),
                };
                idempotency::remember(
                    conn,
                    &scope("ChangeEmail", &caller),
                    &r.request_id,
                    &response,
                )
                .await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn set_roles(
        &self,
        request: Request<pb::SetRolesRequest>,
    ) -> Result<Response<pb::SetRolesResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "user.roles.updated", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let id = validate::id("user_id", &r.user_id, &mut v);
            let roles = convert::roles_from("roles", &r.roles, &mut v);
            if roles.is_empty() {
                v.add("roles", "at least one role");
            }
            v.check()?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                check_etag(&user, &r.etag)?;
                ensure_live(&user)?;
                let names: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
                let updated = users::update(
                    conn,
                    id,
                    UserChanges {
                        roles: Some(names.clone()),
                        ..UserChanges::default()
                    },
                )
                .await?;
                let before: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                record
                    .clone()
                    .comment("from", before.join(","))
                    .comment("to", names.join(","))
                    .write(conn)
                    .await?;
                Ok(pb::SetRolesResponse {
                    user: Some(convert::user(&updated)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn set_notes(
        &self,
        request: Request<pb::SetNotesRequest>,
    ) -> Result<Response<pb::SetNotesResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "user.notes.updated", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let id = validate::id("user_id", &r.user_id, &mut v);
            validate::notes("notes", &r.notes, &mut v);
            v.check()?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                check_etag(&user, &r.etag)?;
                let updated = users::update(
                    conn,
                    id,
                    UserChanges {
                        notes: Some(r.notes.clone()),
                        ..UserChanges::default()
                    },
                )
                .await?;
                record.clone().write(conn).await?;
                Ok(pb::SetNotesResponse {
                    user: Some(convert::user(&updated)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn batch_delete_personal_data(
        &self,
        request: Request<pb::BatchDeletePersonalDataRequest>,
    ) -> Result<Response<pb::BatchDeletePersonalDataResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "user.personal_data.deleted", &request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = FieldViolations::new();
            validate::request_id("request_id", &r.request_id, &mut v);
            let ids = validate::batch_ids("user_ids", &r.user_ids, &mut v);
            v.check()?;
            let fingerprint = idempotency::fingerprint(&r);
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) = idempotency::replay(
                    conn,
                    &scope("BatchDeletePersonalData", &caller),
                    &r.request_id,
                    &fingerprint,
                )
                .await?
                {
                    return Ok(previous);
                }
                let (current, platform_salt) = settings::get(conn).await?;
                let found: HashMap<Uuid, User> = users::lock_many(conn, &ids)
                    .await?
                    .into_iter()
                    .map(|u| (u.id, u))
                    .collect();
                let mut results = Vec::with_capacity(ids.len());
                for id in &ids {
                    let event = record.clone().subject(&id.to_string());
                    let Some(user) = found.get(id) else {
                        event.failed("user not found").write(conn).await?;
                        results.push(failure(*id, None, "USER_NOT_FOUND", "user not found"));
                        continue;
                    };
                    match commands::erase_personal_data(
                        conn,
                        user,
                        current.erasure_mode,
                        &platform_salt,
                        event.clone(),
                    )
                    .await
                    {
                        Ok(erased) => results.push(success(&erased)),
                        Err(Error::Refused(_, refusal)) => {
                            event.failed(refusal.message.clone()).write(conn).await?;
                            results.push(failure(
                                *id,
                                Some(user),
                                refusal.reason,
                                &refusal.message,
                            ));
                        }
                        Err(other) => return Err(other),
                    }
                }
                let response = pb::BatchDeletePersonalDataResponse { results };
                idempotency::remember(
                    conn,
                    &scope("BatchDeletePersonalData", &caller),
                    &r.request_id,
                    &response,
                )
                .await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn get_settings(
        &self,
        _request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        let mut conn = self.conn().await?;
        let (current, _) = settings::get(&mut conn).await.map_err(Error::from)?;
        Ok(Response::new(pb::GetSettingsResponse {
            settings: Some(convert::settings(&current)),
        }))
    }

    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::UpdateSettingsResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "settings.updated", &request)?;
        let r = request.into_inner();
        let result = async {
            let patch = r.settings.unwrap_or_default();
            let mut paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
            if paths.is_empty() {
                paths = vec![
                    "erasure_mode".into(),
                    "auto_erase_enabled".into(),
                    "auto_erase_delay_days".into(),
                ];
            }
            let mut v = FieldViolations::new();
            let mode = convert::erasure_mode_from(patch.erasure_mode);
            for path in &paths {
                match path.as_str() {
                    "erasure_mode" if mode.is_none() => v.add(
                        "settings.erasure_mode",
                        "must be ANONYMIZATION or PSEUDOANONYMIZATION",
                    ),
                    "auto_erase_delay_days"
                        if !(0..=3650).contains(&patch.auto_erase_delay_days) =>
                    {
                        v.add(
                            "settings.auto_erase_delay_days",
                            "must be between 0 and 3650",
                        )
                    }
                    "erasure_mode" | "auto_erase_enabled" | "auto_erase_delay_days" => {}
                    other => v.add(format!("update_mask.{other}"), "unknown field"),
                }
            }
            v.check()?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let mut next = settings::lock(conn).await?;
                let before = next.clone();
                for path in &paths {
                    match path.as_str() {
                        "erasure_mode" => next.erasure_mode = mode.expect("validated"),
                        "auto_erase_enabled" => next.auto_erase_enabled = patch.auto_erase_enabled,
                        _ => next.auto_erase_delay_days = patch.auto_erase_delay_days,
                    }
                }
                settings::put(conn, &next).await?;
                record
                    .clone()
                    .comment(
                        "erasure_mode",
                        format!(
                            "{} -> {}",
                            before.erasure_mode.as_str(),
                            next.erasure_mode.as_str()
                        ),
                    )
                    .comment(
                        "auto_erase_enabled",
                        format!(
                            "{} -> {}",
                            before.auto_erase_enabled, next.auto_erase_enabled
                        ),
                    )
                    .comment(
                        "auto_erase_delay_days",
                        format!(
                            "{} -> {}",
                            before.auto_erase_delay_days, next.auto_erase_delay_days
                        ),
                    )
                    .write(conn)
                    .await?;
                Ok(pb::UpdateSettingsResponse {
                    settings: Some(convert::settings(&next)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let r = request.into_inner();
        let page = self
            .tokens
            .page::<String>("groups", r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let mut conn = self.conn().await?;
        let rows = groups::list(&mut conn, page.after.as_deref(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) =
            page::split(rows, page.size, |g| self.tokens.encode("groups", &g.name));
        Ok(Response::new(pb::ListGroupsResponse {
            groups: rows.iter().map(convert::group).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "group.created", &request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = FieldViolations::new();
            validate::group_name("name", &r.name, &mut v);
            validate::short_text("display_name", &r.display_name, &mut v);
            v.check()?;
            let display = if r.display_name.trim().is_empty() {
                r.name.clone()
            } else {
                r.display_name.trim().to_owned()
            };
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if groups::exists(conn, &r.name).await? {
                    return Err(group_exists(&r.name));
                }
                let group = groups::insert(conn, &r.name, &display).await.map_err(|e| {
                    if crate::store::is_unique_violation(&e, "groups_pkey") {
                        group_exists(&r.name)
                    } else {
                        e.into()
                    }
                })?;
                record
                    .clone()
                    .comment("group", group.name.clone())
                    .write(conn)
                    .await?;
                Ok(pb::CreateGroupResponse {
                    group: Some(convert::group(&group)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn create_collaboration(
        &self,
        request: Request<pb::CreateCollaborationRequest>,
    ) -> Result<Response<pb::CreateCollaborationResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "collaboration.created", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.owner_user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let owner_id = validate::id("owner_user_id", &r.owner_user_id, &mut v);
            let email = validate::email("collaborator_email", &r.collaborator_email, &mut v);
            v.check()?;
            caller.ensure_may_act_on(&r.owner_user_id).map_err(denied)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let owner = load_user(conn, owner_id).await?;
                ensure_live(&owner)?;
                let collaborator = users::find_live_by_email(conn, &email)
                    .await?
                    .filter(|u| u.status.is_live())
                    .ok_or_else(|| Error::not_found("user", &email))?;
                if collaborator.id == owner.id {
                    return Err(FieldViolations::single(
                        "collaborator_email",
                        "cannot share an account with itself",
                    )
                    .into());
                }
                let created = collaborations::insert(conn, owner.id, collaborator.id)
                    .await
                    .map_err(|e| {
                        if crate::store::is_unique_violation(&e, "collaborations_open") {
                            Error::Refused(
                                Code::AlreadyExists,
                                Refusal::new(
                                    "COLLABORATION_EXISTS",
                                    "the account is already shared with this user",
                                ),
                            )
                        } else {
                            e.into()
                        }
                    })?;
                record
                    .clone()
                    .comment("collaboration_id", created.id.to_string())
                    .comment("collaborator_user_id", collaborator.id.to_string())
                    .write(conn)
                    .await?;
                Ok(pb::CreateCollaborationResponse {
                    collaboration: Some(convert::collaboration(&created)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn accept_collaboration(
        &self,
        request: Request<pb::AcceptCollaborationRequest>,
    ) -> Result<Response<pb::AcceptCollaborationResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "collaboration.accepted", &request)?;
        let id = request.into_inner().collaboration_id;
        let caller_id = Uuid::parse_str(&caller.user_id).unwrap_or_default();
        let result = self
            .transition_collaboration(&record, &id, |c| collaboration::accept(c, caller_id))
            .await
            .map(|c| pb::AcceptCollaborationResponse {
                collaboration: Some(c),
            });
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn revoke_collaboration(
        &self,
        request: Request<pb::RevokeCollaborationRequest>,
    ) -> Result<Response<pb::RevokeCollaborationResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "collaboration.revoked", &request)?;
        let id = request.into_inner().collaboration_id;
        let caller_id = Uuid::parse_str(&caller.user_id).unwrap_or_default();
        let privileged = caller.is_privileged();
        let result = self
            .transition_collaboration(&record, &id, |c| {
                collaboration::revoke(c, caller_id, privileged)
            })
            .await
            .map(|c| pb::RevokeCollaborationResponse {
                collaboration: Some(c),
            });
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn list_collaborations(
        &self,
        request: Request<pb::ListCollaborationsRequest>,
    ) -> Result<Response<pb::ListCollaborationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let user_id = validate::id("user_id", &r.user_id, &mut v);
        let direction = convert::direction_from(r.direction);
        if direction.is_none() {
            v.add("direction", "unknown direction");
        }
        v.check().map_err(Error::from)?;
        caller.ensure_may_act_on(&r.user_id)?;
        let direction = direction.expect("checked above");
        let fingerprint = format!("collaborations|{user_id}|{direction:?}");
        let page = self
            .tokens
            .page::<Uuid>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let mut conn = self.conn().await?;
        let rows = collaborations::list(&mut conn, user_id, direction, page.after, page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) =
            page::split(rows, page.size, |c| self.tokens.encode(&fingerprint, &c.id));
        Ok(Response::new(pb::ListCollaborationsResponse {
            collaborations: rows.iter().map(convert::collaboration).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }
}
