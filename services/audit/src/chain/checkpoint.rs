//! Checkpoints: the chain head (sequence, hash, time) signed with the chain
//! key and exported outside the database (a directory of JSON files, the
//! service's log), issued periodically and on demand. Verifying the
//! database against one ([`verify_checkpoint`]) needs only the public key:
//! it detects truncation and rollback (the head is behind the checkpoint),
//! rewriting (the hash at the checkpoint's sequence differs, or the chain no
//! longer verifies), forged tombstones and forged erasures (unsigned).

use std::{path::Path, time::Duration};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::verify;
use crate::{
    domain::seal::{ChainKeys, ChainSigner, checkpoint_message},
    error::{Error, internal},
    state::State,
    store::{events, schema::checkpoints::dsl as c},
};

/// A checkpoint as exported (one JSON file each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub sequence: i64,
    /// Hex of the chain hash at `sequence`.
    pub hash: String,
    /// RFC 3339, microseconds.
    pub issued_at: DateTime<Utc>,
    /// Hex of the key id || Ed25519 signature of
    /// [`checkpoint_message`]`(sequence, hash, issued_at)`.
    pub signature: String,
}

impl Checkpoint {
    fn sign(signer: &ChainSigner, seq: i64, hash: &[u8], at: DateTime<Utc>) -> Self {
        let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or_default();
        Self {
            sequence: seq,
            hash: hex::encode(hash),
            issued_at: at,
            signature: hex::encode(signer.sign(&checkpoint_message(
                seq,
                hash,
                at.timestamp_micros(),
            ))),
        }
    }

    /// Is it signed by one of `keys`?
    pub fn is_signed_by(&self, keys: &ChainKeys) -> bool {
        let (Ok(hash), Ok(signature)) = (hex::decode(&self.hash), hex::decode(&self.signature))
        else {
            return false;
        };
        keys.verify(
            &checkpoint_message(self.sequence, &hash, self.issued_at.timestamp_micros()),
            Some(&signature),
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serializes")
    }

    /// The file name in the checkpoint directory (sorts by time).
    pub fn file_name(&self) -> String {
        format!(
            "checkpoint-{}-{:012}.json",
            self.issued_at.format("%Y%m%dT%H%M%S%.6fZ"),
            self.sequence
        )
    }
}

/// Signs the current head, stores the checkpoint and exports it (the
/// directory, if configured, and the log).
pub async fn issue(state: &State) -> Result<Checkpoint, Error> {
    let mut conn = state.pool().get().await?;
    let (seq, hash, _, _) = crate::store::head::head(&mut conn).await?;
    let checkpoint = Checkpoint::sign(&state.signer, seq, &hash, Utc::now());
    diesel::insert_into(c::checkpoints)
        .values((
            c::seq.eq(seq),
            c::hash.eq(&hash),
            c::issued_at.eq(checkpoint.issued_at),
            c::signature.eq(hex::decode(&checkpoint.signature).unwrap_or_default()),
        ))
        .execute(&mut conn)
        .await?;
    export(state.checkpoint_dir.as_deref(), &checkpoint)?;
    Ok(checkpoint)
}

fn export(dir: Option<&Path>, checkpoint: &Checkpoint) -> Result<(), Error> {
    let json = checkpoint.to_json();
    tracing::info!(checkpoint = %json, "audit chain checkpoint");
    let Some(dir) = dir else { return Ok(()) };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(checkpoint.file_name());
        // Written whole or not at all: a monitor never reads half a file.
        let tmp = dir.join(format!(".{}.tmp", checkpoint.file_name()));
        std::fs::write(&tmp, json.as_bytes())?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| internal(format!("exporting checkpoint to {}: {e}", dir.display())))
}

