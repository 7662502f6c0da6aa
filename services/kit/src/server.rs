//! Server bootstrap: every Steward gRPC server is built here, with the same
//! tower stack, health, reflection and graceful shutdown.

use std::{
    future::Future,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::future::{BoxFuture, FutureExt};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::watch};
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;

use crate::{
    auth::{AuthLayer, PolicyTable, TokenVerifier},
    context::ContextLayer,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Peers allowed to tell us the client's address (the gateway, ingress).
    /// Default: none (`steward up` trusts loopback, where its gateway is).
    pub trusted_proxies: Vec<IpNet>,
    /// Upper bound per call; a shorter `grpc-timeout` from the client wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Calls in flight per server; beyond it calls are shed at once with
    /// RESOURCE_EXHAUSTED instead of queueing.
    pub concurrency_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            // Trust no proxy unless told: any peer could forge the header.
            trusted_proxies: Vec::new(),
            request_timeout: Duration::from_secs(30),
            concurrency_limit: 1024,
        }
    }
}

/// Everything a server needs to authenticate and authorize calls.
#[derive(Clone)]
pub struct Security {
    pub policies: PolicyTable,
    pub verifier: TokenVerifier,
    /// Where the service records the access refusals it decides (its own
    /// outbox); `None` records nothing (the audit service itself).
    pub refusals: Option<crate::auth::refusals::RefusalAudit>,
}

/// One service to serve: its routes and the gRPC service names it answers
/// health checks for.
pub struct Serve {
    pub listener: TcpListener,
    pub routes: Routes,
    pub service_names: Vec<&'static str>,
}

/// Serves until `shutdown` resolves, then stops accepting and drains the
/// calls in flight.
pub async fn serve(
    serve: Serve,
    security: Security,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for name in &serve.service_names {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    // Reflection lists only what this server implements, though it can
    // describe every Steward type.
    let reflection = || {
        serve.service_names.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health"),
            |builder, name| builder.with_service_name(*name),
        )
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the descriptor set compiled with the crate is valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the descriptor set compiled with the crate is valid");

    let component = component_of(&serve.service_names);
    let stack = ServiceBuilder::new()
        // 1. trace: one span per call, child of the caller's W3C context,
        //    naming the component that serves it.
        .layer(TraceLayer { component })
        // 2. timeout: applied by tonic's `Server::timeout` below, which also
        //    honours the client's grpc-timeout; expiry answers CANCELLED.
        // 3. load shed + concurrency limit: excess calls fail fast with
        //    RESOURCE_EXHAUSTED rather than queue without bound.
        .load_shed()
        .concurrency_limit(config.concurrency_limit)
        // 4. request context: request id, client ip, user agent, traceparent.
        .layer(ContextLayer::new(config.trusted_proxies.clone()))
        // 5. authn/policy: bearer token -> Caller, method policy enforced.
        .layer(AuthLayer::with_refusals(
            security.policies,
            security.verifier,
            security.refusals,
        ))
        .into_inner();

    // Without TCP_NODELAY a multi-frame response waits on Nagle + delayed
    // ACK (~40 ms per call on loopback).
    let incoming =
        tonic::transport::server::TcpIncoming::from(serve.listener).with_nodelay(Some(true));
    let mut routes = serve.routes;
    routes = routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    tonic::transport::Server::builder()
        .timeout(config.request_timeout)
        .layer(stack)
        .serve_with_incoming_shutdown(routes, incoming, shutdown)
        .await
}

/// A stop signal for a component's background tasks: set when `outer` is
/// (or its sender goes away), and by the component itself when its server
/// ends early, so that a failed server never leaves tasks running.
pub fn linked_stop(outer: &watch::Receiver<bool>) -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (stop, stopped) = watch::channel(false);
    let mut outer = outer.clone();
    let forward = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = outer.wait_for(|s| *s) => {},
            _ = forward.closed() => return,
        }
        let _ = forward.send(true);
    });
    (stop, stopped)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handlers can be installed");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The component serving `service_names`, as traces name it:
/// `steward.accounts.v1.AuthService` -> `steward-accounts`.
fn component_of(service_names: &[&str]) -> std::sync::Arc<str> {
    let component = service_names
        .iter()
        .find_map(|name| name.strip_prefix("steward.")?.split('.').next())
        .map(crate::telemetry::component_service_name)
        .unwrap_or_else(|| crate::telemetry::DEFAULT_SERVICE_NAME.to_owned());
    component.into()
}

#[derive(Clone)]
struct TraceLayer {
    component: std::sync::Arc<str>,
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            component: self.component.clone(),
        }
    }
}

#[derive(Clone)]
struct TraceService<S> {
    inner: S,
    component: std::sync::Arc<str>,
}

impl<S, B, RB> Service<http::Request<B>> for TraceService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "rpc",
            rpc.method = %req.uri().path(),
            request_id = tracing::field::Empty,
            user_id = tracing::field::Empty,
            steward.component = &*self.component,
        );
        crate::telemetry::set_remote_parent(&span, req.headers());
        let started = Instant::now();
        let method = req.uri().path().to_owned();
        let component = self.component.clone();
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        async move {
            let result = future.await;
            match &result {
                // Errors raised before the handler travel as a trailers-only
                // response: grpc-status is in the headers.
                Ok(response) => {
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0");
                    // Unknown paths would make a label per fuzzed method.
                    let method = if method.starts_with("/steward.") || method.starts_with("/grpc.")
                    {
                        method.as_str()
                    } else {
                        "other"
                    };
                    let labels = crate::metrics::rpc_labels(&component, method, code);
                    crate::metrics::RPC_CALLS.inc(&labels);
                    crate::metrics::RPC_DURATION.observe(&labels, started.elapsed().as_secs_f64());
                    tracing::debug!(
                        grpc.status = code,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "rpc finished"
                    );
                }
                Err(err) => tracing::warn!(error = %err, "rpc failed"),
            }
            result
        }
        .instrument(span)
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_named_after_their_package() {
        assert_eq!(
            &*component_of(&[
                "steward.accounts.v1.AccountsService",
                "steward.accounts.v1.AuthService"
            ]),
            "steward-accounts"
        );
        assert_eq!(
            &*component_of(&["steward.billing.v1.BillingService"]),
            "steward-billing"
        );
        assert_eq!(&*component_of(&[]), "steward");
    }
}
