//! `AccountsService` requests, validated into commands' inputs. A request
//! reports all its field violations at once.

use steward_kit::{
    Error, FieldViolations,
    auth::{Caller, Grant},
    page::PageTokens,
};
use steward_proto::accounts as pb;
use uuid::Uuid;

use super::{Query, action_from, direction_from, erasure_mode_from, order_from, query, roles_from};
use crate::{
    collaboration::{
        commands::{Invitation, Move, Transition},
        store::Direction,
    },
    domain::{Role, UserStatus, identity, validate},
    error,
    groups::commands::NewGroup,
    settings::commands::SettingsPatch,
    users::{
        batch::{GroupChange, StatusChange},
        commands::{EmailChange, NewUserInput, NotesChange, ProfileUpdate, RolesChange},
        store::{Cursor, Filter, Order, UserChanges},
    },
};

fn non_empty(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

pub fn new_user(caller: &Caller, r: &pb::CreateUserRequest) -> Result<NewUserInput, Error> {
    let mut v = FieldViolations::new();
    let email = validate::email("email", &r.email, &mut v);
    let phone = r
        .phone
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| validate::phone("phone", p, &mut v));
    validate::notes("notes", &r.notes, &mut v);
    validate::short_text("reseller", &r.reseller, &mut v);
    validate::short_text("ext_billing_id", &r.ext_billing_id, &mut v);
    let mut roles = roles_from("roles", &r.roles, &mut v);
    if roles.is_empty() {
        roles.push(Role::User);
    }
    // Granting power is SetRoles' business: only an administrator may
    // create anything but a plain user.
    if roles.iter().any(|r| *r != Role::User) && caller.grant != Grant::Role(Role::UserAdmin) {
        return Err(error::role_grant_requires_admin());
    }
    let status = match pb::UserStatus::try_from(r.initial_status) {
        Ok(pb::UserStatus::Unspecified | pb::UserStatus::Active) => UserStatus::Active,
        Ok(pb::UserStatus::Inactive) => UserStatus::Inactive,
        _ => {
            v.add("initial_status", "must be ACTIVE or INACTIVE");
            UserStatus::Active
        }
    };
    if !r.password.is_empty() {
        identity::password("password", &r.password, &mut v);
    }
    validate::request_id(&r.request_id, false, &mut v);
    v.check()?;
    Ok(NewUserInput {
        email,
        group: non_empty(&r.group).unwrap_or_else(|| "trial".to_owned()),
        roles,
        phone,
        reseller: non_empty(&r.reseller),
        ext_billing_id: non_empty(&r.ext_billing_id),
        notes: r.notes.clone(),
        status,
        password: non_empty(&r.password),
    })
}

/// An `UpdateUser` mask: which fields may be patched here, and which only
/// by an administrator.
pub fn profile_update(caller: &Caller, r: &pb::UpdateUserRequest) -> Result<ProfileUpdate, Error> {
    let Some(patch) = &r.user else {
        return Err(Error::invalid("user", "required"));
    };
    let id = super::id("user.id", &patch.id)?;
    caller.may_act_on(&patch.id)?;
    let paths = r
        .update_mask
        .as_ref()
        .map(|m| m.paths.clone())
        .unwrap_or_default();
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
                let phone = patch.phone.as_deref().filter(|p| !p.is_empty());
                changes.phone = Some(phone.map(|p| validate::phone(&field, p, &mut v)));
            }
            "notes" => {
                validate::notes(&field, &patch.notes, &mut v);
                changes.notes = Some(patch.notes.clone());
                admin_only.push(path.clone());
            }
            "two_factor_state" => {
                match pb::TwoFactorState::try_from(patch.two_factor_state) {
                    Ok(pb::TwoFactorState::Disabled) => changes.two_factor_enabled = Some(false),
                    _ => v.add(
                        &field,
                        "may only be set to DISABLED; users enable it by enrolling a second factor",
                    ),
                }
                admin_only.push(path.clone());
            }
            "upgrade_in_progress" => {
                changes.upgrade_in_progress = Some(patch.upgrade_in_progress);
                admin_only.push(path.clone());
            }
            "id" | "signup_time" | "reseller" | "ext_billing_id" => v.add(&field, "immutable"),
            "email" => v.add(&field, "changed with ChangeEmail"),
            "status" => v.add(
                &field,
                "changed with BatchChangeStatus or BatchDeletePersonalData",
            ),
            "group" => v.add(&field, "changed with BatchChangeGroup"),
            "roles" => v.add(&field, "changed with SetRoles"),
            "etag" | "update_time" | "destroy_time" => v.add(&field, "output only"),
            _ => v.add(&field, "unknown field"),
        }
    }
    v.check()?;
    if !caller.is_privileged() && !admin_only.is_empty() {
        return Err(error::admin_only_fields(&admin_only));
    }
    Ok(ProfileUpdate {
        id,
        etag: patch.etag.clone(),
        changes,
        fields: paths,
    })
}

