//! The transactional outbox.
//!
//! [`enqueue`] writes a message inside the caller's transaction, so the
//! message exists if and only if the state change committed. A [`Relay`]
//! per destination ships committed rows in batches and deletes them once the
//! destination acknowledged them. Delivery is at-least-once; receivers
//! deduplicate by event id.

pub mod admin;
mod audit;
pub mod contract;
mod destinations;
mod relay;

pub use audit::{AuditRecord, record_refusal};
pub use destinations::{
    AuditIngestDestination, DeliveryError, Destination, ErasureDestination,
    NotificationDestination, QuotasSyncDestination,
};
pub use relay::{Relay, RelayConfig};

use crate::db::Prepare;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use uuid::Uuid;

use crate::schema::outbox::dsl as o;

/// Where a service's outbox rows go. A destination without an endpoint
/// keeps its rows waiting (nothing is lost) until one is configured.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// The audit service, e.g. `http://127.0.0.1:50054`.
    pub audit_endpoint: Option<String>,
    /// The notifications service, e.g. `http://127.0.0.1:50055`.
    pub notifications_endpoint: Option<String>,
    /// The quotas service (group-membership sync), e.g. `http://127.0.0.1:50053`.
    pub quotas_endpoint: Option<String>,
    /// Services told of each personal-data erasure (their
    /// `PersonalDataService`), e.g. billing's address.
    pub erasure_endpoints: Vec<String>,
    pub relay: RelayConfig,
}

/// Destination names (the `destination` column).
pub const AUDIT: &str = "audit";
pub const NOTIFICATIONS: &str = "notifications";
pub const QUOTAS: &str = "quotas";
/// Personal-data erasures, fanned out to `erasure_endpoints`.
pub const ERASURE: &str = "erasure";

/// The channel relays LISTEN on.
pub const NOTIFY_CHANNEL: &str = "steward_outbox";

/// Writes one message for `destination`; call inside the transaction of the
/// change it describes.
pub async fn enqueue<M: Message>(
    mut conn: &AsyncPgConnection,
    destination: &str,
    event_id: Uuid,
    message: &M,
) -> QueryResult<()> {
    let mut notify_conn = conn;
    let insert = diesel::insert_into(o::outbox)
        .values((
            o::destination.eq(destination),
            o::event_id.eq(event_id),
            o::payload.eq(message.encode_to_vec()),
            o::traceparent.eq(crate::telemetry::current_traceparent()),
        ))
        .execute(&mut conn);
    // Delivered at commit (and dropped on rollback) by PostgreSQL itself.
    // Sent with the insert, in one round trip (executed in order).
    let notify = notify(&mut notify_conn, destination);
    futures_util::try_join!(insert, notify)?;
    Ok(())
}

/// Wakes `destination`'s relays once the transaction commits.
async fn notify(conn: &mut &AsyncPgConnection, destination: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(NOTIFY_CHANNEL)
        .bind::<diesel::sql_types::Text, _>(destination)
        .prepared()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Rows waiting for `destination`, parked ones included (tests).
pub async fn pending(conn: &mut AsyncPgConnection, destination: &str) -> QueryResult<i64> {
    o::outbox
        .filter(o::destination.eq(destination))
        .count()
        .get_result(conn)
        .await
}

/// The relays a service runs for its configured destinations. Without a
/// signer (no credentials) or an endpoint, the rows of that destination wait.
pub fn relays(
    pool: &crate::db::Pool,
    database_url: &str,
    schema: &str,
    signer: Option<&crate::auth::TokenSigner>,
    config: &OutboxConfig,
) -> Vec<Relay> {
    let Some(signer) = signer else {
        return Vec::new();
    };
    let mut relays = Vec::new();
    let mut add =
        |name: &str, destination: Result<std::sync::Arc<dyn Destination>, DeliveryError>| {
            match destination {
                Ok(destination) => relays.push(Relay::new(
                    pool.clone(),
                    database_url,
                    schema,
                    name,
                    destination,
                    config.relay.clone(),
                )),
                Err(error) => {
                    tracing::error!(%error, destination = name, "outbox destination misconfigured; rows will wait")
                }
            }
        };
    if let Some(endpoint) = &config.audit_endpoint {
        add(
            AUDIT,
            AuditIngestDestination::new(endpoint, signer.clone(), schema)
                .map(|d| std::sync::Arc::new(d) as _),
        );
    }
    if let Some(endpoint) = &config.notifications_endpoint {
        add(
            NOTIFICATIONS,
            NotificationDestination::new(endpoint, signer.clone(), schema)
                .map(|d| std::sync::Arc::new(d) as _),
        );
    }
    if let Some(endpoint) = &config.quotas_endpoint {
        add(
            QUOTAS,
            QuotasSyncDestination::new(endpoint, signer.clone(), schema)
                .map(|d| std::sync::Arc::new(d) as _),
        );
    }
    if !config.erasure_endpoints.is_empty() {
        add(
            ERASURE,
            ErasureDestination::new(&config.erasure_endpoints, signer.clone(), schema)
                .map(|d| std::sync::Arc::new(d) as _),
        );
    }
    relays
}
