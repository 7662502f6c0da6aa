//! `steward.accounts.v1.AuthService`: sign-in, sessions, lockout, TOTP,
//! passwords, API tokens, signing keys and impersonation.
//!
//! Failed sign-ins change state (the failure counter, a lockout) and so
//! commit their audit record with that change; the caller still gets the
//! refusal. Hence the `Verdict` pattern below: the transaction returns
//! `Ok(Err(refusal))` to commit and refuse.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use steward_kit::{
    FieldViolations, RequestContext,
    auth::{Actor, Caller, Claims, Grant, KeySet, Role, TokenSigner, token::jwk_x},
    db::{Pool, PooledConnection},
    outbox::{self, AuditRecord},
    page::{self, PageTokens},
};
use steward_proto::{accounts as pb, common, notifications::Notification};
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use super::{SOURCE, convert::timestamp, parse_id};
use crate::{
    IdentityConfig, commands,
    domain::{
        Refusal, User, UserStatus,
        identity::{self, API_TOKEN_PREFIX, LockoutPolicy},
        totp, validate,
    },
    error::{Error, denied},
    store::{
        identity::{self as store, CredentialChanges, SessionFilter},
        users::{self, UserChanges},
    },
};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

#[derive(Clone)]
pub struct AuthApi {
    pool: Pool,
    signer: TokenSigner,
    /// Published in the JWKS: the signer's key and retired keys still
    /// inside their overlap window.
    published: KeySet,
    config: IdentityConfig,
    pages: PageTokens,
}

impl AuthApi {
    pub fn new(
        pool: Pool,
        signer: TokenSigner,
        retired: KeySet,
        config: IdentityConfig,
        pages: PageTokens,
    ) -> Self {
        let mut published = retired;
        published.add(signer.verifying_key());
        Self {
            pool,
            signer,
            published,
            config,
            pages,
        }
    }

    async fn conn(&self) -> Result<PooledConnection<'_>, Error> {
        Ok(self.pool.get().await?)
    }

    fn lockout(&self) -> LockoutPolicy {
        LockoutPolicy {
            threshold: self.config.lockout_threshold,
            window: self.config.lockout_window,
            duration: self.config.lockout_duration,
        }
    }

    /// A short-lived access token for `user` (plus impersonation or API
    /// token claims set by `extra`).
    fn access_token(
        &self,
        user: &User,
        ttl: std::time::Duration,
        extra: impl FnOnce(&mut Claims),
    ) -> (String, DateTime<Utc>) {
        let mut claims = Claims::new(user.id.to_string(), &user.roles, ttl);
        extra(&mut claims);
        let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now);
        (self.signer.sign(&claims), expires)
    }

    /// Opens a session: an access token and the first refresh token of a
    /// new family (or the next one of `family`).
    async fn issue_pair(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        family: Option<Uuid>,
        device: &str,
        client_ip: &str,
    ) -> Result<pb::TokenPair, Error> {
        let (refresh, digest) = identity::new_secret("");
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
        let (access, access_expires) =
            self.access_token(user, self.config.access_token_ttl, |_| {});
        Ok(pb::TokenPair {
            access_token: access,
            access_token_expire_time: Some(timestamp(access_expires)),
            refresh_token: refresh,
            refresh_token_expire_time: Some(timestamp(refresh_expires)),
        })
    }
}

fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn unauthenticated(message: &str) -> Error {
    Error::Refused(
        Code::Unauthenticated,
        Refusal::new("INVALID_CREDENTIALS", message.to_owned()),
    )
}

fn duration_from(
    field: &str,
    value: Option<&prost_types::Duration>,
    default: std::time::Duration,
    max: std::time::Duration,
    v: &mut FieldViolations,
) -> std::time::Duration {
    let Some(d) = value else { return default };
    if d.seconds < 0 || d.nanos < 0 {
        v.add(field, "must not be negative");
        return default;
    }
    let d = std::time::Duration::new(d.seconds as u64, d.nanos as u32);
    if d.is_zero() {
        default
    } else if d > max {
        v.add(
            field,
            format!("must be at most {}", humantime::format_duration(max)),
        );
        default
    } else {
        d
    }
}

fn api_token(t: &store::ApiToken) -> pb::ApiToken {
    pb::ApiToken {
        id: t.id.to_string(),
        user_id: t.user_id.to_string(),
        name: t.name.clone(),
        create_time: Some(timestamp(t.created_at)),
        expire_time: Some(timestamp(t.expires_at)),
        last_use_time: t.last_used_at.map(timestamp),
    }
}

