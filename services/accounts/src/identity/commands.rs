//! Sign-in, sessions and lockout.
//!
//! Failed sign-ins change state (the failure counter, a lockout) and so
//! commit their audit record with that change; the caller still gets the
//! refusal. These commands therefore run their own transaction, which
//! returns `Ok(Err(refusal))` to commit and refuse (a `Verdict`), instead
//! of the command runner's roll-back-then-audit.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use steward_kit::{RequestContext, Tx, auth::Caller, outbox::AuditRecord};
use uuid::Uuid;

use super::{
    Issuer, Tokens, passwords,
    store::{self, CredentialChanges},
    totp_keys::Column,
};
use crate::{
    SOURCE,
    domain::{
        User,
        identity::{self, LockoutPolicy},
        totp,
    },
    error::{self, Error},
    users::{commands::load_user, store as users},
};

/// The outcome of a transaction that commits even when it refuses.
type Verdict<T> = Result<T, Error>;

/// Commits `record` as FAILURE with the refusal, which the caller gets.
async fn refuse<T>(
    conn: &mut AsyncPgConnection,
    record: &AuditRecord,
    refusal: Error,
) -> Result<Verdict<T>, Error> {
    record
        .clone()
        .failed(refusal.to_string())
        .write(conn)
        .await?;
    Ok(Err(refusal))
}

fn record(
    action: &str,
    user_id: &str,
    token_id: Option<String>,
    context: &RequestContext,
) -> AuditRecord {
    let caller = Caller::signing_in(user_id, token_id);
    AuditRecord::new(SOURCE, action, &caller, context, user_id)
}

#[derive(Debug, Clone)]
pub struct SignIn {
    pub email: String,
    pub password: String,
    pub totp_code: String,
    pub device: String,
}

#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub tokens: Tokens,
}

impl Issuer {
    fn lockout(&self) -> LockoutPolicy {
        LockoutPolicy {
            threshold: self.config.lockout_threshold,
            window: self.config.lockout_window,
            duration: self.config.lockout_duration,
        }
    }
}

/// Password (and, when enabled, a one-time code) for a session. Every
/// failure counts towards the lockout, a correct password without the code
/// it needs (answered `TOTP_REQUIRED`) included.
pub async fn sign_in(
    conn: &mut AsyncPgConnection,
    issuer: &Issuer,
    input: SignIn,
    context: &RequestContext,
) -> Result<SignedIn, Error> {
    let user = users::find_live_by_email(conn, &input.email).await?;
    let hash = match &user {
        Some(u) => users::password_hash(conn, u.id).await?,
        None => None,
    };
    let (Some(user), Some(hash)) = (user, hash) else {
        // Same work as a real check, so timing does not reveal accounts.
        passwords::verify(passwords::decoy_hash(), input.password).await?;
        return Err(error::invalid_credentials("wrong email or password"));
    };
    let password_ok = passwords::verify(hash, input.password.clone()).await?;
    let record = record("user.signed_in", &user.id.to_string(), None, context)
        .comment("device", input.device.clone());
    let policy = issuer.lockout();
    let verdict: Verdict<_> = conn
        .transaction::<_, Error, _>(async |conn| {
            let now = Utc::now();
            let credentials = store::lock_credentials(conn, user.id).await?;
            let attempts = credentials.attempts();
            if attempts.is_locked(now) {
                let refusal = error::account_locked(attempts.locked_until.unwrap_or(now));
                return refuse(conn, &record, refusal).await;
            }
            // Every failure counts toward the lockout, the missing code
            // included: answering TOTP_REQUIRED says the password was right,
            // so uncounted it would let anyone guess passwords without end.
            let second_factor = if !password_ok || !user.two_factor_enabled {
                None
            } else if input.totp_code.is_empty() {
                Some(None)
            } else {
                let secret = match credentials.totp_secret.as_deref() {
                    Some(stored) => Some(issuer.totp_keys.open(user.id, Column::Secret, stored)),
                    None => None,
                };
                let secret = secret.transpose().map_err(|e| {
                    tracing::error!(user_id = %user.id, error = %e, "cannot open a TOTP secret");
                    Error::Internal(e.to_string())
                })?;
                if let Some(opened) = secret.as_ref().filter(|o| o.stale) {
                    // Plain text or a retired key: sealed under the current
                    // key as it is used.
                    let sealed = issuer
                        .totp_keys
                        .seal(user.id, Column::Secret, &opened.secret);
                    let changes = CredentialChanges {
                        totp_secret: Some(Some(sealed)),
                        ..CredentialChanges::default()
                    };
                    store::update_credentials(conn, user.id, changes).await?;
                }
                Some(secret.and_then(|opened| {
                    totp::verify(
                        &opened.secret,
                        &input.totp_code,
                        now.timestamp(),
                        credentials.totp_last_step,
                    )
                }))
            };
            if !password_ok || second_factor == Some(None) {
                let (after, locked) = attempts.after_failure(&policy, now);
                store::update_credentials(conn, user.id, CredentialChanges::attempts(after))
                    .await?;
                let (what, refusal) = if !password_ok {
                    let what = "wrong email or password";
                    (what, error::invalid_credentials(what))
                } else if input.totp_code.is_empty() {
                    ("one-time code required", error::totp_required())
                } else {
                    let what = "wrong one-time code";
                    (what, error::invalid_credentials(what))
                };
                record.clone().failed(what).write(conn).await?;
                if locked {
                    let until = after.locked_until.map(|t| t.to_rfc3339());
                    record
                        .clone()
                        .action("user.account.locked_out")
                        .category(steward_proto::audit::Category::System)
                        .comment("locked_until", until.unwrap_or_default())
                        .write(conn)
                        .await?;
                }
                return Ok(Err(refusal));
            }
            if let Err(refusal) = error::ensure_may_sign_in(&user) {
                return refuse(conn, &record, refusal).await;
            }
            let mut changes = CredentialChanges::attempts(Default::default());
            if let Some(Some(step)) = second_factor {
                changes.totp_last_step = Some(step);
            }
            store::update_credentials(conn, user.id, changes).await?;
            let tokens = issuer
                .open_session(conn, &user, None, &input.device, &context.client_ip)
                .await?;
            record.write(conn).await?;
            Ok(Ok(SignedIn {
                user_id: user.id,
                tokens,
            }))
        })
        .await?;
    verdict
}

