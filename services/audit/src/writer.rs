//! Appending to the chain, and the group-commit writer that batches
//! concurrent ingest calls into one transaction.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use chrono::NaiveDate;
use diesel_async::AsyncPgConnection;
use steward_kit::db::{Dedicated, Pool};
use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::{
        event::{Event, Seal, fresh, people_named, seal},
        seal::{ChainSigner, erasure_message},
    },
    error::{Error, unavailable},
    store::{copy::CopyConnection, events, head, partitions},
};

/// The action whose SUCCESS from accounts means "erase this subject's data".
pub const ERASURE_ACTION: &str = "user.personal_data.deleted";
pub const ERASURE_PRODUCT: &str = "accounts";

/// Months whose partition is known to exist. Creating a partition locks
/// the parent, so it is done once; a month is remembered only after the
/// transaction that created it committed, and forgotten when dropped.
#[derive(Clone, Default)]
pub struct KnownPartitions(Arc<Mutex<HashSet<NaiveDate>>>);

impl KnownPartitions {
    fn contains(&self, month: NaiveDate) -> bool {
        self.0.lock().expect("not poisoned").contains(&month)
    }

    pub fn remember(&self, months: impl IntoIterator<Item = NaiveDate>) {
        self.0.lock().expect("not poisoned").extend(months);
    }

    pub fn forget(&self, month: NaiveDate) {
        self.0.lock().expect("not poisoned").remove(&month);
    }

    /// Creates the partition (outside any caller transaction) and remembers it.
    pub async fn ensure(
        &self,
        conn: &mut AsyncPgConnection,
        month: NaiveDate,
    ) -> diesel::QueryResult<()> {
        if !self.contains(month) {
            partitions::ensure(conn, month).await?;
            self.remember([month]);
        }
        Ok(())
    }
}

/// What an append did.
#[derive(Debug, Default)]
pub struct Appended {
    /// Per input event: stored now (false: already stored, acknowledged again).
    pub fresh: Vec<bool>,
    /// Partitions this transaction created: remember them once it commits.
    pub created_months: Vec<NaiveDate>,
}

/// Appends events to the chain inside the caller's transaction. Holds the
/// chain head lock until the transaction ends.
pub async fn append(
    conn: &AsyncPgConnection,
    known: &KnownPartitions,
    signer: &ChainSigner,
    batch: &[Event],
) -> diesel::QueryResult<Appended> {
    // Round trip 1: the head (locked), the ids (claimed) and who among the
    // people named was erased, sent together and executed in that order.
    // Deduplicated by event id alone (whatever the time it carries).
    let ids: Vec<_> = batch.iter().map(|e| e.event_id).collect();
    let people = people_named(batch);
    let ((mut seq, mut prev), claimed, erased) = futures_util::try_join!(
        head::lock_head(conn),
        events::claim_ids(conn, &ids),
        events::erased_among(conn, &people),
    )?;
    let is_erased = |e: &Event| e.people().any(|u| erased.contains(u));
    let mut rows: Vec<(std::borrow::Cow<'_, Event>, Seal)> = Vec::new();
    let mut appended = Appended {
        fresh: fresh(batch, &claimed),
        created_months: Vec::new(),
    };
    for (event, &new) in batch.iter().zip(&appended.fresh) {
        if new {
            seq += 1;
            // A user erased before: the event arrives erased.
            let (event, sealed) = if is_erased(event) {
                let blank = event.erased();
                let mut sealed = seal(&blank, seq, &prev);
                sealed.pii_salt = None;
                sealed.pii_digest = blank.pii_digest(&[]);
                sealed.hash = blank.hash(&sealed.pii_digest, &prev, seq);
                sealed.erasure_signature = Some(signer.sign(&erasure_message(seq, &sealed.hash)));
                (std::borrow::Cow::Owned(blank), sealed)
            } else {
                let sealed = seal(event, seq, &prev);
                (std::borrow::Cow::Borrowed(event), sealed)
            };
            prev = sealed.hash;
            rows.push((event, sealed));
        }
    }
    if rows.is_empty() {
        return Ok(appended);
    }
    let months: HashSet<_> = rows
        .iter()
        .map(|(e, _)| partitions::month_of(e.occurred_at))
        .collect();
    for month in months {
        if !known.contains(month) {
            partitions::ensure(conn, month).await?;
            appended.created_months.push(month);
        }
    }
    // Round trip 2: the events and the new signed head, sent together.
    // The activity rollup follows after the commit (store/rollup.rs).
    futures_util::try_join!(
        events::insert(conn, &rows),
        head::set_head(conn, signer, seq, &prev)
    )?;
    // Accounts erased a user's personal data: erase it here too, in the
    // same transaction as the event that says so. Only accounts may say so.
    for (event, _) in &rows {
        if event.product == ERASURE_PRODUCT
            && event.action == ERASURE_ACTION
            && event.result == steward_proto::common::Result::Success as i16
            && !event.subject_user_id.is_empty()
        {
            events::erase_subject(conn, signer, &event.subject_user_id).await?;
        }
    }
    Ok(appended)
}

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<bool>, String>>,
}

