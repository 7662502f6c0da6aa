//! steward-gateway: the one door for UIs. A gRPC (and gRPC-Web) edge proxy
//! that authenticates callers, enforces each method's policy (USER_ADMIN,
//! SELF, PUBLIC; nothing without a policy), refuses impersonation tokens
//! where the policy says so, rate-limits, audits its refusals and forwards
//! everything else, undecoded, to the service owning the method's package.
//!
//! * [`proxy`]: the per-call pipeline; [`backends`]: connections to the
//!   services;
//! * [`identity`]: token verification, JWKS, API token exchange, sessions;
//! * [`limits`]: rate limits; [`refusals`]: audit of refusals, through
//!   the durable local [`spool`];
//! * [`metrics`]: per-method calls, codes and latency at `GET /metrics`.

/// How the gateway names itself in traces (`steward.component`).
pub const COMPONENT: &str = "steward-gateway";

pub mod backends;
pub mod console;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod refusals;
pub mod spool;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use steward_kit::{
    auth::{KeySet, PolicyTable, TokenSigner},
    server,
};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Channel, Endpoint};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{limits::RateLimitConfig, metrics::Metrics};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Service name (the package segment after `steward.`) -> URL.
    pub backends: BTreeMap<String, String>,
    /// Where refusals are audited; default: the `audit` backend.
    pub audit_endpoint: Option<String>,
    /// Browser origins allowed to call (gRPC-Web); empty: none.
    pub cors_origins: Vec<String>,
    /// Peers in front of the gateway (a load balancer, an ingress) whose
    /// `x-forwarded-for` is believed: the client address rate limits key on
    /// and audit records. Default: none, so any other peer's header is
    /// ignored and the client is the TCP peer.
    pub trusted_proxies: Vec<IpNet>,
    pub rate_limits: RateLimitConfig,
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// How long an impersonation session is taken as active without asking.
    #[serde(with = "humantime_serde")]
    pub session_check_ttl: Duration,
    /// How long an API token's exchanged access token is reused: a deleted
    /// or refreshed API token keeps working through the gateway at most this
    /// long.
    #[serde(with = "humantime_serde")]
    pub api_token_cache_ttl: Duration,
    /// Verified tokens kept in memory.
    pub token_cache_size: usize,
    /// Refusals queued in memory before they are spooled; beyond it they
    /// are counted and summarised.
    pub audit_buffer: usize,
    /// Where refusal audit events wait for the audit service: a directory
    /// of their own (append-only segments, one gateway process at a time).
    /// Required; `steward up` and `steward serve gateway` put it in the data
    /// dir when unset.
    pub refusal_spool_dir: Option<PathBuf>,
    /// The most the spool holds on disk; beyond it refusals are counted and
    /// summarised in one event.
    pub refusal_spool_max_bytes: u64,
    /// Per window and per (method, reason, client address), the first
    /// `refusal_flood_sample` refusals are recorded one by one and the rest
    /// summarised in one event when the window closes.
    #[serde(with = "humantime_serde")]
    pub refusal_flood_window: Duration,
    pub refusal_flood_sample: u64,
    /// The longest wait between two attempts to ship refusals to an
    /// unavailable audit service (retried forever).
    #[serde(with = "humantime_serde")]
    pub refusal_retry_max_backoff: Duration,
    /// HTTP/2 connections kept open to each backend.
    pub connections_per_backend: usize,
    /// The built web console (`console/dist`), served at `/` ([`console`]);
    /// unset: none. `steward up` sets it when `console/dist` exists.
    pub console_dir: Option<std::path::PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let backends = [
            ("accounts", 50051),
            ("billing", 50052),
            ("quotas", 50053),
            ("audit", 50054),
            ("notifications", 50055),
        ]
        .into_iter()
        .map(|(name, port)| (name.to_owned(), format!("http://127.0.0.1:{port}")))
        .collect();
        Self {
            listen: "127.0.0.1:50050".parse().expect("valid address"),
            backends,
            audit_endpoint: None,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            rate_limits: RateLimitConfig::default(),
            jwks_refresh_interval: Duration::from_secs(300),
            session_check_ttl: Duration::from_secs(5),
            api_token_cache_ttl: Duration::from_secs(60),
            token_cache_size: 100_000,
            audit_buffer: 10_000,
            refusal_spool_dir: None,
            refusal_spool_max_bytes: 256 * 1024 * 1024,
            refusal_flood_window: Duration::from_secs(10),
            refusal_flood_sample: 20,
            refusal_retry_max_backoff: Duration::from_secs(30),
            connections_per_backend: 2,
            console_dir: None,
        }
    }
}