fn session(s: &store::ImpersonationSession) -> pb::ImpersonationSession {
    pb::ImpersonationSession {
        id: s.id.to_string(),
        admin_user_id: s.admin_id.clone(),
        user_id: s.user_id.to_string(),
        reason: s.reason.clone(),
        start_time: Some(timestamp(s.started_at)),
        expire_time: Some(timestamp(s.expires_at)),
        end_time: s.ended_at.map(timestamp),
        active: s.is_active(Utc::now()),
    }
}

/// Tells the user an administrator signed in as them (or stopped).
async fn notify_impersonation(
    conn: &mut AsyncPgConnection,
    template: &str,
    user: &User,
    s: &store::ImpersonationSession,
) -> Result<(), Error> {
    let id = Uuid::now_v7();
    let message = Notification {
        event_id: id.to_string(),
        occurred_at: Some(timestamp(Utc::now())),
        template_id: template.to_owned(),
        recipients: vec![user.email.clone()],
        subject_user_id: user.id.to_string(),
        params: HashMap::from([
            ("admin_user_id".to_owned(), s.admin_id.clone()),
            ("reason".to_owned(), s.reason.clone()),
            ("session_id".to_owned(), s.id.to_string()),
            ("expire_time".to_owned(), s.expires_at.to_rfc3339()),
        ]),
        source: SOURCE.to_owned(),
    };
    outbox::enqueue(conn, outbox::NOTIFICATIONS, id, &message).await?;
    Ok(())
}

/// A user who may hold a session: live and ACTIVE.
fn ensure_may_sign_in(user: &User) -> Result<(), Error> {
    match user.status {
        UserStatus::Active => Ok(()),
        other => Err(Error::precondition(
            "ACCOUNT_NOT_ACTIVE",
            format!("the account is {}", other.as_str().to_lowercase()),
        )),
    }
}

async fn load_user(conn: &mut AsyncPgConnection, id: Uuid) -> Result<User, Error> {
    users::lock(conn, id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))
}

