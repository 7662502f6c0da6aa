//! steward-quotas: quota definitions, values per group, overrides per user
//! and the effective value with its source (`steward.quotas.v1`), with the
//! platform's hot-path check answered from a cache kept coherent across
//! replicas (`cache`).
//!
//! [`Application::build`] binds the listener (port 0 in tests);
//! [`Application::run_until_stopped`] serves, runs the audit outbox relay,
//! the cache listener and the housekeeping, and drains on shutdown.

pub mod cache;
pub mod definitions;
pub mod domain;
pub mod error;
pub mod groups;
pub mod grpc;
pub mod membership;
mod schema;
pub mod users;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    auth::TokenSigner,
    db::Pool,
    outbox::{self, OutboxConfig},
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use steward_proto::quotas::{
    quotas_service_server::QuotasServiceServer, quotas_sync_service_server::QuotasSyncServiceServer,
};
use tokio::{net::TcpListener, sync::watch};

pub use cache::CacheConfig;

pub const SCHEMA: &str = "quotas";
/// The `source` and `product` of quotas' audit events.
pub const SOURCE: &str = "quotas";
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// The quota accounts' automatic erasure takes its delay from.
pub const ERASURE_DELAY_KEY: &str = "account.personal.data.removal.delay";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotasConfig {
    pub listen: SocketAddr,
    /// accounts, asked for the group of a user quotas has not heard of yet.
    /// Unset in `steward up`: the accounts built alongside.
    pub accounts_endpoint: Option<String>,
    pub cache: CacheConfig,
    /// How long a request id is remembered for replay.
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50053".parse().expect("valid address"),
            accounts_endpoint: None,
            cache: CacheConfig::default(),
            idempotency_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

pub struct Deps {
    pub pool: Pool,
    pub database_url: String,
    pub security: Security,
    pub page_tokens: PageTokens,
    /// Signs the relay's and the accounts client's PLATFORM_SERVICE tokens.
    pub signer: Option<TokenSigner>,
    pub server: ServerConfig,
    pub outbox: OutboxConfig,
    pub config: QuotasConfig,
}

pub struct Application {
    listener: TcpListener,
    deps: Deps,
    cache: Arc<cache::Cache>,
    accounts: Arc<membership::accounts::Accounts>,
}

impl Application {
    pub async fn build(deps: Deps) -> std::io::Result<Self> {
        let listener = TcpListener::bind(deps.config.listen).await?;
        let cache = cache::Cache::new(deps.pool.clone(), deps.config.cache.clone());
        let accounts = Arc::new(membership::accounts::Accounts::new(
            deps.config.accounts_endpoint.as_deref(),
            deps.signer.clone(),
        ));
        Ok(Self {
            listener,
            deps,
            cache,
            accounts,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where accounts is, when it is known only after quotas was built.
    pub fn set_accounts_endpoint(&self, endpoint: &str) {
        self.accounts.set_endpoint(endpoint);
    }

    pub async fn run_until_stopped(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), tonic::transport::Error> {
        let (stop_tasks, tasks_stopped) = server::linked_stop(&shutdown);
        let d = &self.deps;
        let mut tasks = tokio::task::JoinSet::new();
        for relay in outbox::relays(
            &d.pool,
            &d.database_url,
            SCHEMA,
            d.signer.as_ref(),
            &d.outbox,
        ) {
            tasks.spawn(relay.run(tasks_stopped.clone()));
        }
        tasks.spawn(steward_kit::metrics::export_pool_until(
            SCHEMA,
            d.pool.clone(),
            tasks_stopped.clone(),
        ));
        tasks.spawn(cache::listener::run(
            self.cache.clone(),
            d.database_url.clone(),
            SCHEMA,
            tasks_stopped.clone(),
        ));
        tasks.spawn(cache::warm::run(self.cache.clone(), tasks_stopped.clone()));
        tasks.spawn(steward_kit::idempotency::run_purger(
            d.pool.clone(),
            d.config.idempotency_retention,
            tasks_stopped.clone(),
        ));
        tasks.spawn(trim_events(d.pool.clone(), tasks_stopped.clone()));
        let resolver = users::resolver::Resolver::new(
            d.pool.clone(),
            self.cache.clone(),
            self.accounts.clone(),
        );
        let api = grpc::QuotasApi::new(d.pool.clone(), resolver.clone(), d.page_tokens.clone());
        let sync = grpc::SyncApi::new(d.pool.clone(), resolver);
        let routes = tonic::service::Routes::new(QuotasServiceServer::new(api))
            .add_service(QuotasSyncServiceServer::new(sync));
        let mut stop = shutdown.clone();
        let served = server::serve(
            server::Serve {
                listener: self.listener,
                routes,
                service_names: vec![
                    "steward.quotas.v1.QuotasService",
                    "steward.quotas.v1.QuotasSyncService",
                ],
            },
            self.deps.security,
            &self.deps.server,
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

/// Forgets applied event ids after 30 days, hourly.
async fn trim_events(pool: Pool, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Ok(mut conn) = pool.get().await
            && let Err(error) = membership::store::trim_events(&mut conn, 30).await
        {
            tracing::warn!(%error, "trimming applied membership events failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {},
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}
