//! The database: a bb8 pool of diesel-async connections pinned to one schema
//! per service, and embedded migrations run through `AsyncConnectionWrapper`.

use std::time::Duration;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, SimpleAsyncConnection,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod, bb8,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

pub type Pool = bb8::Pool<AsyncPgConnection>;
pub type PooledConnection<'a> = bb8::PooledConnection<'a, AsyncPgConnection>;
/// What getting a connection can fail with.
pub type RunError = bb8::RunError;

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
    // Statements are prepared once per connection (diesel's DSL and
    // `Prepare`) but planned for the values of each execution: a generic
    // plan fixed while a table was small (a join on a hash of the whole
    // table, say) would otherwise stay as it grows.
    conn.batch_execute(&format!(
        "SET search_path TO {schema}, public; SET plan_cache_mode TO force_custom_plan"
    ))
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
    // A checkout is checked locally (the connection's socket task still
    // runs, no transaction left open) instead of with a `SELECT 1` round
    // trip: that ping was one of every call's few round trips. A server
    // restart closes the sockets, which ends those tasks, so stale
    // connections are still dropped before use.
    manager_config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn| {
        let broken = conn.is_broken();
        async move {
            if broken {
                Err(diesel::result::Error::BrokenTransactionManager)
            } else {
                Ok(())
            }
        }
        .boxed()
    }));
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

/// Hand-written statements that each connection prepares once and reuses:
/// `diesel::sql_query(SQL).bind(..).prepared()`.
///
/// diesel treats every `sql_query` as uncacheable: each execution costs a
/// Parse/Describe round trip before its Bind/Execute one, and PostgreSQL
/// parses and plans it again (most of the server's time on a short
/// statement, and it serialises statements meant to be pipelined).
/// Only for SQL text written in the code (the cache is keyed by the text,
/// so generated text would grow it without bound). Plans are still made
/// per execution ([`connect`] sets `plan_cache_mode`).
pub trait Prepare: Sized {
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>> Prepare for Q {}

/// See [`Prepare`].
#[derive(Debug, Clone)]
#[must_use = "a statement does nothing until it is run"]
pub struct Prepared<Q>(Q);

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q> diesel::query_builder::QueryId for Prepared<Q> {
    type QueryId = ();
    // Cached by its SQL text (and bind types), not by a type id.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for Prepared<Q>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        pass: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &diesel::pg::Pg) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

/// A connection one writer task keeps for itself, outside the pool, and
/// opens again after it broke.
///
/// Writers whose transactions serialise (the audit chain, a ledger shard)
/// pay every round trip of every transaction in their throughput. Opened
/// from inside the writer's own runtime ([`spawn_writer_thread`]), the
/// connection's socket is driven there too, so those round trips never
/// queue behind the request handlers of the main runtime.
pub struct Dedicated {
    pool: Pool,
    conn: Option<AsyncPgConnection>,
    /// Set while [`Dedicated::transaction`] runs: found set, the call was
    /// cancelled half-way and the connection may hold an open transaction.
    in_transaction: bool,
}

impl Dedicated {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            conn: None,
            in_transaction: false,
        }
    }

    /// The connection, opened if there is none or it broke.
    pub async fn get(&mut self) -> Result<&mut AsyncPgConnection, bb8::RunError> {
        if self.in_transaction || self.conn.as_mut().is_some_and(|c| c.is_broken()) {
            self.conn = None;
            self.in_transaction = false;
        }
        if self.conn.is_none() {
            // Bounded like a pool checkout (bb8's timeout does not apply).
            let conn = tokio::time::timeout(
                self.pool.config().connection_timeout,
                self.pool.dedicated_connection(),
            )
            .await
            .map_err(|_| bb8::RunError::TimedOut)?
            .map_err(bb8::RunError::User)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// Runs `body` in a transaction whose BEGIN travels with the body's
    /// first statements (one round trip fewer than diesel's transactions);
    /// COMMIT when it returns `Ok`. On any error the transaction is rolled
    /// back, and the connection dropped if even that fails. Statements the
    /// body joins run in the order their futures are first polled.
    ///
    /// The body must return every statement's error: PostgreSQL answers
    /// COMMIT of a failed transaction with a rollback, not an error, so a
    /// swallowed failure would be reported as committed.
    pub async fn transaction<T, E>(
        &mut self,
        body: impl AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error> + From<bb8::RunError>,
    {
        self.get().await?;
        self.in_transaction = true;
        let conn: &AsyncPgConnection = self.conn.as_ref().expect("opened above");
        let (mut begin, mut end) = (conn, conn);
        let (begun, done) = tokio::join!(begin.batch_execute("BEGIN"), body(conn));
        let outcome = match (begun, done) {
            (Ok(()), Ok(value)) => end
                .batch_execute("COMMIT")
                .await
                .map(|()| value)
                .map_err(E::from),
            (Err(e), _) => Err(E::from(e)),
            (Ok(()), Err(e)) => Err(e),
        };
        let clean = outcome.is_ok() || end.batch_execute("ROLLBACK").await.is_ok();
        if clean {
            self.in_transaction = false;
        }
        outcome
    }

    /// The pool it opens connections from (for work outside the writer's
    /// transactions).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Runs the future `task()` makes on a thread of its own, in a
/// single-threaded runtime, until it ends; the receiver resolves then.
/// For writers that use [`Dedicated`] connections (see there why).
pub fn spawn_writer_thread<F, Fut>(
    name: &str,
    task: F,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(task()),
                Err(error) => tracing::error!(%error, "cannot start a writer runtime"),
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}
