//! Ships committed outbox rows to one destination.

use std::{sync::Arc, time::Duration};

use diesel::{QueryResult, prelude::*};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{DeliveryError, Destination, NOTIFY_CHANNEL};
use crate::{db::Pool, schema::outbox::dsl as o};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayConfig {
    pub batch_size: i64,
    /// Safety net in case a notification is missed (listener reconnecting).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Unavailability is retried forever, at most this far apart; only a
    /// permanent refusal of a row's content parks it.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            poll_interval: Duration::from_secs(5),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Exponential backoff for the n-th consecutive failure, capped.
pub fn backoff(config: &RelayConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    config
        .min_backoff
        .saturating_mul(factor)
        .min(config.max_backoff)
}

pub struct Relay {
    pool: Pool,
    database_url: String,
    schema: String,
    name: String,
    destination: Arc<dyn Destination>,
    config: RelayConfig,
}

#[derive(Debug)]
enum Drained {
    /// Rows delivered (a full batch means more may be waiting).
    Delivered(usize),
    /// The destination failed; rows were rescheduled.
    Failed,
}

impl Relay {
    pub fn new(
        pool: Pool,
        database_url: &str,
        schema: &str,
        name: &str,
        destination: Arc<dyn Destination>,
        config: RelayConfig,
    ) -> Self {
        Self {
            pool,
            database_url: database_url.to_owned(),
            schema: schema.to_owned(),
            name: name.to_owned(),
            destination,
            config,
        }
    }

    /// Runs until `shutdown` turns true (or its sender is gone), then makes
    /// a last bounded attempt to flush what is waiting.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut listener: Option<AsyncPgConnection> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            self.export_backlog().await;
            let wait = match self.drain_once().await {
                Ok(Drained::Delivered(n)) => {
                    failures = 0;
                    if n as i64 == self.config.batch_size {
                        continue;
                    }
                    self.config.poll_interval
                }
                Ok(Drained::Failed) => {
                    failures += 1;
                    backoff(&self.config, failures)
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(destination = %self.name, error = %err, "outbox relay cannot reach the database");
                    backoff(&self.config, failures)
                }
            };
            // While backing off, new rows do not cut the wait short: the
            // destination is down for them too.
            let backing_off = failures > 0;
            let notified = async {
                match listener.as_mut() {
                    Some(conn) if !backing_off => {
                        let mut stream = std::pin::pin!(conn.notifications_stream());
                        matches!(stream.next().await, Some(Ok(_)))
                    }
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                alive = notified => if !alive { listener = None; },
                _ = tokio::time::sleep(wait) => {},
                changed = shutdown.changed() => if changed.is_err() { break },
            }
        }
        self.flush().await;
        tracing::debug!(destination = %self.name, "outbox relay stopped");
    }

    /// Shutdown: deliver what is due, a few batches at most, without retries.
    async fn flush(&self) {
        for _ in 0..10 {
            match self.drain_once().await {
                Ok(Drained::Delivered(n)) if n as i64 == self.config.batch_size => continue,
                _ => return,
            }
        }
    }

    /// Sets the backlog, parked and oldest-pending gauges of this relay.
    async fn export_backlog(&self) {
        let Ok(mut conn) = self.pool.get().await else {
            return;
        };
        if let Ok(Some(b)) = super::admin::backlog(&mut conn, &self.name).await {
            let labels = crate::metrics::relay_labels(&self.schema, &self.name);
            crate::metrics::OUTBOX_BACKLOG.set(&labels, b.pending as f64);
            crate::metrics::OUTBOX_PARKED_ROWS.set(&labels, b.parked as f64);
            crate::metrics::OUTBOX_OLDEST_AGE.set(&labels, b.oldest_pending_seconds);
        }
    }

    async fn listen(&self) -> Option<AsyncPgConnection> {
        let mut conn = match crate::db::connect(&self.database_url, &self.schema).await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay cannot listen; polling");
                return None;
            }
        };
        diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
            .execute(&mut conn)
            .await
            .ok()?;
        Some(conn)
    }

    /// Delivers one batch of due rows. Rows are locked (SKIP LOCKED) for the
    /// duration so that several replicas share the work without overlap.
    async fn drain_once(&self) -> Result<Drained, Box<dyn std::error::Error + Send + Sync>> {
        let mut conn = self.pool.get().await?;
        let destination = self.destination.clone();
        let name = self.name.clone();
        let labels = crate::metrics::relay_labels(&self.schema, &self.name);
        let config = self.config.clone();
        let drained = conn
            .transaction::<_, diesel::result::Error, _>(async move |conn| {
                let rows: Vec<(i64, Vec<u8>, i32, Option<String>)> = o::outbox
                    .filter(o::destination.eq(&name))
                    .filter(o::next_attempt_at.le(diesel::dsl::now))
                    .filter(o::parked_at.is_null())
                    .order(o::id)
                    .limit(config.batch_size)
                    .select((o::id, o::payload, o::attempts, o::traceparent))
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                if rows.is_empty() {
                    return Ok(Drained::Delivered(0));
                }
                let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
                let attempts = rows.iter().map(|r| r.2).max().unwrap_or(0) as u32;
                let payloads: Vec<Vec<u8>> = rows.iter().map(|r| r.1.clone()).collect();
                // The delivery continues the trace of the batch's first
                // change, and links the others'.
                let span = tracing::info_span!("outbox.deliver", destination = %name, rows = rows.len());
                let mut traces = rows.iter().filter_map(|r| r.3.as_deref());
                if let Some(first) = traces.next() {
                    crate::telemetry::set_parent_traceparent(&span, first);
                }
                for other in traces {
                    crate::telemetry::link_traceparent(&span, other);
                }
                use tracing::Instrument;
                match destination.deliver(payloads).instrument(span.clone()).await {
                    Ok(()) => {
                        delete(conn, &ids).await?;
                        crate::metrics::OUTBOX_DELIVERED.add(&labels, ids.len() as u64);
                        tracing::debug!(destination = %name, count = ids.len(), "outbox batch delivered");
                        Ok(Drained::Delivered(ids.len()))
                    }
                    Err(DeliveryError::Rejected(why)) => {
                        // Some row's content is refused: find it, deliver the
                        // rest, park the refused ones.
                        tracing::warn!(destination = %name, error = %why, "outbox batch rejected; delivering one by one");
                        let mut delivered = 0;
                        for (id, payload, _, _) in rows {
                            match destination.deliver(vec![payload]).instrument(span.clone()).await {
                                Ok(()) => {
                                    delete(conn, &[id]).await?;
                                    delivered += 1;
                                }
                                Err(DeliveryError::Rejected(why)) => {
                                    tracing::error!(
                                        destination = %name, outbox_id = id, error = %why,
                                        "outbox row refused by its destination: PARKED, not retried; inspect with `steward outbox list`, replay with `steward outbox replay`"
                                    );
                                    crate::metrics::OUTBOX_PARKED.inc(&labels);
                                    park(conn, id, &why).await?;
                                }
                                Err(err) => {
                                    reschedule(conn, &[id], &config, attempts, &err.to_string()).await?;
                                    return Ok(Drained::Failed);
                                }
                            }
                        }
                        Ok(Drained::Delivered(delivered))
                    }
                    Err(err) => {
                        crate::metrics::OUTBOX_FAILURES.inc(&labels);
                        tracing::warn!(destination = %name, error = %err, attempts, "outbox delivery failed; retrying");
                        reschedule(conn, &ids, &config, attempts, &err.to_string()).await?;
                        Ok(Drained::Failed)
                    }
                }
            })
            .await?;
        Ok(drained)
    }
}

