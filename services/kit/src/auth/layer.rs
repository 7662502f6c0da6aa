//! The authn/policy tower layer: bearer token -> [`Caller`], checked against
//! the method's policy before the handler runs.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::{BoxFuture, FutureExt};
use steward_proto::common::Access;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::{
    caller::{Caller, Grant},
    policy::{MethodPolicy, PolicyTable},
    refusals::{self, Refusal, RefusalAudit},
    token::{Claims, Role, TokenError, TokenVerifier},
};
use crate::error::refusal;

#[derive(Clone)]
pub struct AuthLayer {
    inner: Arc<Shared>,
}

struct Shared {
    policies: PolicyTable,
    verifier: TokenVerifier,
    refusals: Option<RefusalAudit>,
}

impl AuthLayer {
    pub fn new(policies: PolicyTable, verifier: TokenVerifier) -> Self {
        Self::with_refusals(policies, verifier, None)
    }

    /// Also records the access refusals of the service (see
    /// [`super::refusals`]).
    pub fn with_refusals(
        policies: PolicyTable,
        verifier: TokenVerifier,
        refusals: Option<RefusalAudit>,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                policies,
                verifier,
                refusals,
            }),
        }
    }
}

/// Access refusals are recorded; bad input and rule refusals are the
/// command runner's to audit.
fn is_access_refusal(code: Code) -> bool {
    matches!(code, Code::PermissionDenied | Code::Unauthenticated)
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Some((Code::from_i32(code), message))
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            shared: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Decides whether a caller presenting `token` may call a method with
/// `policy`. Pure, so the rules are tested without a server.
pub fn authorize(
    policy: Option<&MethodPolicy>,
    token: Option<&str>,
    verifier: &TokenVerifier,
) -> Result<Option<Caller>, Status> {
    decide(policy, token.map(|t| verifier.verify(t)))
}

/// The policy of the method at `path`: UNIMPLEMENTED when no Steward service
/// has such a method (as gRPC clients expect of a method that does not
/// exist), `None` (then denied by [`decide`]) when it exists without one.
pub fn method_policy<'a>(
    policies: &'a PolicyTable,
    path: &str,
) -> Result<Option<&'a MethodPolicy>, Status> {
    if !policies.knows(path) {
        return Err(Status::unimplemented(format!("unknown method {path}")));
    }
    Ok(policies.get(path))
}

/// [`authorize`] for a token already verified (the gateway caches
/// verifications): `None` when no token was presented.
pub fn decide(
    policy: Option<&MethodPolicy>,
    verified: Option<Result<Claims, TokenError>>,
) -> Result<Option<Caller>, Status> {
    let Some(policy) = policy else {
        return Err(refusal(
            Code::PermissionDenied,
            "NO_POLICY",
            "method has no access policy",
        ));
    };
    let claims = match verified {
        None if policy.allows(Access::Public) => return Ok(None),
        None => return Err(Status::unauthenticated("missing bearer token")),
        Some(Err(TokenError::Expired)) => return Err(Status::unauthenticated("token expired")),
        Some(Err(TokenError::Revoked)) => {
            return Err(refusal(
                Code::Unauthenticated,
                "TOKEN_REVOKED",
                "the token was revoked (account status, session stopped or API token deleted); sign in again",
            ));
        }
        Some(Err(err)) => return Err(Status::unauthenticated(format!("invalid token: {err}"))),
        Some(Ok(claims)) => claims,
    };
    if policy.forbidden_while_impersonating && claims.act.is_some() {
        return Err(refusal(
            Code::PermissionDenied,
            "FORBIDDEN_WHILE_IMPERSONATING",
            "this method is not allowed while signed in as another user",
        ));
    }
    let role_grant = [
        (Access::UserAdmin, Role::UserAdmin),
        (Access::PlatformService, Role::PlatformService),
    ]
    .into_iter()
    .find(|(access, role)| policy.allows(*access) && claims.has_role(*role))
    .map(|(_, role)| Grant::Role(role));
    let grant = match role_grant {
        Some(grant) => grant,
        None if policy.allows(Access::Self_) => Grant::SelfOnly,
        None if policy.allows(Access::Public) => Grant::Public,
        None => {
            return Err(refusal(
                Code::PermissionDenied,
                "ROLE_REQUIRED",
                "the caller lacks a role this method requires",
            ));
        }
    };
    Ok(Some(Caller::from_claims(&claims, grant)))
}

