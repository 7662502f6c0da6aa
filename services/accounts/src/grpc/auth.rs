//! `steward.accounts.v1.AuthService`: sign-in, sessions, lockout, TOTP,
//! passwords, API tokens, signing keys and impersonation. Decode, call an
//! `identity` command, encode; sign-in, refresh, sign-out and the API token
//! exchange commit their own audit records (see `identity::commands`).

use steward_kit::{
    Commands, Error, RequestContext,
    auth::{Caller, KeySet, token::jwk_x},
    page::PageTokens,
};
use steward_proto::accounts as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    change,
    convert::{self, auth as req},
};
use crate::{
    IdentityConfig,
    identity::{
        Issuer, api_tokens, commands as identity, impersonation, passwords,
        revocations::hub::Hub,
        store::{self, SessionFilter},
        two_factor,
    },
};

#[derive(Clone)]
pub struct AuthApi {
    commands: Commands,
    issuer: Issuer,
    /// Published in the JWKS: the signer's key and retired keys still
    /// inside their overlap window.
    published: KeySet,
    pages: PageTokens,
    revocations: Hub,
}

impl AuthApi {
    pub fn new(
        commands: Commands,
        issuer: Issuer,
        retired: KeySet,
        pages: PageTokens,
        revocations: Hub,
    ) -> Self {
        let mut published = retired;
        published.add(issuer.signer.verifying_key());
        Self {
            commands,
            issuer,
            published,
            pages,
            revocations,
        }
    }

    fn config(&self) -> &IdentityConfig {
        &self.issuer.config
    }
}

