//! Prompt revocation: the entries written when access must stop before the
//! tokens already handed out expire, and the hub that streams them to every
//! token checker (`AuthService/WatchRevocations`; kit's
//! `auth::revocations` is the other end).
//!
//! Each entry is written in the transaction of the change that causes it,
//! with a NOTIFY that PostgreSQL delivers at commit, so the hub forwards it
//! within milliseconds of the change being acknowledged:
//!
//! * [`revoke_user`]: suspended, deactivated, destroyed, erased (every
//!   token of the user issued before the change: plain, API-token minted,
//!   impersonation);
//! * [`revoke_session`]: an impersonation session stopped;
//! * [`revoke_api_token`]: an API token deleted.

pub mod hub;
pub mod store;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use steward_kit::auth::revocations::{Entry, RevokedKind};
use uuid::Uuid;

use super::store::{ApiToken, ImpersonationSession};
use crate::error::Error;

/// No access token accounts mints lives longer than this (the issuer
/// clamps every lifetime to it), so a user's entry can expire after it.
pub const MAX_ACCESS_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

/// Verifiers accept tokens this long past `exp` (clock skew), and a little
/// more.
const LEEWAY: chrono::Duration = chrono::Duration::seconds(60);

async fn revoke(
    conn: &mut AsyncPgConnection,
    kind: RevokedKind,
    subject: String,
    last_token_expiry: DateTime<Utc>,
) -> Result<(), Error> {
    let entry = Entry {
        kind,
        subject,
        not_before_ms: Utc::now().timestamp_millis(),
        expires_at: (last_token_expiry + LEEWAY).timestamp(),
    };
    store::insert(conn, &entry).await?;
    Ok(())
}

/// Every token of the user issued until now stops working.
pub async fn revoke_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> Result<(), Error> {
    let last = Utc::now() + super::chrono_duration(MAX_ACCESS_TOKEN_LIFETIME);
    revoke(conn, RevokedKind::User, user_id.to_string(), last).await
}

/// The session's token stops working.
pub async fn revoke_session(
    conn: &mut AsyncPgConnection,
    session: &ImpersonationSession,
) -> Result<(), Error> {
    let subject = session.id.to_string();
    revoke(conn, RevokedKind::Session, subject, session.expires_at).await
}

/// Access tokens minted from the API token stop working (they never
/// outlive it, nor the longest access token lifetime).
pub async fn revoke_api_token(conn: &mut AsyncPgConnection, token: &ApiToken) -> Result<(), Error> {
    let longest = Utc::now() + super::chrono_duration(MAX_ACCESS_TOKEN_LIFETIME);
    let last = token.expires_at.min(longest);
    revoke(conn, RevokedKind::ApiToken, token.id.to_string(), last).await
}
