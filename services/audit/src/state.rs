//! What every handler reaches: the query runner, the writer, the catalog
//! cache, and the envelope of the audit service's own actions.

use diesel_async::{AsyncConnection, AsyncPgConnection, TransactionManager};
use steward_kit::{Commands, db::Pool, outbox::AuditRecord, page::PageTokens};

use std::path::PathBuf;

use crate::{
    domain::seal::{ChainKeys, ChainSigner},
    error::{CONSTRAINTS, Error, internal},
    ingest::{Catalog, decode},
    writer::{self, KnownPartitions, Writer},
};

type Manager = <AsyncPgConnection as AsyncConnection>::TransactionManager;

/// The `source`/`product` of the audit service's own events.
pub const SOURCE: &str = "audit";

#[derive(Clone)]
pub struct State {
    pub commands: Commands,
    pub writer: Writer,
    pub catalog: Catalog,
    pub known: KnownPartitions,
    pub tokens: PageTokens,
    /// The chain key (never in the database) and the public keys accepted.
    pub signer: ChainSigner,
    pub keys: ChainKeys,
    /// Where checkpoints are exported (besides the log).
    pub checkpoint_dir: Option<PathBuf>,
}

/// The transaction an own action runs in, with its audit record.
pub struct OwnTx<'c> {
    pub conn: &'c mut AsyncPgConnection,
    record: AuditRecord,
}

impl OwnTx<'_> {
    /// Adds to the action's record (a count known only after the change).
    pub fn note(&mut self, f: impl FnOnce(AuditRecord) -> AuditRecord) {
        self.record = f(self.record.clone());
    }
}

impl State {
    pub fn new(
        pool: Pool,
        writer: Writer,
        known: KnownPartitions,
        tokens: PageTokens,
        signer: ChainSigner,
        keys: ChainKeys,
        checkpoint_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            commands: Commands::new(pool, CONSTRAINTS),
            writer,
            catalog: Catalog::default(),
            known,
            tokens,
            signer,
            keys,
            checkpoint_dir,
        }
    }

    pub fn pool(&self) -> &Pool {
        self.commands.pool()
    }

    /// Records the audit service's own action in the chain, inside `conn`'s
    /// transaction (audit does not send its own events through an outbox).
    pub async fn record_own(
        &self,
        conn: &mut AsyncPgConnection,
        record: &AuditRecord,
    ) -> Result<(), Error> {
        let (_, event) = record.finish();
        self.catalog
            .refresh_for(
                self.pool(),
                std::iter::once((event.product.as_str(), event.action.as_str())),
            )
            .await?;
        let mut v = steward_kit::FieldViolations::new();
        let own = self
            .catalog
            .with(|known| decode::event(0, event, known, chrono::Utc::now(), &mut v))
            .ok_or_else(|| internal(format!("own audit event invalid: {v}")))?;
        // Partitions it creates are not remembered: the caller's transaction
        // may still roll back. The next ingest or housekeeping pass caches them.
        writer::append(conn, &self.known, &self.signer, &[own]).await?;
        Ok(())
    }

    /// The envelope of an own action: validated input, one transaction with
    /// the change and its record in the chain; a refusal is recorded as
    /// FAILURE after the rollback (what kit's runner does for the other
    /// services, whose records go through an outbox).
    pub async fn run_own<I, T, F>(
        &self,
        record: AuditRecord,
        input: Result<I, Error>,
        body: F,
    ) -> Result<T, Error>
    where
        F: AsyncFnOnce(&mut OwnTx<'_>, I) -> Result<T, Error>,
    {
        let outcome = match input {
            Ok(input) => self.transaction(&record, input, body).await,
            Err(e) => Err(e),
        };
        let outcome = outcome.map_err(|e| e.resolve(CONSTRAINTS));
        if let Err(e) = &outcome
            && e.is_refusal()
        {
            let failed = record.failed(e.to_string());
            let written = async {
                let mut conn = self.pool().get().await?;
                conn.transaction::<_, Error, _>(async |conn| self.record_own(conn, &failed).await)
                    .await
            }
            .await;
            if let Err(error) = written {
                tracing::warn!(%error, "could not record a refused audit action");
            }
        }
        outcome
    }

    async fn transaction<I, T, F>(
        &self,
        record: &AuditRecord,
        input: I,
        body: F,
    ) -> Result<T, Error>
    where
        F: AsyncFnOnce(&mut OwnTx<'_>, I) -> Result<T, Error>,
    {
        let mut conn = self.pool().get().await?;
        let conn: &mut AsyncPgConnection = &mut conn;
        Manager::begin_transaction(conn).await?;
        let outcome = async {
            let mut tx = OwnTx {
                conn: &mut *conn,
                record: record.clone(),
            };
            let out = body(&mut tx, input).await?;
            let record = tx.record;
            self.record_own(conn, &record).await?;
            Ok::<T, Error>(out)
        }
        .await;
        match outcome {
            Ok(out) => {
                Manager::commit_transaction(conn).await?;
                Ok(out)
            }
            Err(e) => {
                if let Err(rollback) = Manager::rollback_transaction(conn).await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }
}
