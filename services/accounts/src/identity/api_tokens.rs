//! API tokens: long-lived secrets a user creates for scripts, exchanged for
//! access tokens (see `commands::exchange_api_token`).

use std::time::Duration;

use chrono::Utc;
use steward_kit::{Tx, auth::Caller};
use uuid::Uuid;

use super::{
    chrono_duration,
    store::{self, ApiToken},
};
use crate::{
    domain::identity::{self, API_TOKEN_PREFIX},
    error::{self, Error},
    users::commands::load_user,
};

#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub user_id: Uuid,
    pub name: String,
    pub ttl: Duration,
}

/// A token with its secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: String,
}

pub async fn create(tx: &mut Tx<'_>, input: NewApiToken) -> Result<IssuedToken, Error> {
    let user = load_user(tx.conn, input.user_id).await?;
    error::ensure_live(&user)?;
    let (secret, digest) = identity::new_secret(API_TOKEN_PREFIX);
    let new = store::NewApiToken {
        id: Uuid::now_v7(),
        user_id: user.id,
        name: input.name,
        secret_hash: digest,
        lifetime_secs: input.ttl.as_secs().max(1) as i64,
        expires_at: Utc::now() + chrono_duration(input.ttl),
    };
    let token = store::insert_api_token(tx.conn, new).await?;
    tx.note(|r| {
        r.token_id(&token.id.to_string())
            .comment("name", token.name.clone())
    });
    Ok(IssuedToken { token, secret })
}

/// The caller's token (or any, for an administrator), locked.
async fn lock_own(tx: &mut Tx<'_>, caller: &Caller, id: Uuid) -> Result<ApiToken, Error> {
    let token = store::lock_api_token(tx.conn, id)
        .await?
        .ok_or_else(|| Error::not_found("api_token", id))?;
    caller.may_act_on(&token.user_id.to_string())?;
    tx.note(|r| r.subject(&token.user_id.to_string()));
    Ok(token)
}

/// A new secret for the token, valid for the token's original lifetime.
pub async fn refresh(tx: &mut Tx<'_>, caller: &Caller, id: Uuid) -> Result<IssuedToken, Error> {
    let token = lock_own(tx, caller, id).await?;
    let (secret, digest) = identity::new_secret(API_TOKEN_PREFIX);
    let expires = Utc::now() + chrono::Duration::seconds(token.lifetime_secs);
    let token = store::replace_api_token_secret(tx.conn, id, digest, expires).await?;
    Ok(IssuedToken { token, secret })
}

pub async fn delete(tx: &mut Tx<'_>, caller: &Caller, id: Uuid) -> Result<(), Error> {
    let token = lock_own(tx, caller, id).await?;
    store::delete_api_token(tx.conn, id).await?;
    super::revocations::revoke_api_token(tx.conn, &token).await?;
    tx.note(|r| r.comment("name", token.name.clone()));
    Ok(())
}
