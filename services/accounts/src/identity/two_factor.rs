//! Two-factor (TOTP): enrollment by the user, confirmation with a first
//! code, and an administrator turning it off.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use steward_kit::Tx;
use uuid::Uuid;

use super::{
    store::{self, CredentialChanges},
    totp_keys::{Column, TotpKeys},
};
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
pub async fn enroll(
    tx: &mut Tx<'_>,
    keys: &TotpKeys,
    user_id: Uuid,
    issuer: &str,
) -> Result<Enrollment, Error> {
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
        totp_pending_secret: Some(Some(keys.seal(user_id, Column::Pending, &secret))),
        ..CredentialChanges::default()
    };
    store::update_credentials(tx.conn, user_id, pending).await?;
    Ok(Enrollment {
        otpauth_uri: totp::otpauth_uri(issuer, &user.email, &secret),
        secret,
    })
}

/// Turns two-factor on with the pending secret once `code` matches it.
pub async fn confirm(
    tx: &mut Tx<'_>,
    keys: &TotpKeys,
    user_id: Uuid,
    code: &str,
) -> Result<(), Error> {
    let user = load_user(tx.conn, user_id).await?;
    error::ensure_live(&user)?;
    let credentials = store::lock_credentials(tx.conn, user_id).await?;
    let Some(pending) = credentials.totp_pending_secret else {
        return Err(Error::precondition(
            "NO_TOTP_ENROLLMENT",
            "start with EnrollTotp",
        ));
    };
    let pending = open(keys, user_id, Column::Pending, &pending)?;
    let now = Utc::now().timestamp();
    let Some(step) = totp::verify(&pending, code, now, credentials.totp_last_step) else {
        return Err(Error::invalid("code", "does not match"));
    };
    let secret = CredentialChanges {
        totp_secret: Some(Some(keys.seal(user_id, Column::Secret, &pending))),
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

/// A stored secret in clear (an unknown key or a corrupt value is an
/// operator's problem: INTERNAL, logged).
pub fn open(keys: &TotpKeys, user_id: Uuid, column: Column, stored: &str) -> Result<String, Error> {
    keys.open(user_id, column, stored)
        .map(|opened| opened.secret)
        .map_err(|e| {
            tracing::error!(%user_id, error = %e, "cannot open a TOTP secret");
            Error::Internal(e.to_string())
        })
}

/// Seals again every secret stored in plain text or under a retired key
/// (run at start-up); returns how many were sealed.
pub async fn reseal_all(commands: &steward_kit::Commands, keys: &TotpKeys) -> Result<usize, Error> {
    let ids = commands
        .read(async |conn| Ok(store::users_with_totp_secrets(conn).await?))
        .await?;
    let mut resealed = 0;
    for user_id in ids {
        resealed += commands
            .read(async |conn| {
                use diesel_async::AsyncConnection;
                conn.transaction::<_, Error, _>(async |conn| reseal(conn, keys, user_id).await)
                    .await
            })
            .await?;
    }
    Ok(resealed)
}

async fn reseal(
    conn: &mut AsyncPgConnection,
    keys: &TotpKeys,
    user_id: Uuid,
) -> Result<usize, Error> {
    let credentials = store::lock_credentials(conn, user_id).await?;
    let mut changes = CredentialChanges::default();
    let mut count = 0;
    let columns = [
        (Column::Secret, &credentials.totp_secret),
        (Column::Pending, &credentials.totp_pending_secret),
    ];
    for (column, stored) in columns {
        let Some(stored) = stored else { continue };
        let opened = match keys.open(user_id, column, stored) {
            Ok(opened) if opened.stale => opened,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(%user_id, error = %e, "cannot open a TOTP secret to seal it again");
                continue;
            }
        };
        let sealed = Some(Some(keys.seal(user_id, column, &opened.secret)));
        match column {
            Column::Secret => changes.totp_secret = sealed,
            Column::Pending => changes.totp_pending_secret = sealed,
        }
        count += 1;
    }
    if count > 0 {
        store::update_credentials(conn, user_id, changes).await?;
    }
    Ok(count)
}
