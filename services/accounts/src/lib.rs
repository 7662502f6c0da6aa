//! steward-accounts: users, groups, lifecycle, personal-data erasure and
//! collaboration (`steward.accounts.v1.AccountsService`).
//!
//! [`Application::build`] binds the listener (port 0 in tests);
//! [`Application::run_until_stopped`] serves, runs the outbox relays and the
//! erasure job, and drains on shutdown.

pub mod collaboration;
pub mod domain;
pub mod erasure;
pub mod error;
pub mod groups;
pub mod grpc;
pub mod identity;
mod notify;
pub mod quotas;
pub mod schema;
pub mod settings;
pub mod users;

pub use users::commands::create_admin;

use std::{net::SocketAddr, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    Commands,
    auth::{KeySet, TokenSigner},
    db::Pool,
    outbox::{self, OutboxConfig},
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use tokio::{net::TcpListener, sync::watch};

/// The `source` and `product` of accounts' audit events and notifications.
pub const SOURCE: &str = "accounts";

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
    pub identity: IdentityConfig,
}

/// Sign-in, session and token rules (`accounts.identity.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityConfig {
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Failed sign-ins within `lockout_window` that lock the account.
    pub lockout_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub lockout_window: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub impersonation_default_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub impersonation_max_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub api_token_default_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub api_token_max_ttl: Duration,
    /// Shown by authenticator apps next to the account.
    pub totp_issuer: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const DAY: u64 = 24 * 3600;
        Self {
            access_token_ttl: Duration::from_secs(15 * MINUTE),
            refresh_token_ttl: Duration::from_secs(30 * DAY),
            lockout_threshold: 5,
            lockout_window: Duration::from_secs(15 * MINUTE),
            lockout_duration: Duration::from_secs(15 * MINUTE),
            impersonation_default_ttl: Duration::from_secs(30 * MINUTE),
            impersonation_max_ttl: Duration::from_secs(8 * 3600),
            api_token_default_ttl: Duration::from_secs(90 * DAY),
            api_token_max_ttl: Duration::from_secs(366 * DAY),
            totp_issuer: "Steward".into(),
        }
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            erasure_interval: Duration::from_secs(60),
            idempotency_retention: Duration::from_secs(7 * 24 * 3600),
            identity: IdentityConfig::default(),
        }
    }
}

/// What the accounts server is built from.
pub struct Deps {
    pub pool: Pool,
    pub database_url: String,
    pub security: Security,
    pub page_tokens: PageTokens,
    /// Signs access tokens and the relays' PLATFORM_SERVICE tokens.
    pub signer: TokenSigner,
    /// Retired public keys still published in the JWKS (rotation overlap).
    pub retired_keys: KeySet,
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
        for relay in outbox::relays(&d.pool, &d.database_url, SCHEMA, Some(&d.signer), &d.outbox) {
            tasks.spawn(relay.run(tasks_stopped.clone()));
        }
        tasks.spawn(steward_kit::idempotency::run_purger(
            self.deps.pool.clone(),
            self.deps.config.idempotency_retention,
            tasks_stopped.clone(),
        ));
        let commands = Commands::new(self.deps.pool.clone(), error::CONSTRAINTS);
        // Streams end when the server stops (not after), so that graceful
        // shutdown does not wait on subscribers.
        let revocations = identity::revocations::hub::Hub::new(
            commands.clone(),
            &self.deps.database_url,
            shutdown.clone(),
        );
        tasks.spawn(revocations.clone().run());
        tasks.spawn(erasure::job::run(
            commands.clone(),
            quotas::Delays::new(
                self.deps.outbox.quotas_endpoint.as_deref(),
                self.deps.signer.clone(),
            ),
            self.deps.config.erasure_interval,
            tasks_stopped,
        ));
        let routes = grpc::routes(
            commands,
            identity::Issuer {
                signer: self.deps.signer.clone(),
                config: self.deps.config.identity.clone(),
            },
            self.deps.retired_keys.clone(),
            self.deps.page_tokens.clone(),
            revocations,
        );
        let mut stop = shutdown.clone();
        let served = server::serve(
            server::Serve {
                listener: self.listener,
                routes,
                service_names: vec![
                    "steward.accounts.v1.AccountsService",
                    "steward.accounts.v1.AuthService",
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
