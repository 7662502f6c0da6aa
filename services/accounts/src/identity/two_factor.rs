//! Two-factor (TOTP): enrollment by the user, confirmation with a first
//! code, and an administrator turning it off.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use steward_kit::Tx;
use uuid::Uuid;

use super::store::{self, CredentialChanges};
use crate::{
    domain::totp,
    error::{self, Error},
    users::{
        commands::load_user,
        store::{self as users, UserChanges},
    },
};

/// A new secret to add to an authenticator app.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
}

/// Starts (or restarts) enrollment: a pending secret, active once
/// [`confirm`]ed.
pub async fn enroll(tx: &mut Tx<'_>, user_id: Uuid, issuer: &str) -> Result<Enrollment, Error> {
    let user = load_user(tx.conn, user_id).await?;
    error::ensure_live(&user)?;
    if user.two_factor_enabled {
        return Err(Error::precondition(
            "TWO_FACTOR_ALREADY_ENABLED",
            "two-factor is on; an administrator must disable it first",
        ));
    }
    store::lock_credentials(tx.conn, user_id).await?;
    let secret = totp::generate_secret();
    let pending = CredentialChanges {
        totp_pending_secret: Some(Some(secret.clone())),
        ..CredentialChanges::default()
    };
    store::update_credentials(tx.conn, user_id, pending).await?;
    Ok(Enrollment {
        otpauth_uri: totp::otpauth_uri(issuer, &user.email, &secret),
        secret,
    })
}

/// Turns two-factor on with the pending secret once `code` matches it.
pub async fn confirm(tx: &mut Tx<'_>, user_id: Uuid, code: &str) -> Result<(), Error> {
    let user = load_user(tx.conn, user_id).await?;
    error::ensure_live(&user)?;
    let credentials = store::lock_credentials(tx.conn, user_id).await?;
    let Some(pending) = credentials.totp_pending_secret else {
        return Err(Error::precondition(
            "NO_TOTP_ENROLLMENT",
            "start with EnrollTotp",
        ));
    };
    let now = Utc::now().timestamp();
    let Some(step) = totp::verify(&pending, code, now, credentials.totp_last_step) else {
        return Err(Error::invalid("code", "does not match"));
    };
    let secret = CredentialChanges {
        totp_secret: Some(Some(pending)),
        totp_pending_secret: Some(None),
        totp_last_step: Some(step),
        ..CredentialChanges::default()
    };
    set_two_factor(tx.conn, user_id, secret, true).await
}

/// Turns two-factor off (an administrator, for a user who lost the app).
pub async fn disable(tx: &mut Tx<'_>, user_id: Uuid) -> Result<(), Error> {
    let user = load_user(tx.conn, user_id).await?;
    error::ensure_live(&user)?;
    store::lock_credentials(tx.conn, user_id).await?;
    let cleared = CredentialChanges {
        totp_secret: Some(None),
        totp_pending_secret: Some(None),
        ..CredentialChanges::default()
    };
    set_two_factor(tx.conn, user_id, cleared, false).await?;
    tx.note(|r| r.comment("was_enabled", user.two_factor_enabled.to_string()));
    Ok(())
}

/// Turns two-factor on or off: the secret in `credentials`, the flag the
/// admin panel shows on the user (bumping its etag).
async fn set_two_factor(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    secret: CredentialChanges,
    enabled: bool,
) -> Result<(), Error> {
    store::update_credentials(conn, id, secret).await?;
    let flag = UserChanges {
        two_factor_enabled: Some(enabled),
        ..UserChanges::default()
    };
    users::update(conn, id, flag).await?;
    Ok(())
}
