//! Ingest: a batch of events from a platform service, validated whole and
//! refused whole, stored once each by the group-commit writer, answered
//! after the commit.

pub mod decode;

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use chrono::Utc;
use steward_kit::{FieldViolations, db::Pool};
use steward_proto::audit::AuditEvent;

use crate::{
    domain::{event::Event, validate},
    error::Error,
    state::State,
    store::catalog,
};

/// Known (product, action) pairs, reloaded when an unknown one shows up
/// (another replica may have registered it).
#[derive(Clone, Default)]
pub struct Catalog(Arc<RwLock<HashSet<(String, String)>>>);

impl Catalog {
    /// Reloads the catalog when a pair of `wanted` is unknown.
    pub async fn refresh_for<'a>(
        &self,
        pool: &Pool,
        wanted: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Error> {
        let missing = {
            let known = self.0.read().expect("not poisoned");
            wanted
                .into_iter()
                .any(|(p, a)| !known.contains(&(p.to_owned(), a.to_owned())))
        };
        if missing {
            let mut conn = pool.get().await?;
            let fresh = catalog::known(&mut conn).await?;
            *self.0.write().expect("not poisoned") = fresh;
        }
        Ok(())
    }

    /// Runs `f` over the known pairs, under the read lock (no copy).
    pub fn with<R>(&self, f: impl FnOnce(&HashSet<(String, String)>) -> R) -> R {
        f(&self.0.read().expect("not poisoned"))
    }
}

/// What an ingest call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Validates a batch; violations name `events[i].field`.
async fn validate(state: &State, batch: Vec<AuditEvent>) -> Result<Vec<Event>, Error> {
    let mut v = FieldViolations::new();
    if batch.len() > validate::MAX_BATCH {
        v.add(
            "events",
            format!("at most {} events per call", validate::MAX_BATCH),
        );
        return Err(v.into());
    }
    state
        .catalog
        .refresh_for(
            state.pool(),
            batch
                .iter()
                .map(|e| (e.product.as_str(), e.action.as_str())),
        )
        .await?;
    let now = Utc::now();
    // Decoded under the read lock (no copy of the catalog per call).
    let events: Vec<Event> = state.catalog.with(|known| {
        batch
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| decode::event(i, e, known, now, &mut v))
            .collect()
    });
    v.check()?;
    Ok(events)
}

/// Stores a batch: each event once, whatever how often it is delivered.
pub async fn ingest(state: &State, batch: Vec<AuditEvent>) -> Result<Ingested, Error> {
    let events = validate(state, batch).await?;
    if events.is_empty() {
        return Ok(Ingested {
            accepted: 0,
            duplicates: 0,
        });
    }
    let fresh = state.writer.submit(events).await?;
    let accepted = fresh.iter().filter(|f| **f).count();
    Ok(Ingested {
        accepted,
        duplicates: fresh.len() - accepted,
    })
}
