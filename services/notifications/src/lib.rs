//! steward-notifications: templated mail, delivered over SMTP, with a
//! status per recipient, retries and suppression
//! (`steward.notifications.v1`).
//!
//! * `mails/`: ingest (a request per event id, validated whole, one mail
//!   per recipient rendered at once), the admin view and resending.
//! * `templates/`: named, versioned, per-locale templates; the seeded set.
//! * `delivery/`: the dispatcher (bounded sends in flight, per-message
//!   timeout, backoff), the transports (pooled SMTP, one connection per
//!   mail, `.eml` files).
//! * `suppressions/`: addresses that hard-bounced.
//!
//! Every send and final failure is audited through this service's own
//! outbox (audit destination), in the transaction that records it.

pub mod delivery;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod mails;
pub mod suppressions;
pub mod templates;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    auth::TokenSigner,
    db::Pool,
    outbox::{self, OutboxConfig},
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use tokio::{net::TcpListener, sync::watch};

pub use delivery::transport::{SmtpConfig, TlsMode};

pub const SCHEMA: &str = "notifications";
/// The `source` and `product` of notifications' audit events.
pub const SOURCE: &str = "notifications";
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// `[notifications]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationsConfig {
    pub listen: SocketAddr,
    /// `[notifications.smtp]`; without `host`, mail goes to `mail_dir`.
    pub smtp: SmtpConfig,
    /// Where `.eml` files are written when no SMTP server is configured.
    /// Unset: `<data dir>/mail` (set by the suite).
    pub mail_dir: Option<PathBuf>,
    /// The dashboard link templates show (`dashboard_url`).
    pub dashboard_url: String,
    /// `product_name` in templates.
    pub product_name: String,
    pub delivery: DeliveryConfig,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50055".parse().expect("valid address"),
            smtp: SmtpConfig::default(),
            mail_dir: None,
            dashboard_url: "http://127.0.0.1:50050/".into(),
            product_name: "Steward".into(),
            delivery: DeliveryConfig::default(),
        }
    }
}

impl NotificationsConfig {
    /// Where mail goes, in words (start-up messages).
    pub fn describe_transport(&self) -> String {
        match (&self.smtp.host, &self.mail_dir) {
            (Some(host), _) => format!("smtp://{host}:{} ({:?})", self.smtp.port, self.smtp.tls),
            (None, Some(dir)) => format!(".eml files in {}", dir.display()),
            (None, None) => ".eml files in ./mail".into(),
        }
    }
}

/// `[notifications.delivery]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Sends in flight at once.
    pub max_in_flight: usize,
    /// One attempt's limit, connection included.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Attempts in all before a transient failure becomes FAILED.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How often due mail is looked for besides being woken by ingest.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A mail SENDING for longer (a crash mid-send) is deferred again.
    #[serde(with = "humantime_serde")]
    pub sending_lease: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            message_timeout: Duration::from_secs(30),
            max_attempts: 8,
            min_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
            sending_lease: Duration::from_secs(600),
        }
    }
}

impl DeliveryConfig {
    pub fn retry(&self) -> domain::retry::RetryPolicy {
        domain::retry::RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff.max(self.min_backoff),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("seeding templates: {0}")]
    Seed(#[from] error::Error),
}

pub struct Deps {
    pub pool: Pool,
    pub database_url: String,
    pub security: Security,
    pub page_tokens: PageTokens,
    pub signer: Option<TokenSigner>,
    pub server: ServerConfig,
    /// Only `audit_endpoint` is used: this service's outbox holds audit
    /// records.
    pub outbox: OutboxConfig,
    pub config: NotificationsConfig,
}

pub struct Application {
    listener: TcpListener,
    mailer: Arc<delivery::transport::Mailer>,
    deps: Deps,
}

impl Application {
    /// Binds, builds the transport from the configuration (refusing a bad
    /// one) and seeds the built-in templates not yet present.
    pub async fn build(deps: Deps) -> Result<Self, BuildError> {
        let mailer =
            delivery::transport::Mailer::from_config(&deps.config).map_err(BuildError::Config)?;
        templates::seed::install(&deps.pool).await?;
        let addr = deps.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        Ok(Self {
            listener,
            mailer: Arc::new(mailer),
            deps,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The transport's name ("smtp" or "file").
    pub fn transport(&self) -> &'static str {
        self.mailer.name()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), tonic::transport::Error> {
        let (stop_tasks, tasks_stopped) = server::linked_stop(&shutdown);
        let d = &self.deps;
        let mut tasks = tokio::task::JoinSet::new();
        let own_outbox = OutboxConfig {
            notifications_endpoint: None,
            ..d.outbox.clone()
        };
        for relay in outbox::relays(
            &d.pool,
            &d.database_url,
            SCHEMA,
            d.signer.as_ref(),
            &own_outbox,
        ) {
            tasks.spawn(relay.run(tasks_stopped.clone()));
        }
        tasks.spawn(steward_kit::metrics::export_pool_until(
            SCHEMA,
            d.pool.clone(),
            tasks_stopped.clone(),
        ));
        let wake = Arc::new(tokio::sync::Notify::new());
        let dispatcher = delivery::Dispatcher::new(
            d.pool.clone(),
            self.mailer.clone(),
            d.config.clone(),
            wake.clone(),
        );
        tasks.spawn(dispatcher.run(tasks_stopped.clone()));
        let routes = grpc::routes(
            d.pool.clone(),
            d.page_tokens.clone(),
            d.config.clone(),
            wake,
        );
        let mut stop = shutdown.clone();
        let served = server::serve(
            server::Serve {
                listener: self.listener,
                routes,
                service_names: vec![
                    "steward.notifications.v1.NotificationIngestService",
                    "steward.notifications.v1.NotificationsService",
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