/// Checkpoints issued, newest first, after the `(issued_at, seq)` cursor.
pub async fn list(
    state: &State,
    after: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<Checkpoint>, Error> {
    state
        .commands
        .read(async |conn| {
            let mut q = c::checkpoints
                .select((c::seq, c::hash, c::issued_at, c::signature))
                .order((c::issued_at.desc(), c::seq.desc()))
                .limit(limit)
                .into_boxed();
            if let Some((at, seq)) = after {
                q = q.filter(
                    c::issued_at
                        .lt(at)
                        .or(c::issued_at.eq(at).and(c::seq.lt(seq))),
                );
            }
            type Row = (i64, Vec<u8>, DateTime<Utc>, Vec<u8>);
            let rows: Vec<Row> = q.load(conn).await?;
            Ok(rows
                .into_iter()
                .map(|(sequence, hash, issued_at, signature)| Checkpoint {
                    sequence,
                    hash: hex::encode(hash),
                    issued_at,
                    signature: hex::encode(signature),
                })
                .collect())
        })
        .await
}

/// Issues a checkpoint every `interval` while the head moves.
pub async fn run(state: State, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut last: Option<i64> = None;
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
        }
        let head = match state.pool().get().await {
            Ok(mut conn) => crate::store::head::head(&mut conn).await.map(|h| h.0).ok(),
            Err(_) => None,
        };
        if head.is_none() || head == last {
            continue;
        }
        match issue(&state).await {
            Ok(checkpoint) => last = Some(checkpoint.sequence),
            Err(error) => tracing::warn!(%error, "audit checkpoint not issued"),
        }
    }
}

/// What [`verify_checkpoint`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub checkpoint: Checkpoint,
    pub head: i64,
    pub events_checked: i64,
    /// None: the database holds the history the checkpoint vouches for.
    pub broken: Option<(i64, String)>,
}

/// Verifies the database at `database_url` against the checkpoint in
/// `file`, with the public `keys` only (no secret, no running service).
pub async fn verify_checkpoint(
    file: &Path,
    keys: &ChainKeys,
    database_url: &str,
) -> Result<Report, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| internal(format!("reading {}: {e}", file.display())))?;
    let checkpoint: Checkpoint = serde_json::from_str(&text)
        .map_err(|e| internal(format!("{} is not a checkpoint: {e}", file.display())))?;
    let mut conn = steward_kit::db::connect(database_url, crate::SCHEMA)
        .await
        .map_err(|e| internal(format!("connecting to the database: {e}")))?;
    check(&mut conn, keys, checkpoint).await
}

async fn check(
    conn: &mut AsyncPgConnection,
    keys: &ChainKeys,
    checkpoint: Checkpoint,
) -> Result<Report, Error> {
    let seq = checkpoint.sequence;
    let mut report = Report {
        checkpoint: checkpoint.clone(),
        head: 0,
        events_checked: 0,
        broken: None,
    };
    if !checkpoint.is_signed_by(keys) {
        report.broken = Some((seq, "checkpoint not signed by the chain key".into()));
        return Ok(report);
    }
    let (head, outcome, at_seq) = conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run::<_, diesel::result::Error, _>(async |conn| {
            let head = crate::store::head::head(conn).await?.0;
            let outcome = verify::verify(conn, keys, 0, 0).await?;
            let row = events::by_sequence(conn, seq, seq, 1).await?;
            let at_seq = match row.into_iter().next() {
                Some(row) => Some(row.hash),
                None => events::tombstones(conn, seq, seq)
                    .await?
                    .into_iter()
                    .next()
                    .map(|t| t.2),
            };
            Ok((head, outcome, at_seq))
        })
        .await?;
    report.head = head;
    report.events_checked = outcome.checked;
    report.broken = if head < seq {
        Some((
            head.max(1),
            format!("chain truncated or rolled back: head {head}, checkpoint {seq}"),
        ))
    } else if let Some(broken) = outcome.broken {
        Some(broken)
    } else {
        match at_seq {
            Some(hash) if hex::encode(&hash) != checkpoint.hash => Some((
                seq,
                "history rewritten: the hash at the checkpoint differs".into(),
            )),
            // Removed by retention inside a removed range: what remains
            // verified above, from its signed tombstone on.
            _ => None,
        }
    };
    Ok(report)
}
