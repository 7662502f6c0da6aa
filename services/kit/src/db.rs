//! The database: a bb8 pool of diesel-async connections pinned to one schema
//! per service, and embedded migrations run through `AsyncConnectionWrapper`.

use std::time::Duration;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, SimpleAsyncConnection,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, bb8},
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

pub type Pool = bb8::Pool<AsyncPgConnection>;
pub type PooledConnection<'a> = bb8::PooledConnection<'a, AsyncPgConnection>;

/// Tables every service has (outbox, idempotency keys), created in the
/// service's own schema before the service's migrations.
pub const KIT_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database connection failed: {0}")]
    Connect(#[from] ConnectionError),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("migrations for schema {schema} failed: {message}")]
    Migration { schema: String, message: String },
}

/// Schemas are identifiers we choose, never user input; keep them plain.
fn check_schema(schema: &str) {
    assert!(
        !schema.is_empty()
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
        "schema names are lowercase identifiers"
    );
}

/// Opens one connection with `search_path` set to the service schema.
pub async fn connect(url: &str, schema: &str) -> ConnectionResult<AsyncPgConnection> {
    check_schema(schema);
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&format!("SET search_path TO {schema}, public"))
        .await
        .map_err(|e| ConnectionError::BadConnection(format!("set search_path: {e}")))?;
    Ok(conn)
}

/// A pool whose every connection works in `schema`.
pub async fn pool(url: &str, schema: &str, config: &PoolConfig) -> Result<Pool, DbError> {
    check_schema(schema);
    let schema = schema.to_owned();
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup = Box::new(move |url| {
        let schema = schema.clone();
        let url = url.to_owned();
        async move { connect(&url, &schema).await }.boxed()
    });
    let manager = AsyncDieselConnectionManager::new_with_config(url, manager_config);
    bb8::Pool::builder()
        .max_size(config.max_connections)
        .connection_timeout(config.connect_timeout)
        .build(manager)
        .await
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Creates `schema` if needed and applies kit's and the service's pending
/// migrations in it, under an advisory lock so that replicas starting
/// together migrate once.
pub async fn migrate(
    url: &str,
    schema: &str,
    service_migrations: EmbeddedMigrations,
) -> Result<(), DbError> {
    check_schema(schema);
    let url = url.to_owned();
    let schema = schema.to_owned();
    tokio::task::spawn_blocking(move || {
        let fail = |message: String| DbError::Migration {
            schema: schema.clone(),
            message,
        };
        let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
            diesel::Connection::establish(&url)?;
        use diesel::connection::SimpleConnection;
        SimpleConnection::batch_execute(
            &mut conn,
            &format!(
                "SELECT pg_advisory_lock(hashtext('steward-migrate-{schema}'));
             CREATE SCHEMA IF NOT EXISTS {schema};
             SET search_path TO {schema}, public;"
            ),
        )
        .map_err(|e| fail(e.to_string()))?;
        let result = conn
            .run_pending_migrations(KIT_MIGRATIONS)
            .map(|_| ())
            .and_then(|()| conn.run_pending_migrations(service_migrations).map(|_| ()))
            .map_err(|e| fail(e.to_string()));
        SimpleConnection::batch_execute(
            &mut conn,
            &format!("SELECT pg_advisory_unlock(hashtext('steward-migrate-{schema}'))"),
        )
        .map_err(|e| fail(e.to_string()))?;
        result
    })
    .await
    .map_err(|e| DbError::Pool(format!("migration task: {e}")))?
}
