//! Identity: sign-in with lockout and TOTP, sessions (refresh-token
//! rotation with reuse detection), two-factor enrollment, passwords, API
//! tokens and impersonation sessions.

pub mod api_tokens;
pub mod commands;
pub mod impersonation;
pub mod passwords;
pub mod revocations;
pub mod store;
pub mod totp_keys;
pub mod two_factor;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use steward_kit::auth::{Claims, TokenSigner};
use uuid::Uuid;

use crate::{IdentityConfig, domain::User, error::Error};

/// A token and when it stops being accepted.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub token: String,
    pub expires: DateTime<Utc>,
}

/// What a sign-in, refresh or exchange hands out.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: Expiring,
    /// Absent for API-token exchanges and impersonation (no session).
    pub refresh: Option<Expiring>,
}

impl Tokens {
    fn access_only(access: Expiring) -> Self {
        Self {
            access,
            refresh: None,
        }
    }
}

/// Signs access tokens and opens sessions under the identity rules.
#[derive(Clone)]
pub struct Issuer {
    pub signer: TokenSigner,
    pub config: IdentityConfig,
    /// Seal and open TOTP secrets at rest.
    pub totp_keys: totp_keys::TotpKeys,
}

pub(crate) fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Issuer {
    /// A short-lived access token for `user` (plus impersonation or API
    /// token claims set by `extra`), never living longer than
    /// [`revocations::MAX_ACCESS_TOKEN_LIFETIME`].
    pub fn access_token(
        &self,
        user: &User,
        ttl: std::time::Duration,
        extra: impl FnOnce(&mut Claims),
    ) -> Expiring {
        let ttl = ttl.min(revocations::MAX_ACCESS_TOKEN_LIFETIME);
        let mut claims = Claims::new(user.id.to_string(), &user.roles, ttl);
        extra(&mut claims);
        let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now);
        Expiring {
            token: self.signer.sign(&claims),
            expires,
        }
    }

    /// Opens a session: an access token and the first refresh token of a
    /// new family (or the next one of `family`).
    pub async fn open_session(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        family: Option<Uuid>,
        device: &str,
        client_ip: &str,
    ) -> Result<Tokens, Error> {
        let (refresh, digest) = crate::domain::identity::new_secret("");
        let refresh_expires = Utc::now() + chrono_duration(self.config.refresh_token_ttl);
        store::insert_refresh_token(
            conn,
            store::NewRefreshToken {
                id: Uuid::now_v7(),
                family_id: family.unwrap_or_else(Uuid::now_v7),
                user_id: user.id,
                token_hash: digest,
                device: device.to_owned(),
                client_ip: client_ip.to_owned(),
                expires_at: refresh_expires,
            },
        )
        .await?;
        Ok(Tokens {
            access: self.access_token(user, self.config.access_token_ttl, |_| {}),
            refresh: Some(Expiring {
                token: refresh,
                expires: refresh_expires,
            }),
        })
    }
}