/// Group commit: calls queue their batches; one task writes whatever is
/// queued in a single transaction and answers each call after the commit.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer on a thread of its own with a connection of its
    /// own (`steward_kit::db::Dedicated`: every round trip of a group is
    /// waited for by every call in it, so they must not queue behind the
    /// request handlers). It ends when every `Writer` is dropped; the
    /// receiver resolves then. `committed` is told after each commit (the
    /// activity rollup follows).
    pub fn start(
        pool: Pool,
        database_url: &str,
        known: KnownPartitions,
        signer: ChainSigner,
        max_events: usize,
        committed: Arc<tokio::sync::Notify>,
    ) -> std::io::Result<(Self, oneshot::Receiver<()>)> {
        let (jobs, queue) = mpsc::channel(1024);
        let copy = CopyConnection::new(database_url, crate::SCHEMA);
        let done = steward_kit::db::spawn_writer_thread("audit-writer", move || {
            run(
                Dedicated::new(pool),
                copy,
                known,
                signer,
                queue,
                max_events,
                committed,
            )
        })?;
        Ok((Self { jobs }, done))
    }

    /// Stores `events`; resolves after they are committed.
    pub async fn submit(&self, events: Vec<Event>) -> Result<Vec<bool>, Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .await
            .map_err(|_| unavailable("audit writer stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("audit writer stopped"))?
            .map_err(unavailable)
    }
}

async fn run(
    mut conn: Dedicated,
    mut copy: CopyConnection,
    known: KnownPartitions,
    signer: ChainSigner,
    mut queue: mpsc::Receiver<Job>,
    max_events: usize,
    committed: Arc<tokio::sync::Notify>,
) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        let mut total = jobs[0].events.len();
        while total < max_events {
            match queue.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut all: Vec<Event> = Vec::with_capacity(total);
        let mut sizes = Vec::with_capacity(jobs.len());
        for job in &mut jobs {
            sizes.push(job.events.len());
            all.append(&mut job.events);
        }
        let outcome = write(&mut conn, &mut copy, &known, &signer, &all).await;
        if outcome.is_ok() {
            committed.notify_one();
            steward_kit::metrics::AUDIT_GROUP_COMMIT_EVENTS.observe("", all.len() as f64);
            steward_kit::metrics::AUDIT_GROUP_COMMIT_CALLS.observe("", jobs.len() as f64);
        }
        let mut offset = 0;
        for (job, n) in jobs.into_iter().zip(sizes) {
            let answer = match &outcome {
                Ok(fresh) => Ok(fresh[offset..offset + n].to_vec()),
                Err(e) => Err(e.clone()),
            };
            offset += n;
            let _ = job.reply.send(answer);
        }
    }
}

/// Why a group could not be written.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{0}")]
    Database(#[from] diesel::result::Error),
    #[error("{0}")]
    Connection(#[from] steward_kit::db::RunError),
}

/// Groups at least this large go in by COPY (below it, the general path's
/// two round trips cost less than COPY's start and finish).
const COPY_FROM: usize = 1000;

async fn write(
    conn: &mut Dedicated,
    copy: &mut CopyConnection,
    known: &KnownPartitions,
    signer: &ChainSigner,
    events: &[Event],
) -> Result<Vec<bool>, String> {
    let ordinary = || {
        events.iter().all(|e| {
            known.contains(partitions::month_of(e.occurred_at))
                && !(e.product == ERASURE_PRODUCT && e.action == ERASURE_ACTION)
        })
    };
    if events.len() >= COPY_FROM && ordinary() {
        match copy.append(signer, events).await {
            Ok(Some(fresh)) => return Ok(fresh),
            // Someone named was erased: the general path blanks them.
            Ok(None) => {}
            Err(error) => {
                // The server rolls back what the dropped connection held.
                copy.discard();
                tracing::error!(%error, "audit ingest transaction (COPY) failed");
                return Err("could not store the events, retry later".to_owned());
            }
        }
    }
    // BEGIN travels with the first statements (round trip 1 of append).
    let appended = conn
        .transaction::<_, WriteError>(async |c| Ok(append(c, known, signer, events).await?))
        .await
        .map_err(|e| match e {
            WriteError::Connection(e) => {
                tracing::warn!(error = %e, "audit writer has no database connection");
                "the database is unavailable, retry later".to_owned()
            }
            WriteError::Database(e) => {
                tracing::error!(error = %e, "audit ingest transaction failed");
                "could not store the events, retry later".to_owned()
            }
        })?;
    known.remember(appended.created_months);
    Ok(appended.fresh)
}
