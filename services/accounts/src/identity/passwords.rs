//! Passwords: argon2id hashes, and changing one.

use diesel_async::AsyncPgConnection;
use steward_kit::Tx;
use uuid::Uuid;

use super::store as identity;
use crate::{
    error::{self, Error},
    users::{
        commands::load_user,
        store::{self as users, UserChanges},
    },
};

/// argon2id with the crate's default (OWASP-recommended) parameters. CPU
/// bound: run off the async workers.
pub async fn hash(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        use argon2::{
            Argon2, PasswordHasher,
            password_hash::{SaltString, rand_core::OsRng},
        };
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password hashing: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
}

/// Does `password` match the stored argon2id `hash`? A hash that does not
/// parse matches nothing.
pub async fn verify(hash: String, password: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || {
        use argon2::{Argon2, PasswordHash, PasswordVerifier};
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| Error::Internal(format!("password check task: {e}")))
}

/// A hash of a random password, checked against when the email is unknown
/// so that a miss costs as much as a hit.
pub fn decoy_hash() -> String {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY
        .get_or_init(|| {
            use argon2::{
                Argon2, PasswordHasher,
                password_hash::{SaltString, rand_core::OsRng},
            };
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// A validated change: the new password is checked by
/// `domain::identity::password`.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub user_id: Uuid,
    pub current: String,
    pub new: String,
}

/// A change whose current password matched, with the new hash.
#[derive(Debug, Clone)]
pub struct VerifiedChange {
    user_id: Uuid,
    new_hash: String,
}

/// Checks the current password and hashes the new one, before (and
/// outside) the transaction that stores it.
pub async fn verify_change(
    conn: &mut AsyncPgConnection,
    input: PasswordChange,
) -> Result<VerifiedChange, Error> {
    let matches = match users::password_hash(conn, input.user_id).await? {
        Some(hash) => verify(hash, input.current).await?,
        None => false,
    };
    if !matches {
        return Err(Error::invalid("current_password", "does not match"));
    }
    Ok(VerifiedChange {
        user_id: input.user_id,
        new_hash: hash(input.new).await?,
    })
}

/// Stores the new password and signs the user out everywhere.
pub async fn change_password(tx: &mut Tx<'_>, input: VerifiedChange) -> Result<(), Error> {
    let id = input.user_id;
    let user = load_user(tx.conn, id).await?;
    error::ensure_live(&user)?;
    let changes = UserChanges {
        password_hash: Some(Some(input.new_hash)),
        ..UserChanges::default()
    };
    users::update(tx.conn, id, changes).await?;
    let revoked = identity::revoke_all_for_user(tx.conn, id).await?;
    tx.note(|r| r.comment("sessions_signed_out", revoked.to_string()));
    Ok(())
}