pub fn list_users(
    tokens: &PageTokens,
    r: &pb::ListUsersRequest,
) -> Result<Query<(Filter, Order), Cursor>, Error> {
    let mut v = FieldViolations::new();
    let order = order_from(r.order_by).unwrap_or_else(|| {
        v.add("order_by", "unknown order");
        Order::default()
    });
    let status = match pb::UserStatus::try_from(r.status) {
        Ok(s) => super::status_from(s),
        Err(_) => {
            v.add("status", "unknown status");
            None
        }
    };
    let text = r.query.trim();
    let mut filter = Filter {
        group: non_empty(&r.group),
        status,
        ..Filter::default()
    };
    // Only the hyphenated form is an id: 32 hex digits may be an (erased)
    // email digest.
    match Uuid::try_parse(text).ok().filter(|_| text.len() == 36) {
        Some(id) => filter.id = Some(id),
        None if !text.is_empty() => filter.email_contains = Some(text.to_lowercase()),
        None => {}
    }
    let fingerprint = format!(
        "users|{:?}|{:?}|{:?}|{:?}|{:?}",
        filter.group, filter.status, filter.id, filter.email_contains, order
    );
    query(tokens, (filter, order), fingerprint, r.page.as_ref(), v)
}

pub fn status_change(r: &pb::BatchChangeStatusRequest) -> Result<StatusChange, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, true, &mut v);
    let ids = validate::batch_ids("user_ids", &r.user_ids, &mut v);
    let action = action_from(r.action);
    if action.is_none() {
        v.add("action", "must be ACTIVATE, SUSPEND, DEACTIVATE or DESTROY");
    }
    validate::short_text("reason", &r.reason, &mut v);
    v.check()?;
    Ok(StatusChange {
        ids,
        action: action.expect("checked above"),
        reason: r.reason.clone(),
    })
}

pub fn group_change(r: &pb::BatchChangeGroupRequest) -> Result<GroupChange, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, true, &mut v);
    let ids = validate::batch_ids("user_ids", &r.user_ids, &mut v);
    if r.group.is_empty() {
        v.add("group", "required");
    }
    if r.notify && r.mail_template_id.is_empty() {
        v.add("mail_template_id", "required when notify is set");
    }
    validate::short_text("mail_template_id", &r.mail_template_id, &mut v);
    v.check()?;
    Ok(GroupChange {
        ids,
        group: r.group.clone(),
        notify: r.notify.then(|| r.mail_template_id.clone()),
    })
}

pub fn erasure(r: &pb::BatchDeletePersonalDataRequest) -> Result<Vec<Uuid>, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, true, &mut v);
    let ids = validate::batch_ids("user_ids", &r.user_ids, &mut v);
    v.check()?;
    Ok(ids)
}

pub fn email_change(r: &pb::ChangeEmailRequest) -> Result<EmailChange, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id("user_id", &r.user_id, &mut v);
    let email = validate::email("new_email", &r.new_email, &mut v);
    validate::request_id(&r.request_id, false, &mut v);
    v.check()?;
    Ok(EmailChange {
        id,
        email,
        notify: r.notify,
    })
}

pub fn roles_change(r: &pb::SetRolesRequest) -> Result<RolesChange, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id("user_id", &r.user_id, &mut v);
    let roles = roles_from("roles", &r.roles, &mut v);
    if roles.is_empty() {
        v.add("roles", "at least one role");
    }
    v.check()?;
    Ok(RolesChange {
        id,
        etag: r.etag.clone(),
        roles,
    })
}

