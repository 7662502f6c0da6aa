//! steward-audit: the system of record of who did what, to whom, on whose
//! behalf, from where, with what result.
//!
//! Ingest (`AuditIngestService`) goes through a group-commit writer that
//! appends to a SHA-256 hash chain in one transaction per group; queries,
//! activity history, export, the action catalog, verification, erasure and
//! retention are `AuditService`.

pub mod catalog;
pub mod chain;
pub mod domain;
pub mod erasure;
pub mod error;
pub mod events;
pub mod export;
pub mod grpc;
pub mod ingest;
pub mod retention;
pub mod state;
pub mod store;
pub mod writer;

use std::{net::SocketAddr, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    db::Pool,
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use tokio::{net::TcpListener, sync::watch};

pub const SCHEMA: &str = "audit";
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    pub listen: SocketAddr,
    /// Events written per group-commit transaction, at most.
    pub max_group_events: usize,
    /// How often retention and partition upkeep run.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50054".parse().expect("valid address"),
            max_group_events: 20_000,
            retention_interval: Duration::from_secs(3600),
        }
    }
}

pub struct Deps {
    pub pool: Pool,
    pub security: Security,
    pub page_tokens: PageTokens,
    pub server: ServerConfig,
    pub config: AuditConfig,
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

    pub async fn run_until_stopped(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), tonic::transport::Error> {
        let known = writer::KnownPartitions::default();
        let (writer, writer_task) = writer::Writer::start(
            self.deps.pool.clone(),
            known.clone(),
            self.deps.config.max_group_events,
        );
        let shared = state::State::new(
            self.deps.pool.clone(),
            writer,
            known.clone(),
            self.deps.page_tokens.clone(),
        );
        let (stop_tasks, tasks_stopped) = server::linked_stop(&shutdown);
        let housekeeping = tokio::spawn(retention::job::run(
            self.deps.pool.clone(),
            known,
            self.deps.config.retention_interval,
            tasks_stopped,
        ));
        let routes = grpc::routes(shared);
        let mut stop = shutdown.clone();
        let served = server::serve(
            server::Serve {
                listener: self.listener,
                routes,
                service_names: vec![
                    "steward.audit.v1.AuditIngestService",
                    "steward.audit.v1.AuditService",
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
        // The server's handlers held the last writers: the writer ends after
        // committing what was queued.
        let _ = writer_task.await;
        let _ = housekeeping.await;
        served
    }
}
