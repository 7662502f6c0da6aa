//! The command runner: the one envelope every state-changing command runs in.
//!
//! ```text
//! input validated? ── no ──────────────────────────────┐
//!   │ yes                                              │
//! BEGIN → claim request id ── seen ──→ replay response │
//!   │ new                                              │
//! command body (store calls, domain rules)             │
//!   │ ok                          │ refused            │
//! audit record(s) → outbox        ROLLBACK             │
//! remember response               │                    │
//! COMMIT → response               audit FAILURE (own transaction) ← ┘
//! ```
//!
//! A handler decodes, calls [`Commands::run`] (or [`Commands::read`]) with
//! its command, and encodes. Constraint violations become refusals through
//! the service's table, here, not in handlers.

use diesel_async::{AsyncConnection, AsyncPgConnection, TransactionManager};
use prost::Message;

use crate::{
    auth::Caller,
    db::Pool,
    error::{Constraint, Error},
    idempotency,
    outbox::{AuditRecord, record_refusal},
};

type Manager = <AsyncPgConnection as AsyncConnection>::TransactionManager;

/// A service's runner: its pool and its constraint table.
#[derive(Clone)]
pub struct Commands {
    pool: Pool,
    constraints: &'static [Constraint],
}

/// A request's idempotency key, scoped to the method and the caller: two
/// callers never see each other's responses, however they choose keys.
#[derive(Debug, Clone)]
pub struct Key {
    scope: String,
    key: String,
    fingerprint: Vec<u8>,
}

impl Key {
    /// `None` for an empty `request_id` (the RPC runs without replay).
    pub fn of<M: Message>(
        method: &str,
        caller: &Caller,
        request_id: &str,
        request: &M,
    ) -> Option<Self> {
        (!request_id.is_empty()).then(|| Self {
            scope: format!("{method}:{}", caller.user_id),
            key: request_id.to_owned(),
            fingerprint: idempotency::fingerprint(request),
        })
    }

    /// The method and caller the key belongs to.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The caller's request id.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The digest of the request the key was first used with.
    pub fn fingerprint(&self) -> &[u8] {
        &self.fingerprint
    }
}

/// The transaction a command body runs in, with the audit records that
/// commit with it.
pub struct Tx<'c> {
    pub conn: &'c mut AsyncPgConnection,
    record: AuditRecord,
    extra: Vec<AuditRecord>,
    write_main: bool,
}

impl Tx<'_> {
    /// Adds to the command's own record (comments, subject, action).
    pub fn note(&mut self, f: impl FnOnce(AuditRecord) -> AuditRecord) {
        self.record = f(self.record.clone());
    }

    /// The command's record as it stands, to derive per-item records from.
    pub fn record(&self) -> &AuditRecord {
        &self.record
    }

    /// One more record committing with the change (a batch's items, a
    /// second user's log).
    pub fn audit(&mut self, record: AuditRecord) {
        self.extra.push(record);
    }

    /// The command's own record is not written (a batch audits per item).
    pub fn only_extra(&mut self) {
        self.write_main = false;
    }
}

impl Commands {
    pub fn new(pool: Pool, constraints: &'static [Constraint]) -> Self {
        Self { pool, constraints }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A read: one pooled connection, errors resolved through the table.
    pub async fn read<T, F>(&self, body: F) -> Result<T, Error>
    where
        F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, Error>,
    {
        let mut conn = self.pool.get().await?;
        body(&mut conn)
            .await
            .map_err(|e| e.resolve(self.constraints))
    }

    /// A state change in the envelope described in the module docs. `input`
    /// is the validated request (its violations are audited as FAILURE);
    /// `record` already carries what the request says (subject, comments).
    pub async fn run<I, T, F>(
        &self,
        record: AuditRecord,
        key: Option<Key>,
        input: Result<I, Error>,
        body: F,
    ) -> Result<T, Error>
    where
        T: Message + Default,
        F: AsyncFnOnce(&mut Tx<'_>, I) -> Result<T, Error>,
    {
        let result = match input {
            Ok(input) => self.transaction(&record, key.as_ref(), input, body).await,
            Err(e) => Err(e),
        };
        let result = result.map_err(|e| e.resolve(self.constraints));
        if let Err(e) = &result
            && e.is_refusal()
        {
            record_refusal(&self.pool, record, e.to_string()).await;
        }
        result
    }

    async fn transaction<I, T, F>(
        &self,
        record: &AuditRecord,
        key: Option<&Key>,
        input: I,
        body: F,
    ) -> Result<T, Error>
    where
        T: Message + Default,
        F: AsyncFnOnce(&mut Tx<'_>, I) -> Result<T, Error>,
    {
        let mut conn = self.pool.get().await?;
        let conn: &mut AsyncPgConnection = &mut conn;
        Manager::begin_transaction(conn).await?;
        let outcome = async {
            if let Some(k) = key
                && let Some(previous) =
                    idempotency::replay(conn, &k.scope, &k.key, &k.fingerprint).await?
            {
                return Ok(previous);
            }
            let mut tx = Tx {
                conn: &mut *conn,
                record: record.clone(),
                extra: Vec::new(),
                write_main: true,
            };
            let response = body(&mut tx, input).await?;
            let Tx {
                record,
                extra,
                write_main,
                ..
            } = tx;
            if write_main {
                record.write(conn).await?;
            }
            for record in extra {
                record.write(conn).await?;
            }
            if let Some(k) = key {
                idempotency::complete(conn, &k.scope, &k.key, &response).await?;
            }
            Ok::<T, Error>(response)
        }
        .await;
        match outcome {
            Ok(response) => {
                Manager::commit_transaction(conn).await?;
                Ok(response)
            }
            Err(e) => {
                // A failed rollback leaves the connection marked broken, and
                // the pool discards it.
                if let Err(rollback) = Manager::rollback_transaction(conn).await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }
}
