//! Fills the cache with every user's group and overrides ahead of use, so
//! the hot path meets the database only for users created since the last
//! pass (loaded on first use, as before). Runs once the cache is first
//! usable and again whenever every user was dropped (a fence, or a change
//! touching too many users).
//!
//! Coherence is the cache's own rule: a chunk read since epoch `e` is
//! stored only while the epoch is still `e`, so a change committed during
//! the read can never be hidden by the warm-up.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Cache, UserEntry};
use crate::{error::Error, membership::store as memberships, users::store as overrides};

/// Users read per round trip pair (memberships, then their overrides).
const CHUNK: i64 = 10_000;
/// Reads of one chunk before giving up on it when changes keep racing it.
const ATTEMPTS: usize = 3;

pub async fn run(cache: Arc<Cache>, mut shutdown: watch::Receiver<bool>) {
    if !cache.config().enabled || !cache.config().warm {
        return;
    }
    loop {
        while !cache.usable() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {},
                changed = shutdown.changed() => if changed.is_err() { return },
            }
            if *shutdown.borrow() {
                return;
            }
        }
        // A drop signalled before this pass is covered by it.
        let _ = cache.rewarm.notified().now_or_never();
        let started = Instant::now();
        match pass(&cache, &shutdown).await {
            Ok(loaded) => tracing::info!(
                loaded,
                held = cache.users_held(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "quota cache warmed"
            ),
            Err(error) => {
                tracing::warn!(%error, "quota cache warm-up stopped; users load on first use")
            }
        }
        tokio::select! {
            _ = cache.rewarm.notified() => {},
            changed = shutdown.changed() => if changed.is_err() { return },
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One walk over every membership; returns how many users were stored.
async fn pass(cache: &Cache, shutdown: &watch::Receiver<bool>) -> Result<usize, Error> {
    let mut after = Uuid::nil();
    let mut loaded = 0;
    loop {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            if *shutdown.borrow() || !cache.usable() {
                return Ok(loaded);
            }
            let catalog = cache.catalog();
            let epoch = cache.epoch();
            let (members, mut rows) = {
                let mut conn = cache.pool().get().await?;
                let members = memberships::page(&mut conn, after, CHUNK).await?;
                let ids: Vec<Uuid> = members.iter().map(|(id, _)| *id).collect();
                let rows = overrides::of_users(&mut conn, &ids).await?;
                (members, rows)
            };
            let Some((end, _)) = members.last() else {
                return Ok(loaded);
            };
            last = Some(*end);
            let mut stored = 0;
            for (id, m) in members {
                let entry = UserEntry {
                    group: m.group,
                    erased: m.erased,
                    overrides: catalog.overrides(rows.remove(&id).unwrap_or_default()),
                };
                if cache.fill_user(id, Arc::new(entry), epoch) {
                    stored += 1;
                }
            }
            loaded += stored;
            if cache.epoch() == epoch {
                break;
            }
        }
        after = last.expect("a chunk was read");
        if cache.users_held() >= cache.config().capacity {
            tracing::info!(
                capacity = cache.config().capacity,
                "quota cache full; the rest load on first use"
            );
            return Ok(loaded);
        }
        // Hot-path calls go first.
        tokio::task::yield_now().await;
    }
}