/// The token of an `authorization: Bearer <token>` header.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if PolicyTable::is_public_infrastructure(path) {
            return self.inner.call(req).boxed();
        }
        let decided = method_policy(&self.shared.policies, path)
            .and_then(|policy| authorize(policy, bearer(req.headers()), &self.shared.verifier));
        let audit = self.shared.refusals.clone().map(|sink| {
            let context = req
                .extensions()
                .get::<crate::RequestContext>()
                .cloned()
                .unwrap_or_default();
            (sink, path.to_owned(), context)
        });
        match decided {
            Ok(caller) => {
                if let Some(caller) = &caller {
                    let span = tracing::Span::current();
                    span.record("user_id", caller.user_id.as_str());
                    req.extensions_mut().insert(caller.clone());
                }
                // Take the service that was driven to readiness, leave a clone.
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                let Some((sink, method, context)) = audit else {
                    return async move { ready.call(req).await }.boxed();
                };
                async move {
                    let (response, audited) = refusals::scope(ready.call(req)).await;
                    if let Ok(response) = &response
                        && !audited
                        && let Some((code, message)) = grpc_status(response.headers())
                        && is_access_refusal(code)
                    {
                        sink.record(Refusal {
                            method,
                            code,
                            message,
                            caller,
                            context,
                        });
                    }
                    response
                }
                .boxed()
            }
            Err(status) => {
                tracing::info!(method = path, code = ?status.code(), "call refused by policy");
                if let Some((sink, method, context)) = audit
                    && is_access_refusal(status.code())
                {
                    // A valid token refused for its role still says who asked.
                    let caller = bearer(req.headers())
                        .and_then(|t| self.shared.verifier.verify(t).ok())
                        .map(|claims| Caller::from_claims(&claims, Grant::Public));
                    sink.record(Refusal {
                        method,
                        code: status.code(),
                        message: status.message().to_owned(),
                        caller,
                        context,
                    });
                }
                async move { Ok(status.into_http()) }.boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::{KeySet, TokenSigner};

    fn setup() -> (TokenSigner, TokenVerifier) {
        let signer = TokenSigner::generate();
        let mut keys = KeySet::default();
        keys.add(signer.verifying_key());
        (signer, TokenVerifier::new(keys))
    }

    fn policy(allow: &[Access]) -> MethodPolicy {
        MethodPolicy {
            allow: allow.to_vec(),
            audit_action: String::new(),
            forbidden_while_impersonating: false,
        }
    }

    #[test]
    fn missing_policy_is_denied_even_for_admins() {
        let (signer, verifier) = setup();
        let token = signer.sign(&Claims::new(
            "a",
            &[Role::UserAdmin],
            Duration::from_secs(60),
        ));
        let err = authorize(None, Some(&token), &verifier).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }

    #[test]
    fn unknown_methods_are_unimplemented_known_ones_keep_their_policy() {
        let table = PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET).unwrap();
        let err =
            method_policy(&table, "/steward.accounts.v1.AccountsService/NoSuchMethod").unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        let err = method_policy(&table, "/nowhere.v1.Nothing/Call").unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        let policy = method_policy(&table, "/steward.accounts.v1.AccountsService/GetUser")
            .unwrap()
            .expect("GetUser has a policy");
        assert!(policy.allows(Access::UserAdmin));
    }

    #[test]
    fn roles_and_self() {
        let (signer, verifier) = setup();
        let user = signer.sign(&Claims::new("u", &[Role::User], Duration::from_secs(60)));
        let admin = signer.sign(&Claims::new(
            "a",
            &[Role::UserAdmin],
            Duration::from_secs(60),
        ));
        let admin_only = policy(&[Access::UserAdmin]);
        let with_self = policy(&[Access::Self_, Access::UserAdmin]);

        assert_eq!(
            authorize(Some(&admin_only), Some(&user), &verifier)
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        assert_eq!(
            authorize(Some(&admin_only), None, &verifier)
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        let caller = authorize(Some(&with_self), Some(&user), &verifier)
            .unwrap()
            .unwrap();
        assert_eq!(caller.grant, Grant::SelfOnly);
        let caller = authorize(Some(&with_self), Some(&admin), &verifier)
            .unwrap()
            .unwrap();
        assert_eq!(caller.grant, Grant::Role(Role::UserAdmin));
        assert!(
            authorize(Some(&policy(&[Access::Public])), None, &verifier)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn impersonation_tokens_are_refused_where_the_policy_says() {
        let (signer, verifier) = setup();
        let mut claims = Claims::new("u", &[Role::User], Duration::from_secs(60));
        claims.act = Some(crate::auth::token::Actor { sub: "a".into() });
        claims.sid = Some("s".into());
        let token = signer.sign(&claims);
        let mut forbidden = policy(&[Access::Self_]);
        assert!(authorize(Some(&forbidden), Some(&token), &verifier).is_ok());
        forbidden.forbidden_while_impersonating = true;
        let err = authorize(Some(&forbidden), Some(&token), &verifier).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let plain = signer.sign(&Claims::new("u", &[Role::User], Duration::from_secs(60)));
        assert!(authorize(Some(&forbidden), Some(&plain), &verifier).is_ok());
    }

    #[test]
    fn revoked_tokens_are_unauthenticated_with_a_reason() {
        let (signer, verifier) = setup();
        let revocations = crate::auth::Revocations::new();
        let verifier = verifier.with_revocations(revocations.clone());
        let token = signer.sign(&Claims::new("u", &[Role::User], Duration::from_secs(60)));
        let with_self = policy(&[Access::Self_]);
        assert!(authorize(Some(&with_self), Some(&token), &verifier).is_ok());
        revocations.add([crate::auth::revocations::Entry {
            kind: crate::auth::revocations::RevokedKind::User,
            subject: "u".into(),
            not_before_ms: chrono::Utc::now().timestamp_millis() + 1,
            expires_at: chrono::Utc::now().timestamp() + 60,
        }]);
        let err = authorize(Some(&with_self), Some(&token), &verifier).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let info = tonic_types::StatusExt::get_details_error_info(&err).expect("error info");
        assert_eq!(info.reason, "TOKEN_REVOKED");
    }
}
