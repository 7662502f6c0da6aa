//! Housekeeping: partitions created ahead, expired partitions dropped,
//! partly expired ones trimmed in small batches.

use std::time::Duration;

use chrono::Utc;
use steward_kit::db::Pool;
use tokio::sync::watch;

use crate::{
    domain::seal::ChainSigner,
    error::Error,
    store::{partitions, retention},
    writer::KnownPartitions,
};

/// Rows deleted per trim transaction: short locks, steady progress.
const TRIM_BATCH: i64 = 1000;
/// Months created ahead of time.
const MONTHS_AHEAD: usize = 3;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub dropped_partitions: Vec<String>,
    pub trimmed: usize,
}

pub async fn run_once(
    pool: &Pool,
    known: &KnownPartitions,
    signer: &ChainSigner,
) -> Result<Pass, Error> {
    let mut conn = pool.get().await?;
    let mut month = partitions::month_of(Utc::now());
    for _ in 0..MONTHS_AHEAD {
        known.ensure(&mut conn, month).await?;
        month = partitions::next_month(month);
    }
    let now = Utc::now();
    let dropped = retention::drop_expired_partitions(&mut conn, signer, now).await?;
    for partition in &dropped {
        known.forget(partition.month);
    }
    let mut pass = Pass {
        dropped_partitions: dropped.into_iter().map(|p| p.name).collect(),
        trimmed: 0,
    };
    loop {
        let n = {
            use diesel_async::AsyncConnection;
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                retention::trim_batch(conn, signer, now, TRIM_BATCH).await
            })
            .await?
        };
        pass.trimmed += n;
        if (n as i64) < TRIM_BATCH {
            break;
        }
    }
    Ok(pass)
}

pub async fn run(
    pool: Pool,
    known: KnownPartitions,
    signer: ChainSigner,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match run_once(&pool, &known, &signer).await {
            Ok(pass) if pass == Pass::default() => {}
            Ok(pass) => tracing::info!(
                dropped = ?pass.dropped_partitions,
                trimmed = pass.trimmed,
                "audit retention applied"
            ),
            Err(error) => tracing::warn!(%error, "audit retention pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}
