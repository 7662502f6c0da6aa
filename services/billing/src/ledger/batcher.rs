//! Refills and withdrawals, batched per shard of accounts.
//!
//! Operations on one account used to queue on its row lock, one
//! transaction each. Here every account belongs to one shard; a shard's task
//! takes the operations waiting for it, and in one transaction claims their
//! idempotency keys, locks their accounts, decides each operation in arrival
//! order against the running balance (a withdrawal the balance cannot cover
//! is refused, alone), writes all entries with one insert and the balances
//! with one update, writes every operation's audit record (FAILURE for the
//! refused) and remembers the responses, commits, and only then answers each
//! caller. The semantics are those of the command runner run once per
//! operation in arrival order:
//!
//! * a key seen before replays its stored response; a key reused for
//!   another request is INVALID_ARGUMENT; a second use of one key inside a
//!   batch waits for the next batch (and then replays, or executes if the
//!   first was refused, as a serial retry would);
//! * a refused operation leaves no key behind, so its retry executes;
//! * if the batch fails as a whole (a constraint, the database), each of
//!   its operations is retried alone, so one bad operation fails only
//!   itself.

use std::collections::{HashMap, HashSet, VecDeque};

use futures_util::TryFutureExt;

use steward_kit::{
    Key,
    db::{Dedicated, Pool},
    idempotency::{self, Claim},
    outbox::{AuditRecord, record_refusal},
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    commands::MoneyInput,
    decide::{decide, most_entries},
    store::{self, Balances, Entry, NewEntry},
};
use crate::{
    domain::tariff::ExtraBonusRule,
    error::{CONSTRAINTS, Error},
};

/// Most operations one transaction takes.
pub const MAX_BATCH: usize = 256;

/// Operations waiting per shard before callers wait to enqueue.
const QUEUE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Credits; a main refill may earn the extra bonus.
    Refill,
    /// Debits, refused with INSUFFICIENT_FUNDS below zero.
    Withdraw,
}

/// What an applied operation wrote: its entries and the account's balances
/// right after it.
pub struct Applied {
    pub entries: Vec<Entry>,
    pub balances: Balances,
}

/// Builds the response an applied operation answers (and remembers for its
/// key) from what it wrote.
pub type Encode = Box<dyn Fn(&Applied) -> Vec<u8> + Send + Sync>;

/// One operation, as the handler hands it over.
pub struct MoneyOp {
    pub kind: Kind,
    pub actor: String,
    pub input: MoneyInput,
    /// The request's audit record (subject, amount, notes already set).
    pub record: AuditRecord,
    pub key: Option<Key>,
    /// The request's trace context, for its outbox row.
    pub traceparent: Option<String>,
    pub encode: Encode,
}

struct Pending {
    op: MoneyOp,
    reply: oneshot::Sender<Result<Vec<u8>, Error>>,
}

/// The shards' queues; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    shards: Vec<mpsc::Sender<Pending>>,
}

impl Batcher {
    /// Starts `shards` tasks (at least one) on a thread of their own, each
    /// with a connection of its own (see `steward_kit::db::Dedicated`: a
    /// batch's round trips are what a hot account's throughput is made
    /// of). They end when the last handle is dropped.
    pub fn spawn(pool: Pool, rules: Vec<ExtraBonusRule>, shards: usize) -> std::io::Result<Self> {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards.max(1)).map(|_| mpsc::channel(QUEUE)).unzip();
        // Refusals are recorded through the pool on the main runtime, so
        // pooled connections are never opened (and driven) on this thread.
        let main = tokio::runtime::Handle::current();
        steward_kit::db::spawn_writer_thread("ledger-batcher", move || async move {
            let tasks: Vec<_> = receivers
                .into_iter()
                .map(|rx| {
                    let conn = Dedicated::new(pool.clone());
                    tokio::spawn(run(conn, main.clone(), rules.clone(), rx))
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        })?;
        Ok(Self { shards: senders })
    }

    /// Runs `op` in its account's next batch; the response bytes (fresh or
    /// replayed) once that batch committed, or the operation's error.
    pub async fn submit(&self, op: MoneyOp) -> Result<Vec<u8>, Error> {
        let shard = &self.shards[shard_of(op.input.user_id, self.shards.len())];
        let (reply, answer) = oneshot::channel();
        shard
            .send(Pending { op, reply })
            .await
            .map_err(|_| Error::Internal("the ledger batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("the ledger batcher dropped an operation".into()))?
    }
}

fn shard_of(user: Uuid, shards: usize) -> usize {
    (user.as_u128() % shards as u128) as usize
}

async fn run(
    mut conn: Dedicated,
    main: tokio::runtime::Handle,
    rules: Vec<ExtraBonusRule>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(p) => waiting.push_back(p),
                None => return,
            }
        }
        while waiting.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => waiting.push_back(p),
                Err(_) => break,
            }
        }
        // One use of a key per batch; later uses wait for the next one.
        let mut batch = Vec::new();
        let mut later = VecDeque::new();
        let mut keys = HashSet::new();
        for p in waiting.drain(..) {
            let first = match &p.op.key {
                Some(k) => keys.insert((k.scope().to_owned(), k.key().to_owned())),
                None => true,
            };
            if first && batch.len() < MAX_BATCH {
                batch.push(p);
            } else {
                later.push_back(p);
            }
        }
        waiting = later;
        execute(&mut conn, &main, &rules, batch).await;
    }
}