/// Decodes the input of an unauthenticated call, then runs it on one
/// connection (the command commits its own audit records).
async fn anonymous<I, T>(
    commands: &Commands,
    input: Result<I, Error>,
    body: impl AsyncFnOnce(&mut diesel_async::AsyncPgConnection, I) -> Result<T, Error>,
) -> Result<T, Status> {
    let input = input?;
    Ok(commands.read(async |conn| body(conn, input).await).await?)
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let context = RequestContext::of(&request);
        let input = req::sign_in(request.into_inner());
        let signed = anonymous(&self.commands, input, async |conn, input| {
            identity::sign_in(conn, &self.issuer, input, &context).await
        })
        .await?;
        Ok(Response::new(pb::SignInResponse {
            tokens: Some(req::tokens(signed.tokens)),
            user_id: signed.user_id.to_string(),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let context = RequestContext::of(&request);
        let input = req::refresh_token(request.into_inner().refresh_token);
        let tokens = anonymous(&self.commands, input, async |conn, token| {
            identity::refresh(conn, &self.issuer, token, &context).await
        })
        .await?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(req::tokens(tokens)),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let context = RequestContext::of(&request);
        let input = req::refresh_token(request.into_inner().refresh_token);
        anonymous(&self.commands, input, async |conn, token| {
            identity::sign_out(conn, token, &context).await
        })
        .await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn unblock_user(
        &self,
        request: Request<pb::UnblockUserRequest>,
    ) -> Result<Response<pb::UnblockUserResponse>, Status> {
        let c = change(&self.commands, request, "user.account.unblocked")?.on(|r| &r.user_id);
        let input = convert::id("user_id", &c.request.user_id);
        c.run(input, async |tx, id| {
            identity::unblock(tx, id).await?;
            Ok(pb::UnblockUserResponse {})
        })
        .await
    }

    async fn enroll_totp(
        &self,
        request: Request<pb::EnrollTotpRequest>,
    ) -> Result<Response<pb::EnrollTotpResponse>, Status> {
        let c = change(
            &self.commands,
            request,
            "user.two_factor.enrollment_started",
        )?
        .on(|r| &r.user_id);
        let input = req::own_user(&c.caller, &c.request.user_id);
        let issuer = &self.config().totp_issuer;
        let keys = &self.issuer.totp_keys;
        c.run(input, async |tx, id| {
            let e = two_factor::enroll(tx, keys, id, issuer).await?;
            Ok(pb::EnrollTotpResponse {
                secret: e.secret,
                otpauth_uri: e.otpauth_uri,
            })
        })
        .await
    }

    async fn confirm_totp(
        &self,
        request: Request<pb::ConfirmTotpRequest>,
    ) -> Result<Response<pb::ConfirmTotpResponse>, Status> {
        let c = change(&self.commands, request, "user.two_factor.enabled")?.on(|r| &r.user_id);
        let input =
            req::own_user(&c.caller, &c.request.user_id).map(|id| (id, c.request.code.clone()));
        let keys = &self.issuer.totp_keys;
        c.run(input, async |tx, (id, code)| {
            two_factor::confirm(tx, keys, id, &code).await?;
            Ok(pb::ConfirmTotpResponse {})
        })
        .await
    }

    async fn disable_two_factor(
        &self,
        request: Request<pb::DisableTwoFactorRequest>,
    ) -> Result<Response<pb::DisableTwoFactorResponse>, Status> {
        let c = change(&self.commands, request, "user.two_factor.disabled")?.on(|r| &r.user_id);
        let input = convert::id("user_id", &c.request.user_id);
        c.run(input, async |tx, id| {
            two_factor::disable(tx, id)
                .await
                .map(|()| pb::DisableTwoFactorResponse {})
        })
        .await
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let c = change(&self.commands, request, "user.password.changed")?.on(|r| &r.user_id);
        // The current password is checked (and the new one hashed) before
        // the transaction; a mismatch is audited like any refusal.
        let input = match req::password_change(&c.caller, &c.request) {
            Ok(change) => {
                self.commands
                    .read(async |conn| passwords::verify_change(conn, change).await)
                    .await
            }
            Err(e) => Err(e),
        };
        c.run(input, async |tx, change| {
            passwords::change_password(tx, change).await?;
            Ok(pb::ChangePasswordResponse {})
        })
        .await
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let c = change(&self.commands, request, "api_token.created")?.on(|r| &r.user_id);
        let input = req::new_api_token(&c.caller, self.config(), &c.request);
        c.run(input, async |tx, input| {
            let issued = api_tokens::create(tx, input).await?;
            Ok(pb::CreateApiTokenResponse {
                token: Some(req::api_token(&issued.token)),
                secret: issued.secret,
            })
        })
        .await
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let caller = Caller::of(&request)?;
        let q = req::list_api_tokens(&self.pages, &caller, request.get_ref())?;
        let (user_id, after) = (q.filter, q.page.after);
        let rows = self
            .commands
            .read(async |conn| {
                Ok(store::list_api_tokens(conn, user_id, after, q.page.limit()).await?)
            })
            .await?;
        let (rows, page) = q.split(&self.pages, rows, |t| t.id);
        Ok(Response::new(pb::ListApiTokensResponse {
            tokens: rows.iter().map(req::api_token).collect(),
            page,
        }))
    }

    async fn refresh_api_token(
        &self,
        request: Request<pb::RefreshApiTokenRequest>,
    ) -> Result<Response<pb::RefreshApiTokenResponse>, Status> {
        let mut c = change(&self.commands, request, "api_token.refreshed")?;
        c.record = c.record.token_id(&c.request.token_id);
        let input = convert::id("token_id", &c.request.token_id);
        let caller = c.caller.clone();
        c.run(input, async |tx, id| {
            let issued = api_tokens::refresh(tx, &caller, id).await?;
            Ok(pb::RefreshApiTokenResponse {
                secret: issued.secret,
                token: Some(req::api_token(&issued.token)),
            })
        })
        .await
    }

    async fn delete_api_token(
        &self,
        request: Request<pb::DeleteApiTokenRequest>,
    ) -> Result<Response<pb::DeleteApiTokenResponse>, Status> {
        let mut c = change(&self.commands, request, "api_token.deleted")?;
        c.record = c.record.token_id(&c.request.token_id);
        let input = convert::id("token_id", &c.request.token_id);
        let caller = c.caller.clone();
        c.run(input, async |tx, id| {
            api_tokens::delete(tx, &caller, id).await?;
            Ok(pb::DeleteApiTokenResponse {})
        })
        .await
    }

    async fn exchange_api_token(
        &self,
        request: Request<pb::ExchangeApiTokenRequest>,
    ) -> Result<Response<pb::ExchangeApiTokenResponse>, Status> {
        let context = RequestContext::of(&request);
        let input = req::api_token_secret(request.into_inner().secret);
        let exchanged = anonymous(&self.commands, input, async |conn, secret| {
            identity::exchange_api_token(conn, &self.issuer, secret, &context).await
        })
        .await?;
        Ok(Response::new(pb::ExchangeApiTokenResponse {
            tokens: Some(req::tokens(exchanged.tokens)),
            token_id: exchanged.token_id.to_string(),
        }))
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
        let c = change(&self.commands, request, "impersonation.started")?.on(|r| &r.user_id);
        let input = req::start_impersonation(self.config(), &c.request);
        let caller = c.caller.clone();
        c.run(input, async |tx, input| {
            let started = impersonation::start(tx, &self.issuer, &caller, input).await?;
            Ok(pb::StartImpersonationResponse {
                session: Some(req::session(&started.session)),
                tokens: Some(req::access_only(started.access)),
            })
        })
        .await
    }

    async fn stop_impersonation(
        &self,
        request: Request<pb::StopImpersonationRequest>,
    ) -> Result<Response<pb::StopImpersonationResponse>, Status> {
        let c = change(&self.commands, request, "impersonation.stopped")?;
        let raw = &c.request.session_id;
        let input = convert::id("session_id", raw)
            .and_then(|id| impersonation::ensure_may_stop(&c.caller, raw).map(|()| id));
        let caller = c.caller.clone();
        c.run(input, async |tx, id| {
            let ended = impersonation::stop(tx, &caller, id).await?;
            Ok(pb::StopImpersonationResponse {
                session: Some(req::session(&ended)),
            })
        })
        .await
    }

    async fn list_impersonation_sessions(
        &self,
        request: Request<pb::ListImpersonationSessionsRequest>,
    ) -> Result<Response<pb::ListImpersonationSessionsResponse>, Status> {
        let q = req::list_sessions(&self.pages, request.get_ref())?;
        let (filter, after): (&SessionFilter, Option<Uuid>) = (&q.filter, q.page.after);
        let rows = self
            .commands
            .read(async |conn| Ok(store::list_sessions(conn, filter, after, q.page.limit()).await?))
            .await?;
        let (rows, page) = q.split(&self.pages, rows, |s| s.id);
        Ok(Response::new(pb::ListImpersonationSessionsResponse {
            sessions: rows.iter().map(req::session).collect(),
            page,
        }))
    }

    async fn check_impersonation_session(
        &self,
        request: Request<pb::CheckImpersonationSessionRequest>,
    ) -> Result<Response<pb::CheckImpersonationSessionResponse>, Status> {
        let id = convert::id("session_id", &request.get_ref().session_id)?;
        let found = self
            .commands
            .read(async |conn| Ok(store::get_session(conn, id, false).await?))
            .await?;
        Ok(Response::new(pb::CheckImpersonationSessionResponse {
            active: found
                .as_ref()
                .is_some_and(|s| s.is_active(chrono::Utc::now())),
            expire_time: found.map(|s| convert::timestamp(s.expires_at)),
        }))
    }

    type WatchRevocationsStream = tonic::codegen::BoxStream<pb::WatchRevocationsResponse>;

    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        use tokio_stream::StreamExt;
        let updates = self
            .revocations
            .watch()
            .map(|update| update.map(req::revocations).map_err(Status::from));
        Ok(Response::new(Box::pin(updates)))
    }
}