/// What the gateway is built from.
pub struct Deps {
    pub config: GatewayConfig,
    pub policies: PolicyTable,
    /// Keys accepted besides the JWKS (configured public keys).
    pub keys: KeySet,
    /// Mints the gateway's PLATFORM_SERVICE tokens (audit ingest, session
    /// checks); without it refusals wait in the spool and sessions are
    /// trusted until their tokens expire.
    pub signer: Option<TokenSigner>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("gateway.backends.{name}: {message}")]
    Backend { name: String, message: String },
    #[error("gateway.backends.accounts is required (sign-in and keys live there)")]
    NoAccounts,
    #[error("gateway.cors_origins: {0} is not a valid origin")]
    Origin(String),
    #[error("gateway.refusal_spool_dir is required (where refusals wait for the audit service)")]
    NoSpoolDir,
    #[error("gateway.refusal_spool_dir: {0}")]
    Spool(#[from] spool::OpenError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A tonic channel to `url` for the gateway's own calls (JWKS, sessions,
/// API token exchange, refusal shipping); forwarded calls go through
/// [`backends`].
fn channel(url: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    // One endpoint: no balancer in front of it (reconnects all the same).
    Ok(endpoint.connect_lazy())
}

pub struct Application {
    listener: TcpListener,
    shared: Arc<proxy::Shared>,
    shipper: refusals::Shipper,
    config: GatewayConfig,
}

impl Application {
    pub async fn build(deps: Deps) -> Result<Self, BuildError> {
        let config = deps.config;
        let mut backends = std::collections::HashMap::new();
        for (name, url) in &config.backends {
            let backend =
                backends::Backend::new(url, config.connections_per_backend).map_err(|message| {
                    BuildError::Backend {
                        name: name.clone(),
                        message,
                    }
                })?;
            backends.insert(name.clone(), Arc::new(backend));
        }
        let policies = deps.policies;
        // Token checks (JWKS, sessions, API token exchange) are calls of the
        // gateway's own, through a tonic client.
        let accounts_url = config
            .backends
            .get("accounts")
            .ok_or(BuildError::NoAccounts)?;
        let accounts = channel(accounts_url).map_err(|message| BuildError::Backend {
            name: "accounts".into(),
            message,
        })?;
        let audit_endpoint = config
            .audit_endpoint
            .clone()
            .or_else(|| config.backends.get("audit").cloned());
        let metrics = Metrics::default();
        let ingest = match (audit_endpoint, deps.signer.clone()) {
            (Some(url), Some(signer)) => Some((
                channel(&url).map_err(|message| BuildError::Backend {
                    name: "audit".into(),
                    message,
                })?,
                signer,
            )),
            _ => None,
        };
        let spool_dir = config
            .refusal_spool_dir
            .as_deref()
            .ok_or(BuildError::NoSpoolDir)?;
        let spool = spool::Spool::open(spool_dir, config.refusal_spool_max_bytes)?;
        let waiting = spool.pending();
        if !waiting.is_empty() {
            tracing::info!(
                segments = waiting.len(),
                bytes = spool.bytes(),
                "refusals spooled before this start are shipped again"
            );
        }
        let (refusals, shipper) = refusals::RefusalAudit::new(
            &refusals::Settings {
                queue: config.audit_buffer,
                flood_window: config.refusal_flood_window,
                flood_sample: config.refusal_flood_sample,
                max_backoff: config.refusal_retry_max_backoff,
            },
            spool,
            ingest,
            metrics.clone(),
        );
        let identity = Arc::new(identity::Identity::new(
            deps.keys,
            accounts,
            deps.signer,
            identity::CacheConfig {
                size: config.token_cache_size,
                session_check_ttl: config.session_check_ttl,
                api_token_ttl: config.api_token_cache_ttl,
            },
        ));
        let (_, health) = tonic_health::server::health_reporter();
        let routed = routed_services(&policies, &config.backends);
        let reflection = || {
            routed.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .with_service_name("grpc.health.v1.Health"),
                |builder, name| builder.with_service_name(name.as_str()),
            )
        };
        let reflection_v1 = reflection()
            .build_v1()
            .expect("the descriptor set compiled with the crate is valid");
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .expect("the descriptor set compiled with the crate is valid");
        let local = tonic::service::Routes::new(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let shared = Arc::new(proxy::Shared {
            backends,
            policies,
            identity,
            limits: limits::Limits::new(&config.rate_limits),
            refusals,
            metrics,
            trusted_proxies: config.trusted_proxies.clone(),
            local,
        });
        for origin in &config.cors_origins {
            http::HeaderValue::from_str(origin).map_err(|_| BuildError::Origin(origin.clone()))?;
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            shared,
            shipper,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// Serves until `shutdown` turns true, then drains calls in flight and
    /// ships the refusal events it still holds.
    pub async fn run_until_stopped(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), tonic::transport::Error> {
        let (stop_tasks, tasks_stopped) = server::linked_stop(&shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        // A first JWKS before serving, so the first calls do not race it.
        if let Err(status) = self.shared.identity.refresh_jwks().await {
            tracing::warn!(code = ?status.code(), "jwks not available yet; retrying in the background");
        }
        tasks.spawn(
            self.shared
                .identity
                .clone()
                .run_jwks_refresher(self.config.jwks_refresh_interval, tasks_stopped.clone()),
        );
        tasks.spawn(
            self.shared
                .identity
                .clone()
                .follow_revocations(tasks_stopped.clone()),
        );
        tasks.spawn(self.shipper.run(tasks_stopped.clone()));
        let shared = self.shared.clone();
        let mut housekeeping_stopped = tasks_stopped.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => shared.limits.housekeep(),
                    _ = housekeeping_stopped.wait_for(|s| *s) => return,
                }
            }
        });

        let cors = cors_layer(&self.config.cors_origins);
        let stack = tower::ServiceBuilder::new()
            // 1. metrics: `GET /metrics` answered here, before gRPC-Web
            //    (which refuses plain HTTP/1 requests).
            .layer(metrics::MetricsEndpointLayer::new(
                self.shared.metrics.clone(),
            ))
            // 2. the web console: GET/HEAD answered from its directory
            //    (every gRPC and gRPC-Web call is a POST and passes).
            .option_layer(console::layer(self.config.console_dir.as_deref()))
            // 3. CORS for browser origins (preflight answered here).
            .option_layer(cors)
            // 4. gRPC-Web -> gRPC, so the proxy sees one protocol.
            .layer(tonic_web::GrpcWebLayer::new())
            .into_inner();
        let incoming =
            tonic::transport::server::TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let mut stop = shutdown.clone();
        let served = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(stack)
            .serve_with_incoming_shutdown(
                proxy::Gateway::new(self.shared.clone()),
                incoming,
                async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                },
            )
            .await;
        let _ = stop_tasks.send(true);
        while tasks.join_next().await.is_some() {}
        served
    }
}

/// The Steward services whose package a configured backend serves
/// (`steward.accounts.v1.AuthService` when `accounts` is routed): what the
/// gateway's reflection lists.
fn routed_services(policies: &PolicyTable, backends: &BTreeMap<String, String>) -> Vec<String> {
    policies
        .services()
        .into_iter()
        .filter(|service| {
            service
                .strip_prefix("steward.")
                .and_then(|rest| rest.split('.').next())
                .is_some_and(|name| backends.contains_key(name))
        })
        .collect()
}

/// CORS for gRPC-Web from the configured origins; none configured: no CORS
/// headers at all (browsers then refuse cross-origin calls).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<http::HeaderValue> = origins
        .iter()
        .filter_map(|o| http::HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([http::Method::POST, http::Method::OPTIONS])
            .allow_headers(tower_http::cors::Any)
            .expose_headers([
                http::HeaderName::from_static("grpc-status"),
                http::HeaderName::from_static("grpc-message"),
                http::HeaderName::from_static("grpc-status-details-bin"),
                http::HeaderName::from_static("x-request-id"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}