pub fn notes_change(r: &pb::SetNotesRequest) -> Result<NotesChange, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id("user_id", &r.user_id, &mut v);
    validate::notes("notes", &r.notes, &mut v);
    v.check()?;
    Ok(NotesChange {
        id,
        etag: r.etag.clone(),
        notes: r.notes.clone(),
    })
}

/// An empty mask updates every field.
pub fn settings_patch(r: &pb::UpdateSettingsRequest) -> Result<SettingsPatch, Error> {
    let patch = r.settings.unwrap_or_default();
    let mut paths = r
        .update_mask
        .as_ref()
        .map(|m| m.paths.clone())
        .unwrap_or_default();
    if paths.is_empty() {
        paths = [
            "erasure_mode",
            "auto_erase_enabled",
            "auto_erase_delay_days",
        ]
        .map(String::from)
        .to_vec();
    }
    let mut v = FieldViolations::new();
    let mut out = SettingsPatch::default();
    for path in &paths {
        match path.as_str() {
            "erasure_mode" => match erasure_mode_from(patch.erasure_mode) {
                Some(mode) => out.erasure_mode = Some(mode),
                None => v.add(
                    "settings.erasure_mode",
                    "must be ANONYMIZATION or PSEUDOANONYMIZATION",
                ),
            },
            "auto_erase_enabled" => out.auto_erase_enabled = Some(patch.auto_erase_enabled),
            "auto_erase_delay_days" if (0..=3650).contains(&patch.auto_erase_delay_days) => {
                out.auto_erase_delay_days = Some(patch.auto_erase_delay_days)
            }
            "auto_erase_delay_days" => v.add(
                "settings.auto_erase_delay_days",
                "must be between 0 and 3650",
            ),
            other => v.add(format!("update_mask.{other}"), "unknown field"),
        }
    }
    v.check()?;
    Ok(out)
}

pub fn list_groups(
    tokens: &PageTokens,
    r: &pb::ListGroupsRequest,
) -> Result<Query<(), String>, Error> {
    let v = FieldViolations::new();
    query(tokens, (), "groups".to_owned(), r.page.as_ref(), v)
}

pub fn new_group(r: &pb::CreateGroupRequest) -> Result<NewGroup, Error> {
    let mut v = FieldViolations::new();
    validate::group_name("name", &r.name, &mut v);
    validate::short_text("display_name", &r.display_name, &mut v);
    v.check()?;
    Ok(NewGroup {
        name: r.name.clone(),
        display_name: r.display_name.clone(),
    })
}

pub fn invitation(
    caller: &Caller,
    r: &pb::CreateCollaborationRequest,
) -> Result<Invitation, Error> {
    let mut v = FieldViolations::new();
    let owner_id = validate::id("owner_user_id", &r.owner_user_id, &mut v);
    let email = validate::email("collaborator_email", &r.collaborator_email, &mut v);
    v.check()?;
    caller.may_act_on(&r.owner_user_id)?;
    Ok(Invitation {
        owner_id,
        collaborator_email: email,
    })
}

/// Accepting or revoking: the caller decides which rule applies.
pub fn collaboration_move(
    caller: &Caller,
    collaboration_id: &str,
    accept: bool,
) -> Result<Move, Error> {
    let id = super::id("collaboration_id", collaboration_id)?;
    let caller_id = Uuid::parse_str(&caller.user_id).unwrap_or_default();
    let transition = if accept {
        Transition::Accept { caller: caller_id }
    } else {
        Transition::Revoke {
            caller: caller_id,
            privileged: caller.is_privileged(),
        }
    };
    Ok(Move { id, transition })
}

pub fn list_collaborations(
    tokens: &PageTokens,
    caller: &Caller,
    r: &pb::ListCollaborationsRequest,
) -> Result<Query<(Uuid, Direction), Uuid>, Error> {
    let mut v = FieldViolations::new();
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    let direction = direction_from(r.direction);
    if direction.is_none() {
        v.add("direction", "unknown direction");
    }
    v.check()?;
    caller.may_act_on(&r.user_id)?;
    let direction = direction.expect("checked above");
    let fingerprint = format!("collaborations|{user_id}|{direction:?}");
    let filter = (user_id, direction);
    query(
        tokens,
        filter,
        fingerprint,
        r.page.as_ref(),
        FieldViolations::new(),
    )
}
