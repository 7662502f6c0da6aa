//! Accounts' refusals, mapped in one place to kit's error model (and from
//! there to `tonic::Status`): the constructors below and the constraint
//! table the command runner resolves. No other module picks a [`Kind`].

pub use steward_kit::Error;
use steward_kit::{Constraint, Kind};

use crate::domain::{Refusal, User, UserStatus, collaboration, status};

/// Constraint violations a concurrent writer can cause, and what they mean.
pub const CONSTRAINTS: &[Constraint] = &[
    Constraint {
        name: "users_live_email",
        kind: Kind::Exists,
        reason: "EMAIL_TAKEN",
        message: "another account uses this email",
    },
    Constraint {
        name: "groups_pkey",
        kind: Kind::Exists,
        reason: "GROUP_EXISTS",
        message: "the group exists",
    },
    Constraint {
        name: "collaborations_open",
        kind: Kind::Exists,
        reason: "COLLABORATION_EXISTS",
        message: "the account is already shared with this user",
    },
];

/// A domain rule's refusal: the state forbids it.
impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::refused(Kind::Precondition, r.reason, r.message)
    }
}

/// The one "user not live" refusal: `USER_DELETED` or `USER_DESTROYED`.
pub fn ensure_live(user: &User) -> Result<(), Error> {
    Ok(status::ensure_live(user.status)?)
}

pub fn user_not_found(id: impl ToString) -> Error {
    Error::not_found("user", id)
}

pub fn etag_mismatch() -> Error {
    Error::refused(
        Kind::Aborted,
        "ETAG_MISMATCH",
        "the user changed since it was read; read it again and retry",
    )
}

pub fn email_taken() -> Error {
    Error::refused(
        Kind::Exists,
        "EMAIL_TAKEN",
        "another account uses this email",
    )
}

pub fn email_blocked() -> Error {
    Error::precondition(
        "EMAIL_BLOCKED",
        "this email belonged to an erased account and cannot be used again",
    )
}

pub fn group_exists(name: &str) -> Error {
    Error::refused(Kind::Exists, "GROUP_EXISTS", format!("group {name} exists"))
}

pub fn role_grant_requires_admin() -> Error {
    Error::denied(
        "ROLE_GRANT_REQUIRES_ADMIN",
        "only a USER_ADMIN may create users with roles beyond USER",
    )
}

pub fn admin_only_fields(fields: &[String]) -> Error {
    Error::denied(
        "ADMIN_ONLY_FIELD",
        format!("only an administrator may change {}", fields.join(", ")),
    )
}

/// Collaboration rules: refusals naming the caller are PERMISSION_DENIED.
pub fn collaboration(r: Refusal) -> Error {
    match r.reason {
        collaboration::NOT_COLLABORATOR | collaboration::NOT_A_PARTY => {
            Error::denied(r.reason, r.message)
        }
        _ => r.into(),
    }
}

/// Sign-in failures never say which part was wrong beyond `message`.
pub fn invalid_credentials(message: &str) -> Error {
    Error::refused(
        Kind::Unauthenticated,
        "INVALID_CREDENTIALS",
        message.to_owned(),
    )
}

/// The password was right; two-factor is on and no code came with it.
pub fn totp_required() -> Error {
    Error::precondition("TOTP_REQUIRED", "this account requires a one-time code")
}

pub fn refresh_token_reused() -> Error {
    Error::refused(
        Kind::Unauthenticated,
        "REFRESH_TOKEN_REUSED",
        "this refresh token was already used; the session is revoked",
    )
}

pub fn account_locked(until: chrono::DateTime<chrono::Utc>) -> Error {
    Error::precondition(
        "ACCOUNT_LOCKED",
        format!(
            "too many failed sign-in attempts; locked until {}",
            until.to_rfc3339()
        ),
    )
}

/// A user who may hold a session: live and ACTIVE.
pub fn ensure_may_sign_in(user: &User) -> Result<(), Error> {
    match user.status {
        UserStatus::Active => Ok(()),
        other => Err(Error::precondition(
            "ACCOUNT_NOT_ACTIVE",
            format!("the account is {}", other.as_str().to_lowercase()),
        )),
    }
}

pub fn cannot_impersonate_privileged() -> Error {
    Error::denied(
        "CANNOT_IMPERSONATE_PRIVILEGED",
        "signing in as an administrator or a platform service is not allowed",
    )
}

pub fn not_your_session() -> Error {
    Error::denied(
        "NOT_YOUR_SESSION",
        "only an administrator or the session itself may stop it",
    )
}
