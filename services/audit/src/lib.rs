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

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    db::Pool,
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use tokio::{net::TcpListener, sync::watch};

use crate::domain::seal::{ChainKeys, ChainSigner, KeyError};

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
    /// File holding the base64 Ed25519 seed of the chain key, which signs
    /// the chain head, tombstones, erasures and checkpoints. Keep it out of
    /// the database and its backups. Unset: a key for this process only
    /// (warned; its signatures stop verifying after a restart). `steward
    /// up`/`serve` default to the data dir's `audit-chain-key`.
    pub chain_key_file: Option<PathBuf>,
    /// Base64 Ed25519 public keys of retired chain keys, still accepted.
    pub chain_public_keys: Vec<String>,
    /// Directory checkpoints are exported to (one JSON file each), besides
    /// the log. Keep it on other storage than the database.
    pub checkpoint_dir: Option<PathBuf>,
    /// How often a checkpoint is issued (when the head moved).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50054".parse().expect("valid address"),
            max_group_events: 20_000,
            retention_interval: Duration::from_secs(3600),
            chain_key_file: None,
            chain_public_keys: Vec::new(),
            checkpoint_dir: None,
            checkpoint_interval: Duration::from_secs(600),
        }
    }
}

pub struct Deps {
    pub pool: Pool,
    /// The pool's database: the ingest writer opens its COPY connection
    /// there.
    pub database_url: String,
    pub security: Security,
    pub page_tokens: PageTokens,
    pub server: ServerConfig,
    pub config: AuditConfig,
}

pub struct Application {
    listener: TcpListener,
    deps: Deps,
    signer: ChainSigner,
    keys: ChainKeys,
}

impl AuditConfig {
    /// The chain key and the public keys accepted; errors name the key.
    pub fn chain_keys(&self) -> std::io::Result<(ChainSigner, ChainKeys)> {
        let bad = |key: &str, e: KeyError| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{key}: {e}"))
        };
        let signer = match &self.chain_key_file {
            Some(file) => {
                ChainSigner::from_file(file).map_err(|e| bad("audit.chain_key_file", e))?
            }
            None => {
                tracing::warn!(
                    "audit.chain_key_file is not set: the chain is signed with a key made for \
                     this process, which will not verify after a restart"
                );
                ChainSigner::generate()
            }
        };
        let mut keys = ChainKeys::of(&signer);
        for key in &self.chain_public_keys {
            keys.add_base64(key)
                .map_err(|e| bad("audit.chain_public_keys", e))?;
        }
        Ok((signer, keys))
    }
}

impl Application {
    pub async fn build(deps: Deps) -> std::io::Result<Self> {
        let (signer, keys) = deps.config.chain_keys()?;
        let listener = TcpListener::bind(deps.config.listen).await?;
        Ok(Self {
            listener,
            deps,
            signer,
            keys,
        })
    }

    /// The public key of the chain key (what verifiers are given).
    pub fn chain_public_key(&self) -> String {
        domain::seal::public_key_base64(&self.signer.verifying_key())
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
        let committed = Arc::new(tokio::sync::Notify::new());
        let (writer, writer_task) = writer::Writer::start(
            self.deps.pool.clone(),
            &self.deps.database_url,
            known.clone(),
            self.signer.clone(),
            self.deps.config.max_group_events,
            committed.clone(),
        )
        .expect("start the audit writer thread");
        let shared = state::State::new(
            self.deps.pool.clone(),
            writer,
            known.clone(),
            self.deps.page_tokens.clone(),
            self.signer.clone(),
            self.keys.clone(),
            self.deps.config.checkpoint_dir.clone(),
        );
        let (stop_tasks, tasks_stopped) = server::linked_stop(&shutdown);
        let checkpoints = tokio::spawn(chain::checkpoint::run(
            shared.clone(),
            self.deps.config.checkpoint_interval,
            tasks_stopped.clone(),
        ));
        let rollup = tokio::spawn(store::rollup::run(
            self.deps.pool.clone(),
            committed,
            tasks_stopped.clone(),
        ));
        let pool_metrics = tokio::spawn(steward_kit::metrics::export_pool_until(
            SCHEMA,
            self.deps.pool.clone(),
            tasks_stopped.clone(),
        ));
        let housekeeping = tokio::spawn(retention::job::run(
            self.deps.pool.clone(),
            known,
            self.signer.clone(),
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
        let _ = checkpoints.await;
        let _ = pool_metrics.await;
        let _ = rollup.await;
        served
    }
}
