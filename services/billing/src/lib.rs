//! steward-billing: balances and their ledger, usage charging, billing
//! history (`steward.billing.v1.BillingService`).
//!
//! Every balance change is a single guarded SQL statement that updates the
//! balance and writes its ledger entry together; a retried command with the
//! same request id replays its first result.

pub mod domain;
pub mod error;
pub mod grpc;
pub mod ledger;
pub mod subscriptions;
pub mod usage;

use std::net::SocketAddr;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use steward_kit::{
    auth::TokenSigner,
    db::Pool,
    outbox::{self, OutboxConfig},
    page::PageTokens,
    server::{self, Security, ServerConfig},
};
use steward_proto::{
    billing::billing_service_server::BillingServiceServer,
    common::personal_data_service_server::PersonalDataServiceServer,
};
use tokio::{net::TcpListener, sync::watch};

pub use domain::tariff::{ExtraBonusRule, Prices, Tariffs};

pub const SCHEMA: &str = "billing";
/// The `source` and `product` of billing's audit events.
pub const SOURCE: &str = "billing";
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BillingConfig {
    pub listen: SocketAddr,
    /// ISO 4217 code of the platform's one currency.
    pub currency: String,
    pub tariffs: Tariffs,
    /// Bonus percentages for main refills above thresholds.
    pub extra_bonus: Vec<ExtraBonusRule>,
    /// How often subscriptions due for renewal are looked for.
    #[serde(with = "humantime_serde")]
    pub renewal_interval: std::time::Duration,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50052".parse().expect("valid address"),
            currency: "USD".into(),
            tariffs: Tariffs::default(),
            extra_bonus: Vec::new(),
            renewal_interval: std::time::Duration::from_secs(60),
        }
    }
}

pub struct Deps {
    pub pool: Pool,
    pub database_url: String,
    pub security: Security,
    pub page_tokens: PageTokens,
    pub signer: Option<TokenSigner>,
    pub server: ServerConfig,
    pub outbox: OutboxConfig,
    pub config: BillingConfig,
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
        tasks.spawn(subscriptions::renewal::run(
            d.pool.clone(),
            d.config.renewal_interval,
            tasks_stopped.clone(),
        ));
        let api = grpc::BillingApi::new(d.pool.clone(), d.page_tokens.clone(), d.config.clone());
        let routes = tonic::service::Routes::new(BillingServiceServer::new(api.clone()))
            .add_service(PersonalDataServiceServer::new(api));
        let mut stop = shutdown.clone();
        let served = server::serve(
            server::Serve {
                listener: self.listener,
                routes,
                service_names: vec![
                    "steward.billing.v1.BillingService",
                    "steward.common.v1.PersonalDataService",
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