async fn execute(
    conn: &mut Dedicated,
    main: &tokio::runtime::Handle,
    rules: &[ExtraBonusRule],
    batch: Vec<Pending>,
) {
    let ops: Vec<&MoneyOp> = batch.iter().map(|p| &p.op).collect();
    // Each outcome, and whether it committed (its record with it).
    let outcomes: Vec<(Result<Vec<u8>, Error>, bool)> = match attempt(conn, rules, &ops).await {
        Ok(outcomes) => outcomes.into_iter().map(|o| (o, true)).collect(),
        Err(e) if ops.len() == 1 => vec![(Err(e), false)],
        Err(e) => {
            tracing::warn!(error = %e, operations = ops.len(), "ledger batch failed; retrying its operations one by one");
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in &ops {
                outcomes.push(match attempt(conn, rules, &[op]).await {
                    Ok(mut one) => (
                        one.pop().unwrap_or_else(|| {
                            Err(Error::Internal("the ledger batch lost an operation".into()))
                        }),
                        true,
                    ),
                    Err(e) => (Err(e), false),
                });
            }
            outcomes
        }
    };
    for (p, (outcome, committed)) in batch.into_iter().zip(outcomes) {
        let outcome = outcome.map_err(|e| e.resolve(CONSTRAINTS));
        if let Err(e) = &outcome
            && !committed
            && e.is_refusal()
        {
            // Refused by a constraint: its transaction rolled back, so it is
            // audited in one of its own, as the command runner does.
            let (pool, record, reason) = (conn.pool().clone(), p.op.record.clone(), e.to_string());
            let _ = main
                .spawn(async move { record_refusal(&pool, record, reason).await })
                .await;
        }
        // A caller that went away does not undo its committed operation.
        let _ = p.reply.send(outcome);
    }
}

/// Why a batch's transaction ended without committing.
enum Abort {
    Failed(Error),
    /// Accounts without a row, which sort below accounts already locked:
    /// locking them now could deadlock with a batch of another replica that
    /// locks in order, so the batch starts again and creates them first.
    Reorder(Vec<Uuid>),
}

impl From<Error> for Abort {
    fn from(e: Error) -> Self {
        Abort::Failed(e)
    }
}

impl From<diesel::result::Error> for Abort {
    fn from(e: diesel::result::Error) -> Self {
        Abort::Failed(e.into())
    }
}

impl From<steward_kit::db::RunError> for Abort {
    fn from(e: steward_kit::db::RunError) -> Self {
        Abort::Failed(e.into())
    }
}

/// One transaction for `ops`: per operation its response bytes or its own
/// refusal; `Err` when the transaction as a whole failed (nothing applied).
async fn attempt(
    conn: &mut Dedicated,
    rules: &[ExtraBonusRule],
    ops: &[&MoneyOp],
) -> Result<Vec<Result<Vec<u8>, Error>>, Error> {
    match attempt_creating(conn, rules, ops, &[]).await {
        Err(Abort::Reorder(create)) => match attempt_creating(conn, rules, ops, &create).await {
            Err(Abort::Failed(e)) => Err(e),
            Err(Abort::Reorder(_)) => Err(Error::Internal(
                "the ledger batch found accounts missing twice".into(),
            )),
            Ok(outcomes) => Ok(outcomes),
        },
        Err(Abort::Failed(e)) => Err(e),
        Ok(outcomes) => Ok(outcomes),
    }
}

