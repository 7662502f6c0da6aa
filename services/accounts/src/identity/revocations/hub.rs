//! The fan-out behind `WatchRevocations`: one LISTEN connection per
//! accounts process, each notification broadcast to every subscriber.
//!
//! A subscriber gets the live entries first (a snapshot read after it
//! subscribed to the broadcast, so nothing committed in between is lost;
//! duplicates are harmless), then each new entry. When it falls behind the
//! broadcast, or the LISTEN connection was re-established (notifications
//! may have been missed meanwhile), it gets a fresh snapshot instead. Every
//! stream ends when the server stops, so that shutdown does not wait on
//! them.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use steward_kit::{Commands, auth::revocations::Entry};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use super::store;
use crate::error::Error;

/// How often expired entries are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// Wait before listening again after the connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Every live entry: replaces what the subscriber holds.
    Snapshot(Vec<Entry>),
    Added(Vec<Entry>),
}

#[derive(Debug, Clone)]
enum Signal {
    Added(Entry),
    /// Notifications may have been missed: send a snapshot.
    Resync,
}

/// Resolves when `stopped` turns true (or its sender is gone).
async fn stop_signal(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[derive(Clone)]
pub struct Hub {
    commands: Commands,
    database_url: String,
    sender: broadcast::Sender<Signal>,
    stopped: watch::Receiver<bool>,
}

impl Hub {
    pub fn new(commands: Commands, database_url: &str, stopped: watch::Receiver<bool>) -> Self {
        Self {
            commands,
            database_url: database_url.to_owned(),
            sender: broadcast::channel(1024).0,
            stopped,
        }
    }

    /// Listens and broadcasts until stopped; purges expired entries now and
    /// then.
    pub async fn run(self) {
        let mut stopped = self.stopped.clone();
        let mut purge = tokio::time::interval(PURGE_INTERVAL);
        loop {
            if *stopped.borrow() {
                return;
            }
            let mut conn = match self.listen().await {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for revocations; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RELISTEN_DELAY) => continue,
                        _ = stop_signal(&mut stopped) => return,
                    }
                }
            };
            let _ = self.sender.send(Signal::Resync);
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            loop {
                tokio::select! {
                    notification = notifications.next() => match notification {
                        Some(Ok(n)) => match store::decode(&n.payload) {
                            Some(entry) => { let _ = self.sender.send(Signal::Added(entry)); }
                            None => tracing::warn!(payload = n.payload, "ignoring a malformed revocation notification"),
                        },
                        _ => {
                            tracing::warn!("revocation LISTEN connection lost; listening again");
                            break;
                        }
                    },
                    _ = purge.tick() => self.purge().await,
                    _ = stop_signal(&mut stopped) => return,
                }
            }
        }
    }

    async fn listen(&self) -> Result<diesel_async::AsyncPgConnection, String> {
        let mut conn = steward_kit::db::connect(&self.database_url, crate::SCHEMA)
            .await
            .map_err(|e| e.to_string())?;
        diesel::sql_query(format!("LISTEN {}", store::NOTIFY_CHANNEL))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    async fn purge(&self) {
        match self
            .commands
            .read(async |conn| Ok(store::purge_expired(conn).await?))
            .await
        {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "expired revocations purged"),
            Err(error) => tracing::warn!(%error, "cannot purge expired revocations"),
        }
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, Error> {
        self.commands
            .read(async |conn| Ok(store::live(conn).await?))
            .await
    }

    /// A subscriber's updates: a snapshot, then new entries (batched when
    /// several are waiting), a fresh snapshot after any gap; an error ends
    /// it.
    pub fn watch(&self) -> ReceiverStream<Result<Update, Error>> {
        let mut signals = self.sender.subscribe();
        let (out, stream) = mpsc::channel(16);
        let hub = self.clone();
        tokio::spawn(async move {
            let mut stopped = hub.stopped.clone();
            let mut snapshot_due = true;
            loop {
                if snapshot_due {
                    snapshot_due = false;
                    let update = hub.snapshot().await.map(Update::Snapshot);
                    let failed = update.is_err();
                    if out.send(update).await.is_err() || failed {
                        return;
                    }
                }
                let update = tokio::select! {
                    signal = signals.recv() => signal,
                    _ = out.closed() => return,
                    _ = stop_signal(&mut stopped) => return,
                };
                let mut added = Vec::new();
                let mut next = update;
                loop {
                    match next {
                        Ok(Signal::Added(entry)) => added.push(entry),
                        Ok(Signal::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            snapshot_due = true;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    match signals.try_recv() {
                        Ok(signal) => next = Ok(signal),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            next = Err(broadcast::error::RecvError::Lagged(n))
                        }
                        Err(_) => break,
                    }
                }
                if !snapshot_due
                    && !added.is_empty()
                    && out.send(Ok(Update::Added(added))).await.is_err()
                {
                    return;
                }
            }
        });
        ReceiverStream::new(stream)
    }
}
