//! The whole configuration of a steward process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use steward_accounts::AccountsConfig;
use steward_audit::AuditConfig;
use steward_billing::BillingConfig;
use steward_gateway::GatewayConfig;
use steward_kit::{
    db::PoolConfig, outbox::OutboxConfig, server::ServerConfig, telemetry::LogFormat,
};
pub use steward_notifications::{DeliveryConfig, NotificationsConfig, SmtpConfig, TlsMode};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// File holding the base64 Ed25519 seed that signs tokens. Unset: a dev
    /// key is created in the data dir.
    pub signing_key_file: Option<PathBuf>,
    /// Extra base64 Ed25519 public keys accepted (rotation, other issuers).
    pub public_keys: Vec<String>,
    /// Accounts' address, for components of a process that does not run
    /// accounts itself: they follow its revocation list
    /// (`AuthService/WatchRevocations`). Unset: the accounts of this
    /// process; a process with neither checks no revocations (warned).
    pub accounts_endpoint: Option<String>,
}

/// `[metrics]`: the admin address serving Prometheus `GET /metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Unset: no metrics endpoint (the gateway also serves its own on its
    /// port).
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `STEWARD_DATABASE_URL`. Unset: localhost:5432, else a private
    /// cluster in the data dir.
    pub database_url: Option<String>,
    /// `STEWARD_DATA_DIR` (or `--data-dir`); default `.steward`.
    pub data_dir: Option<PathBuf>,
    /// `STEWARD_OTLP_ENDPOINT`: export spans over OTLP/gRPC.
    pub otlp_endpoint: Option<String>,
    /// `STEWARD_LOG_FORMAT`: `json` or `pretty`.
    pub log_format: LogFormat,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub pool: PoolConfig,
    pub outbox: OutboxConfig,
    pub accounts: AccountsConfig,
    pub audit: AuditConfig,
    pub billing: BillingConfig,
    pub quotas: steward_quotas::QuotasConfig,
    pub notifications: NotificationsConfig,
    pub gateway: GatewayConfig,
    pub metrics: MetricsConfig,
}

impl Config {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Ok(steward_kit::config::load(file)?)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".steward"))
    }
}