/// Rotates a refresh token. Presenting a rotated one again revokes its
/// whole family (someone holds a copy); so does an account no longer
/// allowed to sign in.
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    issuer: &Issuer,
    refresh_token: String,
    context: &RequestContext,
) -> Result<Tokens, Error> {
    let digest = identity::secret_digest(&refresh_token);
    let verdict: Verdict<_> = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(token) = store::lock_refresh_token(conn, &digest).await? else {
                return Ok(Err(error::invalid_credentials("unknown refresh token")));
            };
            let record = record(
                "user.session.refreshed",
                &token.user_id.to_string(),
                None,
                context,
            )
            .comment("session_family", token.family_id.to_string());
            if token.revoked_at.is_some() {
                return Ok(Err(error::invalid_credentials(
                    "the session was signed out",
                )));
            }
            if token.rotated_at.is_some() {
                let revoked = store::revoke_family(conn, token.family_id).await?;
                record
                    .action("user.session.refresh_token_reused")
                    .comment("revoked_tokens", revoked.to_string())
                    .failed("a rotated refresh token was presented again")
                    .write(conn)
                    .await?;
                return Ok(Err(error::refresh_token_reused()));
            }
            if token.expires_at <= Utc::now() {
                return Ok(Err(error::invalid_credentials("the refresh token expired")));
            }
            let user = load_user(conn, token.user_id).await?;
            if let Err(refusal) = error::ensure_may_sign_in(&user) {
                store::revoke_family(conn, token.family_id).await?;
                return refuse(conn, &record, refusal).await;
            }
            store::mark_rotated(conn, token.id).await?;
            let (family, device) = (Some(token.family_id), token.device.as_str());
            let tokens = issuer
                .open_session(conn, &user, family, device, &context.client_ip)
                .await?;
            record.write(conn).await?;
            Ok(Ok(tokens))
        })
        .await?;
    verdict
}

/// Ends the session the refresh token belongs to. Signing out twice is
/// fine; only the first is a change.
pub async fn sign_out(
    conn: &mut AsyncPgConnection,
    refresh_token: String,
    context: &RequestContext,
) -> Result<(), Error> {
    let digest = identity::secret_digest(&refresh_token);
    conn.transaction::<_, Error, _>(async |conn| {
        let Some(token) = store::lock_refresh_token(conn, &digest).await? else {
            return Err(error::invalid_credentials("unknown refresh token"));
        };
        if token.revoked_at.is_none() {
            store::revoke_family(conn, token.family_id).await?;
            record("user.signed_out", &token.user_id.to_string(), None, context)
                .comment("device", token.device.clone())
                .write(conn)
                .await?;
        }
        Ok(())
    })
    .await
}

/// Clears the failure counter and any lockout.
pub async fn unblock(tx: &mut Tx<'_>, user_id: Uuid) -> Result<(), Error> {
    load_user(tx.conn, user_id).await?;
    let credentials = store::lock_credentials(tx.conn, user_id).await?;
    let was_locked = credentials.attempts().is_locked(Utc::now());
    store::update_credentials(
        tx.conn,
        user_id,
        CredentialChanges::attempts(Default::default()),
    )
    .await?;
    tx.note(|r| r.comment("was_locked", was_locked.to_string()));
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Exchanged {
    pub token_id: Uuid,
    pub tokens: Tokens,
}

/// An API token's secret for a short access token, never outliving the API
/// token itself.
pub async fn exchange_api_token(
    conn: &mut AsyncPgConnection,
    issuer: &Issuer,
    secret: String,
    context: &RequestContext,
) -> Result<Exchanged, Error> {
    let digest = identity::secret_digest(&secret);
    conn.transaction::<_, Error, _>(async |conn| {
        let Some(token) = store::find_api_token_by_secret(conn, &digest).await? else {
            return Err(error::invalid_credentials("unknown API token"));
        };
        if token.expires_at <= Utc::now() {
            return Err(error::invalid_credentials("the API token expired"));
        }
        let user: User = load_user(conn, token.user_id).await?;
        error::ensure_may_sign_in(&user)?;
        store::touch_api_token(conn, token.id).await?;
        let tid = token.id.to_string();
        let left = (token.expires_at - Utc::now()).to_std().unwrap_or_default();
        let ttl = issuer.config.access_token_ttl.min(left);
        let access = issuer.access_token(&user, ttl, |c| c.tid = Some(tid.clone()));
        record("api_token.used", &user.id.to_string(), Some(tid), context)
            .write(conn)
            .await?;
        Ok(Exchanged {
            token_id: token.id,
            tokens: Tokens::access_only(access),
        })
    })
    .await
}