/// [`attempt`], creating the rows of `create` (and locking them in order
/// with the others) in the first round trip.
async fn attempt_creating(
    conn: &mut Dedicated,
    rules: &[ExtraBonusRule],
    ops: &[&MoneyOp],
    create_first: &[Uuid],
) -> Result<Vec<Result<Vec<u8>, Error>>, Abort> {
    // BEGIN goes out with round trip 1 (see `Dedicated::transaction`).
    conn.transaction::<_, Abort>(async |c| {
        {
            let mut outcomes: Vec<Option<Result<Vec<u8>, Error>>> =
                (0..ops.len()).map(|_| None).collect();

            // Every operation's record, FAILURE for the refused.
            let mut records: Vec<(AuditRecord, Option<String>)> = Vec::new();

            // Round trip 1: the keys (replay what was answered before), the
            // row locks of every operation's account, and ids for as many
            // entries as the batch can write, sent together. Locking the
            // account of an operation that turns out to be a replay costs
            // nothing but the lock.
            let keyed: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].key.is_some()).collect();
            let keys: Vec<_> = keyed
                .iter()
                .filter_map(|&i| ops[i].key.as_ref())
                .map(|k| (k.scope(), k.key(), k.fingerprint()))
                .collect();
            let mut users: Vec<Uuid> = ops.iter().map(|op| op.input.user_id).collect();
            users.sort();
            users.dedup();
            let most_entries: i64 = ops.iter().map(|op| most_entries(op, rules)).sum();
            let (claims, mut balances, (ids, at)) = futures_util::try_join!(
                idempotency::claim_many(c, &keys).err_into::<Error>(),
                store::lock_balances(c, &users, create_first).err_into::<Error>(),
                store::reserve_ids(c, most_entries).err_into::<Error>(),
            )?;
            for (&i, claim) in keyed.iter().zip(claims) {
                match claim {
                    Ok(Claim::New) => {}
                    Ok(Claim::Replay(bytes)) => outcomes[i] = Some(Ok(bytes)),
                    Err(e) => {
                        let e = Error::from(e).resolve(CONSTRAINTS);
                        if e.is_refusal() {
                            records.push((
                                ops[i].record.clone().failed(e.to_string()),
                                ops[i].traceparent.clone(),
                            ));
                        }
                        outcomes[i] = Some(Err(e));
                    }
                }
            }

            // Decide in arrival order against the running balances.
            let live: Vec<usize> = (0..ops.len()).filter(|&i| outcomes[i].is_none()).collect();
            // A first refill of an account creates its row (and locks it).
            let mut create: Vec<Uuid> = live
                .iter()
                .filter(|&&i| ops[i].kind == Kind::Refill)
                .map(|&i| ops[i].input.user_id)
                .filter(|u| !balances.contains_key(u))
                .collect();
            create.sort();
            create.dedup();
            if !create.is_empty() {
                // Rows are locked in account order: new ones after the
                // locked ones only if they sort after them all.
                let highest = balances.keys().max();
                if create_first.is_empty() && highest.is_some_and(|h| create[0] < *h) {
                    return Err(Abort::Reorder(create));
                }
                balances.extend(store::lock_balances(c, &create, &create).await?);
            }
            let mut entries: Vec<NewEntry> = Vec::new();
            // Per applied operation: its entries' range and balances after.
            let mut applied: HashMap<usize, (std::ops::Range<usize>, Balances)> = HashMap::new();
            let mut released: Vec<(&str, &str)> = Vec::new();
            for &i in &live {
                let op = ops[i];
                let first = entries.len();
                match decide(op, rules, balances.get_mut(&op.input.user_id), &mut entries) {
                    Ok((after, record)) => {
                        applied.insert(i, (first..entries.len(), after));
                        records.push((record, op.traceparent.clone()));
                    }
                    Err(refusal) => {
                        records.push((
                            op.record.clone().failed(refusal.to_string()),
                            op.traceparent.clone(),
                        ));
                        if let Some(k) = &op.key {
                            released.push((k.scope(), k.key()));
                        }
                        outcomes[i] = Some(Err(refusal));
                    }
                }
            }

            // One insert for the entries, one update for the balances.
            let mut touched: Vec<(Uuid, Balances)> = applied
                .keys()
                .map(|&i| ops[i].input.user_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .filter_map(|u| balances.get(&u).map(|b| (u, *b)))
                .collect();
            touched.sort_by_key(|(u, _)| *u);
            let stored = store::entries_at(&entries, &ids, at)
                .ok_or_else(|| Error::Internal("the ledger batch reserved too few ids".into()))?;
            let mut remembered: Vec<(&str, &str, Vec<u8>)> = Vec::new();
            for (&i, (range, after)) in &applied {
                let bytes = (ops[i].encode)(&Applied {
                    entries: stored[range.clone()].to_vec(),
                    balances: *after,
                });
                if let Some(k) = &ops[i].key {
                    remembered.push((k.scope(), k.key(), bytes.clone()));
                }
                outcomes[i] = Some(Ok(bytes));
            }
            // Round trip 2: entries, balances, the responses remembered for
            // replays, released keys and audit records, sent together.
            futures_util::try_join!(
                store::write_batch(c, &stored, &touched).err_into::<Error>(),
                idempotency::complete_many(c, &remembered).err_into::<Error>(),
                idempotency::release_many(c, &released).err_into::<Error>(),
                AuditRecord::write_all(c, &records).err_into::<Error>(),
            )?;
            Ok(outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or_else(|| Err(Error::Internal("undecided ledger operation".into())))
                })
                .collect())
        }
    })
    .await
}
