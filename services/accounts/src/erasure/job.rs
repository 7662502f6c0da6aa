//! The background job that erases destroyed accounts once the configured
//! delay has passed (when automatic erasure is enabled). Safe to run in
//! every replica: rows are taken with SKIP LOCKED.

use std::time::Duration;

use steward_kit::{Commands, RequestContext, auth::Caller, outbox::AuditRecord};
use tokio::sync::watch;

use super::commands::erase_due;
use crate::{SOURCE, error::Error};

/// Users erased per transaction.
const BATCH: i64 = 100;

/// Runs one pass; returns how many accounts were erased.
pub async fn run_once(commands: &Commands) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let record = AuditRecord::new(
            SOURCE,
            "user.personal_data.deleted",
            &Caller::system(),
            &RequestContext::default(),
            "",
        );
        let erased = commands
            .run(record, None, Ok(()), async |tx, ()| {
                Ok(erase_due(tx, BATCH).await? as u64)
            })
            .await? as usize;
        total += erased;
        if (erased as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Runs a pass every `interval` until `shutdown` turns true.
pub async fn run(commands: Commands, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        match run_once(&commands).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "erased personal data of destroyed accounts"),
            Err(error) => tracing::warn!(%error, "erasure job pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}