async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<()> {
    diesel::delete(o::outbox.filter(o::id.eq_any(ids)))
        .execute(conn)
        .await
        .map(|_| ())
}

async fn reschedule(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    config: &RelayConfig,
    attempts: u32,
    error: &str,
) -> QueryResult<()> {
    let delay = backoff(config, attempts + 1);
    let retry_at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    diesel::update(o::outbox.filter(o::id.eq_any(ids)))
        .set((
            o::attempts.eq(o::attempts + 1),
            o::next_attempt_at.eq(retry_at),
            o::last_error.eq(error),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Keeps a refused row for an operator but stops retrying it.
async fn park(conn: &mut AsyncPgConnection, id: i64, error: &str) -> QueryResult<()> {
    diesel::update(o::outbox.find(id))
        .set((
            o::attempts.eq(o::attempts + 1),
            o::parked_at.eq(diesel::dsl::now),
            o::last_error.eq(error),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let config = RelayConfig {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RelayConfig::default()
        };
        assert_eq!(backoff(&config, 1), Duration::from_millis(100));
        assert_eq!(backoff(&config, 2), Duration::from_millis(200));
        assert_eq!(backoff(&config, 4), Duration::from_millis(800));
        assert_eq!(backoff(&config, 5), Duration::from_secs(1));
        assert_eq!(backoff(&config, 500), Duration::from_secs(1));
    }
}
