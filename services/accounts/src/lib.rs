//! steward-accounts: users, groups, lifecycle, personal-data erasure and
//! collaboration (`steward.accounts.v1.AccountsService`).
//!
//! [`Application::build`] binds the listener (port 0 in tests);
//! [`Application::run_until_stopped`] serves, runs the outbox relays and the
//! erasure job, and drains on shutdown.

pub mod commands;
pub mod domain;
pub mod erasure_job;
pub mod error;
pub mod grpc;
pub mod store;

use std::{net::SocketAddr, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    auth::TokenSigner,
    db::Pool,
    outbox::{self, OutboxConfig},
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use steward_proto::accounts::accounts_service_server::AccountsServiceServer;
use tokio::{net::TcpListener, sync::watch};

/// The database schema accounts owns.
pub const SCHEMA: &str = "accounts";
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountsConfig {
    pub listen: SocketAddr,
    /// How often the automatic-erasure job looks for due accounts.
    #[serde(with = "humantime_serde")]
    pub erasure_interval: Duration,
    /// How long a request id is remembered for replay.
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            erasure_interval: Duration::from_secs(60),
            idempotency_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What the accounts server is built from.
pub struct Deps {
    pub pool: Pool,
    pub database_url: String,
    pub security: Security,
    pub page_tokens: PageTokens,
    /// Signs the relays' PLATFORM_SERVICE tokens; without it rows wait.
    pub signer: Option<TokenSigner>,
    pub server: ServerConfig,
    pub outbox: OutboxConfig,
    pub config: AccountsConfig,
}

pub struct Application {
    listener: TcpListener,
    deps: Deps,
}

impl Application {
    pub async fn build(deps: Deps) -> std::io::Result<Self> {
        let listener = TcpListener::bind(deps.config.listen).await?;
        Ok(Self { listener, deps })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` turns true; then drains calls in flight and
    /// lets the relays and the erasure job finish their current batch.
    pub async fn run_until_stopped(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), tonic::transport::Error> {
        let (stop_tasks, tasks_stopped) = server::linked_stop(&shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        let d = &self.deps;
        for relay in outbox::relays(
            &d.pool,
            &d.database_url,
            SCHEMA,
            d.signer.as_ref(),
            &d.outbox,
        ) {
            tasks.spawn(relay.run(tasks_stopped.clone()));
        }
        tasks.spawn(steward_kit::idempotency::run_purger(
            self.deps.pool.clone(),
            self.deps.config.idempotency_retention,
            tasks_stopped.clone(),
        ));
        tasks.spawn(erasure_job::run(
            self.deps.pool.clone(),
            self.deps.config.erasure_interval,
            tasks_stopped,
        ));
        let api = grpc::AccountsApi::new(self.deps.pool.clone(), self.deps.page_tokens.clone());
        let routes = tonic::service::Routes::new(AccountsServiceServer::new(api));
        let mut stop = shutdown.clone();
        let served = server::serve(
            server::Serve {
                listener: self.listener,
                routes,
                service_names: vec!["steward.accounts.v1.AccountsService"],
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
