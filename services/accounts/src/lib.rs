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
pub(crate) mod notify;
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
    /// The key-encryption key of TOTP secrets at rest (base64 of 32 bytes;
    /// see `identity::totp_keys`). `steward up` creates one in the data
    /// dir. Unset: a key derived from the signing key (rotating that key
    /// then needs this set to the derived key's file first; a warning
    /// says so).
    pub totp_key_file: Option<std::path::PathBuf>,
    /// Retired keys that still open secrets sealed before a rotation, until
    /// a start-up has sealed them all again under `totp_key_file`.
    pub totp_retired_key_files: Vec<std::path::PathBuf>,
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
            totp_key_file: None,
            totp_retired_key_files: Vec::new(),
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
    totp_keys: identity::totp_keys::TotpKeys,
}

impl Application {
    pub async fn build(deps: Deps) -> std::io::Result<Self> {
        let totp_keys = totp_keys(&deps.config.identity, &deps.signer)?;
        let listener = TcpListener::bind(deps.config.listen).await?;
        Ok(Self {
            listener,
            deps,
            totp_keys,
        })
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
        tasks.spawn(steward_kit::metrics::export_pool_until(
            SCHEMA,
            d.pool.clone(),
            tasks_stopped.clone(),
        ));
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
        let (resealing, keys) = (commands.clone(), self.totp_keys.clone());
        tasks.spawn(async move {
            match identity::two_factor::reseal_all(&resealing, &keys).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, key = keys.current_id(), "TOTP secrets sealed under the current key"),
                Err(error) => tracing::warn!(%error, "cannot seal TOTP secrets again; retried at the next start"),
            }
        });
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
                totp_keys: self.totp_keys.clone(),
            },
            self.deps.retired_keys.clone(),
            self.deps.page_tokens.clone(),
            revocations,
            notify::Templates::new(
                self.deps.outbox.notifications_endpoint.as_deref(),
                self.deps.signer.clone(),
            ),
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

/// `accounts.identity.totp_key_file` (+ retired files), else a key derived
/// from the signing key.
fn totp_keys(
    config: &IdentityConfig,
    signer: &TokenSigner,
) -> std::io::Result<identity::totp_keys::TotpKeys> {
    use identity::totp_keys::TotpKeys;
    match &config.totp_key_file {
        Some(file) => TotpKeys::from_files(file, &config.totp_retired_key_files)
            .map_err(std::io::Error::other),
        None => {
            tracing::warn!(
                "accounts.identity.totp_key_file unset: TOTP secrets are sealed with a key derived from the signing key"
            );
            let retired = config
                .totp_retired_key_files
                .iter()
                .map(|p| identity::totp_keys::read_key_file(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)?;
            Ok(TotpKeys::new(signer.derived_secret("totp-kek"), retired))
        }
    }
}
