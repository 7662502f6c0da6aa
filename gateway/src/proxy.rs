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
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use ipnet::IpNet;
use steward_kit::{
    RequestContext,
    auth::{
        Claims, PolicyTable,
        layer::{decide, method_policy},
    },
    context::keys,
};
use tonic::{Code, Status, body::Body, service::Routes};
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::{
    backends::Backend,
    identity::{Authenticated, Identity},
    limits::{Exceeded, Limits},
    metrics::{MeteredBody, Metrics, Pending, header_code},
    refusals::{Refusal, RefusalAudit},
};

/// Everything the gateway needs per call.
pub struct Shared {
    /// Service segment of the package (`accounts` in
    /// `steward.accounts.v1`) -> connections to that backend.
    pub backends: HashMap<String, Arc<Backend>>,
    pub policies: PolicyTable,
    pub identity: Arc<Identity>,
    pub limits: Limits,
    pub refusals: RefusalAudit,
    pub metrics: Metrics,
    pub trusted_proxies: Vec<IpNet>,
    /// The gateway's own health and reflection services.
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

/// One call, as the gateway's answers to it need it.
struct Call<'a> {
    path: &'a str,
    context: &'a RequestContext,
    started: Instant,
}

/// Where an admitted call goes.
enum Admitted {
    /// The gateway's own reflection service.
    Local,
    /// The backend, with the access token to act with when it differs from
    /// the bearer (an exchanged API token).
    Forward {
        backend: Arc<Backend>,
        token: Option<String>,
    },
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

/// The most of a refused call's request body the gateway reads before
/// answering, and how long it waits for it.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads what is left of a request body, up to `limit` bytes within `wait`:
/// `true` when the body ended.
async fn drain(body: Body, limit: usize, wait: std::time::Duration) -> bool {
    use http_body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut read = 0usize;
    let drained = async {
        loop {
            if body.is_end_stream() {
                return true;
            }
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += data.len();
                        if read > limit {
                            return false;
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(wait, drained).await.unwrap_or(false)
}

/// An answer given before the call was forwarded (a refusal, an unknown
/// method). Over HTTP/1.1 the connection can carry the next request only
/// once this request's body has been read; so the gateway reads it
/// (bounded), and when it cannot, says `Connection: close` rather than let
/// the client write its next request into a closed connection.
async fn answer_early(req: Request<Body>, response: Response<Body>) -> Response<Body> {
    if req.version() >= http::Version::HTTP_2 {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    if !drain(req.into_body(), DRAIN_LIMIT, DRAIN_WAIT).await {
        parts
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Response::from_parts(parts, body)
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
            steward.component = crate::COMPONENT,
        );
        steward_kit::telemetry::set_remote_parent(&span, req.headers());
        async move {
            let call = Call {
                path: &path,
                context: &context,
                started,
            };
            match self.admit(&call, req.headers()).await {
                Ok(Admitted::Local) => match self.local.clone().oneshot(req).await {
                    Ok(response) => self.meter(&call, response),
                    Err(never) => match never {},
                },
                Ok(Admitted::Forward { backend, token }) => {
                    prepare_forward(req.headers_mut(), &context, token.as_deref());
                    // A backend that hangs (stopped, not closed) is given
                    // the client's deadline and no more; its expiry is
                    // DEADLINE_EXCEEDED, as gRPC says. tonic's server layer
                    // times the same deadline from a moment earlier and
                    // would answer CANCELLED: ours ends DEADLINE_MARGIN
                    // sooner (more than a timer tick), counted from arrival.
                    let deadline = grpc_timeout(req.headers()).map(|d| {
                        tokio::time::Instant::from_std(call.started)
                            + d.saturating_sub(DEADLINE_MARGIN)
                    });
                    let forwarded = backend.call(req);
                    let outcome = match deadline {
                        Some(at) => tokio::time::timeout_at(at, forwarded).await.ok(),
                        None => Some(forwarded.await),
                    };
                    match outcome {
                        Some(Ok(response)) => self.meter(&call, response),
                        Some(Err(error)) => {
                            tracing::warn!(%error, "backend call failed");
                            let status = Status::unavailable("the service is unavailable");
                            self.respond_status(&call, status)
                        }
                        None => {
                            let status = Status::deadline_exceeded(
                                "the service did not answer within the call's deadline",
                            );
                            self.respond_status(&call, status)
                        }
                    }
                }
                Err(response) => answer_early(req, response).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Rate limits, authentication, the method's policy and impersonation
    /// checks: where the call goes, or the answer that refuses it.
    async fn admit(
        &self,
        call: &Call<'_>,
        headers: &http::HeaderMap,
    ) -> Result<Admitted, Response<Body>> {
        let refuse = |status: Status, claims: Option<&Claims>| {
            let reason = reason_of(&status);
            self.refusals.record(Refusal {
                method: call.path,
                code: status.code(),
                reason: &reason,
                message: status.message(),
                context: call.context,
                claims,
                elapsed: call.started.elapsed(),
            });
            self.respond_status(call, status)
        };
        let client_ip = call.context.client_ip.parse::<IpAddr>().ok();
        if let Err(exceeded) = self.limits.check_client(client_ip, call.path) {
            return Err(refuse(rate_limited(exceeded), None));
        }
        // Reflection describes every package routed here, to anyone.
        if PolicyTable::is_public_infrastructure(call.path) {
            return Ok(Admitted::Local);
        }
        let Some(backend) = backend_key(call.path).and_then(|k| self.backends.get(k)) else {
            let status = Status::unimplemented(format!("no backend serves {}", call.path));
            return Err(self.respond_status(call, status));
        };
        let policy =
            method_policy(&self.policies, call.path).map_err(|s| self.respond_status(call, s))?;
        let bearer = steward_kit::auth::layer::bearer(headers).map(str::to_owned);
        let Authenticated { forward, verified } = match self
            .identity
            .authenticate(bearer.as_deref(), call.context)
            .await
        {
            Ok(authenticated) => authenticated,
            Err(status) if status.code() == Code::Unauthenticated => {
                return Err(refuse(status, None));
            }
            Err(status) => return Err(self.respond_status(call, status)),
        };
        let claims = verified.as_ref().and_then(|v| v.as_ref().ok()).cloned();
        if let Err(status) = decide(policy, verified) {
            return Err(refuse(status, claims.as_ref()));
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
                        return Err(refuse(status, Some(claims)));
                    }
                    Err(status) => return Err(self.respond_status(call, status)),
                }
            }
            let principal = claims.act.as_ref().map_or(&claims.sub, |a| &a.sub);
            if let Err(exceeded) = self.limits.check_principal(principal) {
                return Err(refuse(rate_limited(exceeded), Some(claims)));
            }
        }
        Ok(Admitted::Forward {
            backend: backend.clone(),
            token: forward,
        })
    }

    fn respond_status(&self, call: &Call<'_>, status: Status) -> Response<Body> {
        let response = status.into_http::<Body>();
        self.meter(call, response)
    }

    /// Stamps the request id and records the call when its body ends.
    fn meter(&self, call: &Call<'_>, response: Response<Body>) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        if let Ok(value) = HeaderValue::from_str(&call.context.request_id) {
            parts.headers.insert(keys::REQUEST_ID, value);
        }
        let code = header_code(&parts.headers);
        let pending = Pending {
            metrics: self.metrics.clone(),
            method: call.path.to_owned(),
            started: call.started,
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

/// How much sooner than the client's deadline a forwarded call is cut.
const DEADLINE_MARGIN: Duration = Duration::from_millis(2);

/// The call's `grpc-timeout` (1 to 8 digits and a unit: H, M, S, m, u,
/// n); none when absent or malformed, as tonic's server reads it.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_as_the_spec_writes_them() {
        let read = |v: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(read("300m"), Some(Duration::from_millis(300)));
        assert_eq!(read("2S"), Some(Duration::from_secs(2)));
        assert_eq!(read("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(read("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", "S1"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

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
