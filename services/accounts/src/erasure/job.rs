//! The background job that erases destroyed accounts once their delay has
//! passed (when automatic erasure is enabled): each user's
//! `account.personal.data.removal.delay` quota, or accounts' own setting when
//! quotas cannot answer. Safe to run in every replica: rows are taken with
//! SKIP LOCKED.

use std::time::Duration;

use steward_kit::{Commands, RequestContext, auth::Caller, outbox::AuditRecord};
use tokio::sync::watch;

use super::commands::erase_due;
use crate::{SOURCE, error::Error, quotas::Delays};

/// Users erased per transaction.
const BATCH: i64 = 100;

/// Runs one pass over every destroyed account; returns how many were
/// erased.
pub async fn run_once(commands: &Commands, delays: &Delays) -> Result<usize, Error> {
    let mut total = 0;
    let mut after = None;
    loop {
        let record = AuditRecord::new(
            SOURCE,
            "user.personal_data.deleted",
            &Caller::system(),
            &RequestContext::default(),
            "",
        );
        let mut page = None;
        commands
            .run(record, None, Ok(()), async |tx, ()| {
                page = Some(erase_due(tx, BATCH, after, delays).await?);
                Ok(())
            })
            .await?;
        let page = page.unwrap_or_default();
        total += page.erased;
        after = page.last;
        if (page.scanned as i64) < BATCH || after.is_none() {
            return Ok(total);
        }
    }
}

/// Runs a pass every `interval` until `shutdown` turns true.
pub async fn run(
    commands: Commands,
    delays: Delays,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match run_once(&commands, &delays).await {
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
