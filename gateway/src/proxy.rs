//! The edge service: for each call, rate limits, authentication, the
//! method's policy, impersonation checks, then the call is forwarded to its
//! backend as it came (bytes, not decoded messages) over a long-lived
//! channel, with the request context in metadata.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use ipnet::IpNet;
use steward_kit::{
    RequestContext,
    auth::{Claims, PolicyTable, layer::decide},
    context::keys,
};
use tonic::{Code, Status, body::Body, service::Routes, transport::Channel};
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::{
    identity::{Authenticated, Identity},
    limits::{Exceeded, Limits},
    metrics::{MeteredBody, Metrics, Pending, header_code},
    refusals::{Refusal, RefusalAudit},
};

/// Everything the gateway needs per call.
pub struct Shared {
    /// Service segment of the package (`accounts` in
    /// `steward.accounts.v1`) -> channel to that backend.
    pub backends: HashMap<String, Channel>,
    pub policies: PolicyTable,
    pub identity: Arc<Identity>,
    pub limits: Limits,
    pub refusals: RefusalAudit,
    pub metrics: Metrics,
    pub trusted_proxies: Vec<IpNet>,
    /// The gateway's own health service.
    pub local: Routes,
}

#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// `/steward.accounts.v1.AuthService/SignIn` -> `accounts`.
fn backend_key(path: &str) -> Option<&str> {
    let service = path.strip_prefix('/')?.split('/').next()?;
    let mut parts = service.split('.');
    match (parts.next(), parts.next()) {
        (Some("steward"), Some(name)) => Some(name),
        _ => None,
    }
}

impl Service<Request<Body>> for Gateway {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.handle(req).await) })
    }
}

/// The reason of a refusal: its `ErrorInfo` reason, else the code's name.
fn reason_of(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_else(|| format!("{:?}", status.code()).to_uppercase())
}

impl Shared {
    async fn handle(&self, mut req: Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let path = req.uri().path().to_owned();
        if path.starts_with("/grpc.health.v1.Health/") {
            return match self.local.clone().oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        let peer = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip());
        let context = RequestContext::from_http(req.headers(), peer, &self.trusted_proxies);
        let span = tracing::info_span!(
            "gateway",
            rpc.method = %path,
            request_id = %context.request_id,
            user_id = tracing::field::Empty,
        );
        steward_kit::telemetry::set_remote_parent(&span, req.headers());
        async move {
            let refuse = |status: Status, claims: Option<&Claims>| {
                let reason = reason_of(&status);
                self.refusals.record(Refusal {
                    method: &path,
                    code: status.code(),
                    reason: &reason,
                    message: status.message(),
                    context: &context,
                    claims,
                    elapsed: started.elapsed(),
                });
                self.respond_status(&path, &context, status, started)
            };
            let client_ip = context.client_ip.parse::<IpAddr>().ok();
            if let Err(exceeded) = self.limits.check_client(client_ip, &path) {
                return refuse(rate_limited(exceeded), None);
            }
            let Some(channel) = backend_key(&path).and_then(|k| self.backends.get(k)) else {
                let status = Status::unimplemented(format!("no backend serves {path}"));
                return self.respond_status(&path, &context, status, started);
            };
            let bearer = steward_kit::auth::layer::bearer(req.headers()).map(str::to_owned);
            let Authenticated { forward, verified } = match self
                .identity
                .authenticate(bearer.as_deref(), &context)
                .await
            {
                Ok(authenticated) => authenticated,
                Err(status) if status.code() == Code::Unauthenticated => {
                    return refuse(status, None);
                }
                Err(status) => return self.respond_status(&path, &context, status, started),
            };
            let claims = verified.as_ref().and_then(|v| v.as_ref().ok()).cloned();
            if let Err(status) = decide(self.policies.get(&path), verified) {
                return refuse(status, claims.as_ref());
            }
            if let Some(claims) = &claims {
                tracing::Span::current().record("user_id", claims.sub.as_str());
                if let Some(sid) = &claims.sid {
                    match self.identity.session_active(sid).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let status = steward_kit::refusal(
                                Code::Unauthenticated,
                                "IMPERSONATION_ENDED",
                                "the impersonation session has ended",
                            );
                            return refuse(status, Some(claims));
                        }
                        Err(status) => {
                            return self.respond_status(&path, &context, status, started);
                        }
                    }
                }
                let principal = claims.act.as_ref().map_or(&claims.sub, |a| &a.sub);
                if let Err(exceeded) = self.limits.check_principal(principal) {
                    return refuse(rate_limited(exceeded), Some(claims));
                }
            }
            prepare_forward(req.headers_mut(), &context, forward.as_deref());
            match channel.clone().oneshot(req).await {
                Ok(response) => self.meter(&path, &context, response, started),
                Err(error) => {
                    tracing::warn!(%error, "backend call failed");
                    let status = Status::unavailable("the service is unavailable");
                    self.respond_status(&path, &context, status, started)
                }
            }
        }
        .instrument(span)
        .await
    }

    fn respond_status(
        &self,
        path: &str,
        context: &RequestContext,
        status: Status,
        started: Instant,
    ) -> Response<Body> {
        let response = status.into_http::<Body>();
        self.meter(path, context, response, started)
    }

    /// Stamps the request id and records the call when its body ends.
    fn meter(
        &self,
        path: &str,
        context: &RequestContext,
        response: Response<Body>,
        started: Instant,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        if let Ok(value) = HeaderValue::from_str(&context.request_id) {
            parts.headers.insert(keys::REQUEST_ID, value);
        }
        let code = header_code(&parts.headers);
        let pending = Pending {
            metrics: self.metrics.clone(),
            method: path.to_owned(),
            started,
        };
        Response::from_parts(parts, Body::new(MeteredBody::new(body, pending, code)))
    }
}

fn rate_limited(exceeded: Exceeded) -> Status {
    let message = match exceeded {
        Exceeded::Ip => "too many calls from this address",
        Exceeded::SignIn => "too many sign-in attempts from this address; wait a minute",
        Exceeded::Principal => "too many calls for this principal",
    };
    steward_kit::refusal(Code::ResourceExhausted, "RATE_LIMITED", message)
}

/// Headers a backend reads: the token to act with and who the end client
/// is (the backend trusts the gateway as a proxy), trace context.
fn prepare_forward(headers: &mut http::HeaderMap, context: &RequestContext, token: Option<&str>) {
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    for (key, value) in [
        (keys::REQUEST_ID, &context.request_id),
        (keys::CLIENT_IP, &context.client_ip),
        (keys::CLIENT_USER_AGENT, &context.user_agent),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(key, value);
        }
    }
    steward_kit::telemetry::inject_current_headers(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_package() {
        assert_eq!(
            backend_key("/steward.accounts.v1.AuthService/SignIn"),
            Some("accounts")
        );
        assert_eq!(
            backend_key("/steward.billing.v1.BillingService/Refill"),
            Some("billing")
        );
        assert_eq!(backend_key("/grpc.reflection.v1.ServerReflection/X"), None);
        assert_eq!(backend_key("nonsense"), None);
    }
}