fn live(user: &User) -> Result<(), Error> {
    match user.status {
        UserStatus::Deleted | UserStatus::Destroyed => Err(Error::precondition(
            "USER_NOT_LIVE",
            "the account is destroyed or erased",
        )),
        _ => Ok(()),
    }
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

/// Outcome of a transaction that must commit even when it refuses.
type Verdict<T> = Result<T, Error>;

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let context = RequestContext::of(&request);
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let email = validate::email("email", &r.email, &mut v);
        if r.password.is_empty() {
            v.add("password", "required");
        }
        if r.device.chars().count() > 200 {
            v.add("device", "must be at most 200 characters");
        }
        v.check().map_err(Error::from)?;
        let mut conn = self.conn().await?;
        let user = users::find_live_by_email(&mut conn, &email)
            .await
            .map_err(Error::from)?;
        let hash = match &user {
            Some(u) => users::password_hash(&mut conn, u.id)
                .await
                .map_err(Error::from)?,
            None => None,
        };
        let (Some(user), Some(hash)) = (user, hash) else {
            // Same work as a real check, so timing does not reveal accounts.
            commands::verify_password(commands::decoy_hash(), r.password.clone()).await?;
            return Err(unauthenticated("wrong email or password").into());
        };
        let password_ok = commands::verify_password(hash, r.password.clone()).await?;
        let caller = Caller::signing_in(&user.id.to_string(), None);
        let record = AuditRecord::new(
            SOURCE,
            "user.signed_in",
            &caller,
            &context,
            &user.id.to_string(),
        )
        .comment("device", r.device.clone());
        let policy = self.lockout();
        let verdict: Verdict<pb::SignInResponse> = conn
            .transaction::<_, Error, _>(async |conn| {
                let now = Utc::now();
                let credentials = store::lock_credentials(conn, user.id).await?;
                let attempts = credentials.attempts();
                if attempts.is_locked(now) {
                    let until = attempts.locked_until.unwrap_or(now);
                    let refusal = Error::precondition(
                        "ACCOUNT_LOCKED",
                        format!(
                            "too many failed sign-in attempts; locked until {}",
                            until.to_rfc3339()
                        ),
                    );
                    record
                        .clone()
                        .failed(refusal.to_string())
                        .write(conn)
                        .await?;
                    return Ok(Err(refusal));
                }
                let second_factor = if !password_ok || !user.two_factor_enabled {
                    None
                } else if r.totp_code.is_empty() {
                    // The password was right: asking for the code is no
                    // failure, and counting it would lock users out.
                    let refusal = Error::precondition(
                        "TOTP_REQUIRED",
                        "this account requires a one-time code",
                    );
                    return Ok(Err(refusal));
                } else {
                    Some(credentials.totp_secret.as_deref().and_then(|secret| {
                        totp::verify(
                            secret,
                            &r.totp_code,
                            now.timestamp(),
                            credentials.totp_last_step,
                        )
                    }))
                };
                if !password_ok || second_factor == Some(None) {
                    let (after, locked) = attempts.after_failure(&policy, now);
                    store::update_credentials(conn, user.id, CredentialChanges::attempts(after))
                        .await?;
                    let what = if password_ok {
                        "wrong one-time code"
                    } else {
                        "wrong email or password"
                    };
                    record.clone().failed(what).write(conn).await?;
                    if locked {
                        record
                            .clone()
                            .action("user.account.locked_out")
                            .category(steward_proto::audit::Category::System)
                            .comment(
                                "locked_until",
                                after
                                    .locked_until
                                    .map(|t| t.to_rfc3339())
                                    .unwrap_or_default(),
                            )
                            .write(conn)
                            .await?;
                    }
                    return Ok(Err(unauthenticated(what)));
                }
                if let Err(refusal) = ensure_may_sign_in(&user) {
                    record
                        .clone()
                        .failed(refusal.to_string())
                        .write(conn)
                        .await?;
                    return Ok(Err(refusal));
                }
                let mut changes = CredentialChanges::attempts(Default::default());
                if let Some(Some(step)) = second_factor {
                    changes.totp_last_step = Some(step);
                }
                store::update_credentials(conn, user.id, changes).await?;
                let tokens = self
                    .issue_pair(conn, &user, None, &r.device, &context.client_ip)
                    .await?;
                record.write(conn).await?;
                Ok(Ok(pb::SignInResponse {
                    tokens: Some(tokens),
                    user_id: user.id.to_string(),
                }))
            })
            .await?;
        Ok(Response::new(verdict?))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let context = RequestContext::of(&request);
        let r = request.into_inner();
        if r.refresh_token.is_empty() {
            return Err(FieldViolations::single("refresh_token", "required").into_status());
        }
        let digest = identity::secret_digest(&r.refresh_token);
        let mut conn = self.conn().await?;
        let verdict: Verdict<pb::RefreshResponse> = conn
            .transaction::<_, Error, _>(async |conn| {
                let Some(token) = store::lock_refresh_token(conn, &digest).await? else {
                    return Ok(Err(unauthenticated("unknown refresh token")));
                };
                let caller = Caller::signing_in(&token.user_id.to_string(), None);
                let record = AuditRecord::new(
                    SOURCE,
                    "user.session.refreshed",
                    &caller,
                    &context,
                    &token.user_id.to_string(),
                )
                .comment("session_family", token.family_id.to_string());
                if token.revoked_at.is_some() {
                    return Ok(Err(unauthenticated("the session was signed out")));
                }
                if token.rotated_at.is_some() {
                    // Someone holds a copy of an old token: end the session
                    // for everyone holding any of its tokens.
                    let revoked = store::revoke_family(conn, token.family_id).await?;
                    record
                        .clone()
                        .action("user.session.refresh_token_reused")
                        .comment("revoked_tokens", revoked.to_string())
                        .failed("a rotated refresh token was presented again")
                        .write(conn)
                        .await?;
                    return Ok(Err(Error::Refused(
                        Code::Unauthenticated,
                        Refusal::new(
                            "REFRESH_TOKEN_REUSED",
                            "this refresh token was already used; the session is revoked",
                        ),
                    )));
                }
                if token.expires_at <= Utc::now() {
                    return Ok(Err(unauthenticated("the refresh token expired")));
                }
                let user = load_user(conn, token.user_id).await?;
                if let Err(refusal) = ensure_may_sign_in(&user) {
                    store::revoke_family(conn, token.family_id).await?;
                    record.failed(refusal.to_string()).write(conn).await?;
                    return Ok(Err(refusal));
                }
                store::mark_rotated(conn, token.id).await?;
                let tokens = self
                    .issue_pair(
                        conn,
                        &user,
                        Some(token.family_id),
                        &token.device,
                        &context.client_ip,
                    )
                    .await?;
                record.write(conn).await?;
                Ok(Ok(pb::RefreshResponse {
                    tokens: Some(tokens),
                }))
            })
            .await?;
        Ok(Response::new(verdict?))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let context = RequestContext::of(&request);
        let r = request.into_inner();
        if r.refresh_token.is_empty() {
            return Err(FieldViolations::single("refresh_token", "required").into_status());
        }
        let digest = identity::secret_digest(&r.refresh_token);
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let Some(token) = store::lock_refresh_token(conn, &digest).await? else {
                return Err(unauthenticated("unknown refresh token"));
            };
            // Signing out twice is fine; only the first is a change.
            if token.revoked_at.is_none() {
                store::revoke_family(conn, token.family_id).await?;
                let caller = Caller::signing_in(&token.user_id.to_string(), None);
                AuditRecord::new(
                    SOURCE,
                    "user.signed_out",
                    &caller,
                    &context,
                    &token.user_id.to_string(),
                )
                .comment("device", token.device.clone())
                .write(conn)
                .await?;
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn unblock_user(
        &self,
        request: Request<pb::UnblockUserRequest>,
    ) -> Result<Response<pb::UnblockUserResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "user.account.unblocked", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let id = parse_id("user_id", &r.user_id)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                load_user(conn, id).await?;
                let credentials = store::lock_credentials(conn, id).await?;
                let was_locked = credentials.attempts().is_locked(Utc::now());
                store::update_credentials(
                    conn,
                    id,
                    CredentialChanges::attempts(Default::default()),
                )
                .await?;
                record
                    .clone()
                    .comment("was_locked", was_locked.to_string())
                    .write(conn)
                    .await?;
                Ok(pb::UnblockUserResponse {})
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn enroll_totp(
        &self,
        request: Request<pb::EnrollTotpRequest>,
    ) -> Result<Response<pb::EnrollTotpResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "user.two_factor.enrollment_started", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let id = parse_id("user_id", &r.user_id)?;
            caller.ensure_may_act_on(&r.user_id).map_err(denied)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                live(&user)?;
                if user.two_factor_enabled {
                    return Err(Error::precondition(
                        "TWO_FACTOR_ALREADY_ENABLED",
                        "two-factor is on; an administrator must disable it first",
                    ));
                }
                store::lock_credentials(conn, id).await?;
                let secret = totp::generate_secret();
                store::update_credentials(
                    conn,
                    id,
                    CredentialChanges {
                        totp_pending_secret: Some(Some(secret.clone())),
                        ..CredentialChanges::default()
                    },
                )
                .await?;
                record.clone().write(conn).await?;
                Ok(pb::EnrollTotpResponse {
                    otpauth_uri: totp::otpauth_uri(&self.config.totp_issuer, &user.email, &secret),
                    secret,
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn confirm_totp(
        &self,
        request: Request<pb::ConfirmTotpRequest>,
    ) -> Result<Response<pb::ConfirmTotpResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "user.two_factor.enabled", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let id = parse_id("user_id", &r.user_id)?;
            caller.ensure_may_act_on(&r.user_id).map_err(denied)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                live(&user)?;
                let credentials = store::lock_credentials(conn, id).await?;
                let Some(pending) = credentials.totp_pending_secret else {
                    return Err(Error::precondition(
                        "NO_TOTP_ENROLLMENT",
                        "start with EnrollTotp",
                    ));
                };
                let Some(step) = totp::verify(
                    &pending,
                    &r.code,
                    Utc::now().timestamp(),
                    credentials.totp_last_step,
                ) else {
                    return Err(FieldViolations::single("code", "does not match").into());
                };
                let secret = CredentialChanges {
                    totp_secret: Some(Some(pending)),
                    totp_pending_secret: Some(None),
                    totp_last_step: Some(step),
                    ..CredentialChanges::default()
                };
                set_two_factor(conn, id, secret, true).await?;
                record.clone().write(conn).await?;
                Ok(pb::ConfirmTotpResponse {})
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn disable_two_factor(
        &self,
        request: Request<pb::DisableTwoFactorRequest>,
    ) -> Result<Response<pb::DisableTwoFactorResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "user.two_factor.disabled", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let id = parse_id("user_id", &r.user_id)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                live(&user)?;
                store::lock_credentials(conn, id).await?;
                let cleared = CredentialChanges {
                    totp_secret: Some(None),
                    totp_pending_secret: Some(None),
                    ..CredentialChanges::default()
                };
                set_two_factor(conn, id, cleared, false).await?;
                record
                    .clone()
                    .comment("was_enabled", user.two_factor_enabled.to_string())
                    .write(conn)
                    .await?;
                Ok(pb::DisableTwoFactorResponse {})
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "user.password.changed", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let id = validate::id("user_id", &r.user_id, &mut v);
            if r.new_password.chars().count() < 12 {
                v.add("new_password", "must be at least 12 characters");
            }
            if r.new_password == r.current_password {
                v.add("new_password", "must differ from the current password");
            }
            v.check()?;
            caller.ensure_may_act_on(&r.user_id).map_err(denied)?;
            let mut conn = self.conn().await?;
            let current = users::password_hash(&mut conn, id).await?;
            let matches = match current {
                Some(hash) => commands::verify_password(hash, r.current_password.clone()).await?,
                None => false,
            };
            if !matches {
                return Err(FieldViolations::single("current_password", "does not match").into());
            }
            let new_hash = commands::hash_password(r.new_password.clone()).await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                live(&user)?;
                users::update(
                    conn,
                    id,
                    UserChanges {
                        password_hash: Some(Some(new_hash)),
                        ..UserChanges::default()
                    },
                )
                .await?;
                let revoked = store::revoke_all_for_user(conn, id).await?;
                record
                    .clone()
                    .comment("sessions_signed_out", revoked.to_string())
                    .write(conn)
                    .await?;
                Ok(pb::ChangePasswordResponse {})
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "api_token.created", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let id = validate::id("user_id", &r.user_id, &mut v);
            let name = r.name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                v.add("name", "must be 1 to 100 characters");
            }
            let ttl = duration_from(
                "ttl",
                r.ttl.as_ref(),
                self.config.api_token_default_ttl,
                self.config.api_token_max_ttl,
                &mut v,
            );
            v.check()?;
            caller.ensure_may_act_on(&r.user_id).map_err(denied)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                live(&user)?;
                let (secret, digest) = identity::new_secret(API_TOKEN_PREFIX);
                let token = store::insert_api_token(
                    conn,
                    store::NewApiToken {
                        id: Uuid::now_v7(),
                        user_id: id,
                        name: name.to_owned(),
                        secret_hash: digest,
                        lifetime_secs: ttl.as_secs().max(1) as i64,
                        expires_at: Utc::now() + chrono_duration(ttl),
                    },
                )
                .await?;
                record
                    .clone()
                    .token_id(&token.id.to_string())
                    .comment("name", token.name.clone())
                    .write(conn)
                    .await?;
                Ok(pb::CreateApiTokenResponse {
                    token: Some(api_token(&token)),
                    secret,
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let id = validate::id("user_id", &r.user_id, &mut v);
        let fingerprint = format!("api_tokens|{id}");
        let page = self
            .pages
            .page::<Uuid>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE);
        let page = match page {
            Ok(page) => Some(page),
            Err(e) => {
                v.merge(e);
                None
            }
        };
        v.check().map_err(Error::from)?;
        let page = page.expect("checked above");
        caller.ensure_may_act_on(&r.user_id)?;
        let mut conn = self.conn().await?;
        let rows = store::list_api_tokens(&mut conn, id, page.after, page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) =
            page::split(rows, page.size, |t| self.pages.encode(&fingerprint, &t.id));
        Ok(Response::new(pb::ListApiTokensResponse {
            tokens: rows.iter().map(api_token).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn refresh_api_token(
        &self,
        request: Request<pb::RefreshApiTokenRequest>,
    ) -> Result<Response<pb::RefreshApiTokenResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "api_token.refreshed", &request)?;
        let r = request.into_inner();
        let record = record.token_id(&r.token_id);
        let result = async {
            let id = parse_id("token_id", &r.token_id)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let token = store::lock_api_token(conn, id)
                    .await?
                    .ok_or_else(|| Error::not_found("api_token", id))?;
                let record = record.clone().subject(&token.user_id.to_string());
                caller
                    .ensure_may_act_on(&token.user_id.to_string())
                    .map_err(denied)?;
                let (secret, digest) = identity::new_secret(API_TOKEN_PREFIX);
                let expires = Utc::now() + chrono::Duration::seconds(token.lifetime_secs);
                let token = store::replace_api_token_secret(conn, id, digest, expires).await?;
                record.write(conn).await?;
                Ok(pb::RefreshApiTokenResponse {
                    token: Some(api_token(&token)),
                    secret,
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn delete_api_token(
        &self,
        request: Request<pb::DeleteApiTokenRequest>,
    ) -> Result<Response<pb::DeleteApiTokenResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "api_token.deleted", &request)?;
        let r = request.into_inner();
        let record = record.token_id(&r.token_id);
        let result = async {
            let id = parse_id("token_id", &r.token_id)?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let token = store::lock_api_token(conn, id)
                    .await?
                    .ok_or_else(|| Error::not_found("api_token", id))?;
                caller
                    .ensure_may_act_on(&token.user_id.to_string())
                    .map_err(denied)?;
                store::delete_api_token(conn, id).await?;
                record
                    .clone()
                    .subject(&token.user_id.to_string())
                    .comment("name", token.name.clone())
                    .write(conn)
                    .await?;
                Ok(pb::DeleteApiTokenResponse {})
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn exchange_api_token(
        &self,
        request: Request<pb::ExchangeApiTokenRequest>,
    ) -> Result<Response<pb::ExchangeApiTokenResponse>, Status> {
        let context = RequestContext::of(&request);
        let r = request.into_inner();
        if !r.secret.starts_with(API_TOKEN_PREFIX) {
            return Err(FieldViolations::single("secret", "not an API token").into_status());
        }
        let digest = identity::secret_digest(&r.secret);
        let mut conn = self.conn().await?;
        let response = conn
            .transaction::<_, Error, _>(async |conn| {
                let Some(token) = store::find_api_token_by_secret(conn, &digest).await? else {
                    return Err(unauthenticated("unknown API token"));
                };
                if token.expires_at <= Utc::now() {
                    return Err(unauthenticated("the API token expired"));
                }
                let user = load_user(conn, token.user_id).await?;
                ensure_may_sign_in(&user)?;
                store::touch_api_token(conn, token.id).await?;
                let tid = token.id.to_string();
                // Never beyond the API token's own expiry.
                let left = (token.expires_at - Utc::now()).to_std().unwrap_or_default();
                let ttl = self.config.access_token_ttl.min(left);
                let (access, expires) = self.access_token(&user, ttl, |c| {
                    c.tid = Some(tid.clone());
                });
                let caller = Caller::signing_in(&user.id.to_string(), Some(tid.clone()));
                AuditRecord::new(
                    SOURCE,
                    "api_token.used",
                    &caller,
                    &context,
                    &user.id.to_string(),
                )
                .write(conn)
                .await?;
                Ok(pb::ExchangeApiTokenResponse {
                    tokens: Some(pb::TokenPair {
                        access_token: access,
                        access_token_expire_time: Some(timestamp(expires)),
                        ..Default::default()
                    }),
                    token_id: tid,
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys = self
            .published
            .keys()
            .into_iter()
            .map(|(kid, key)| pb::Jwk {
                kid,
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: jwk_x(&key),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
            })
            .collect();
        Ok(Response::new(pb::GetJwksResponse { keys }))
    }

    async fn start_impersonation(
        &self,
        request: Request<pb::StartImpersonationRequest>,
    ) -> Result<Response<pb::StartImpersonationResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "impersonation.started", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            let id = validate::id("user_id", &r.user_id, &mut v);
            let reason = r.reason.trim();
            if reason.is_empty() || reason.chars().count() > 500 {
                v.add("reason", "must be 1 to 500 characters");
            }
            let ttl = duration_from(
                "ttl",
                r.ttl.as_ref(),
                self.config.impersonation_default_ttl,
                self.config.impersonation_max_ttl,
                &mut v,
            );
            v.check()?;
            if caller.user_id == r.user_id {
                return Err(Error::precondition(
                    "CANNOT_IMPERSONATE_SELF",
                    "an administrator cannot sign in as themselves",
                ));
            }
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let user = load_user(conn, id).await?;
                live(&user)?;
                if user.roles.iter().any(|r| *r != Role::User) {
                    return Err(Error::Refused(
                        Code::PermissionDenied,
                        Refusal::new(
                            "CANNOT_IMPERSONATE_PRIVILEGED",
                            "signing in as an administrator or a platform service is not allowed",
                        ),
                    ));
                }
                let started = store::insert_session(
                    conn,
                    store::NewImpersonationSession {
                        id: Uuid::now_v7(),
                        admin_id: caller.user_id.clone(),
                        user_id: id,
                        reason: reason.to_owned(),
                        expires_at: Utc::now() + chrono_duration(ttl),
                    },
                )
                .await?;
                let sid = started.id.to_string();
                let (access, expires) = self.access_token(&user, ttl, |c| {
                    c.act = Some(Actor {
                        sub: caller.user_id.clone(),
                    });
                    c.sid = Some(sid.clone());
                });
                notify_impersonation(conn, "impersonation.started", &user, &started).await?;
                record
                    .clone()
                    .impersonation(&caller.user_id, &sid)
                    .comment("reason", reason.to_owned())
                    .comment("expire_time", started.expires_at.to_rfc3339())
                    .write(conn)
                    .await?;
                Ok(pb::StartImpersonationResponse {
                    session: Some(session(&started)),
                    tokens: Some(pb::TokenPair {
                        access_token: access,
                        access_token_expire_time: Some(timestamp(expires)),
                        ..Default::default()
                    }),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn stop_impersonation(
        &self,
        request: Request<pb::StopImpersonationRequest>,
    ) -> Result<Response<pb::StopImpersonationResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "impersonation.stopped", &request)?;
        let r = request.into_inner();
        let result = async {
            let id = parse_id("session_id", &r.session_id)?;
            // An administrator stops any session; an impersonation token
            // only its own.
            let own = caller.impersonation_session_id.as_deref() == Some(r.session_id.as_str());
            if caller.grant != Grant::Role(Role::UserAdmin) && !own {
                return Err(Error::Refused(
                    Code::PermissionDenied,
                    Refusal::new(
                        "NOT_YOUR_SESSION",
                        "only an administrator or the session itself may stop it",
                    ),
                ));
            }
            let mut conn = self.conn().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let current = store::get_session(conn, id, true)
                    .await?
                    .ok_or_else(|| Error::not_found("impersonation_session", id))?;
                if current.ended_at.is_some() {
                    return Err(Error::precondition(
                        "SESSION_ENDED",
                        "the impersonation session already ended",
                    ));
                }
                let by = caller
                    .impersonator_user_id
                    .clone()
                    .unwrap_or_else(|| caller.user_id.clone());
                let ended = store::end_session(conn, id, &by).await?;
                let user = load_user(conn, ended.user_id).await?;
                notify_impersonation(conn, "impersonation.stopped", &user, &ended).await?;
                record
                    .clone()
                    .subject(&ended.user_id.to_string())
                    .impersonation(&ended.admin_id, &ended.id.to_string())
                    .comment("stopped_by", by)
                    .write(conn)
                    .await?;
                Ok(pb::StopImpersonationResponse {
                    session: Some(session(&ended)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn list_impersonation_sessions(
        &self,
        request: Request<pb::ListImpersonationSessionsRequest>,
    ) -> Result<Response<pb::ListImpersonationSessionsResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let filter = SessionFilter {
            admin_id: Some(r.admin_user_id.clone()).filter(|a| !a.is_empty()),
            user_id: (!r.user_id.is_empty()).then(|| validate::id("user_id", &r.user_id, &mut v)),
            active_only: r.active_only,
        };
        let fingerprint = format!("sessions|{filter:?}");
        let page =
            match self
                .pages
                .page::<Uuid>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
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
        let rows = store::list_sessions(&mut conn, &filter, page.after, page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) =
            page::split(rows, page.size, |s| self.pages.encode(&fingerprint, &s.id));
        Ok(Response::new(pb::ListImpersonationSessionsResponse {
            sessions: rows.iter().map(session).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn check_impersonation_session(
        &self,
        request: Request<pb::CheckImpersonationSessionRequest>,
    ) -> Result<Response<pb::CheckImpersonationSessionResponse>, Status> {
        let id = parse_id("session_id", &request.get_ref().session_id)?;
        let mut conn = self.conn().await?;
        let found = store::get_session(&mut conn, id, false)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CheckImpersonationSessionResponse {
            active: found.as_ref().is_some_and(|s| s.is_active(Utc::now())),
            expire_time: found.map(|s| timestamp(s.expires_at)),
        }))
    }
}
