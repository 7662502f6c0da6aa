//! Each replica's listener: LISTENs for changes, applies them to the cache
//! in order, and records (with its heartbeat) the highest change applied.

use std::{sync::Arc, time::Instant};

use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use super::{CHANNEL, Cache, Touched};

/// What one notification asks for.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Catalog,
    AllUsers,
    Users(Vec<Uuid>),
}

fn parse(payload: &str) -> Option<(i64, Change)> {
    let (seq, scope) = payload.split_once('|')?;
    let seq = seq.parse().ok()?;
    let change = match scope {
        "c" => Change::Catalog,
        "a" => Change::AllUsers,
        other => Change::Users(
            other
                .strip_prefix("u:")?
                .split(',')
                .map(Uuid::parse_str)
                .collect::<Result<_, _>>()
                .ok()?,
        ),
    };
    Some((seq, change))
}

/// Runs until `shutdown`; reconnects after a lost connection (the cache is
/// not used meanwhile), and removes this replica's row at the end.
pub async fn run(
    cache: Arc<Cache>,
    database_url: String,
    schema: &'static str,
    mut shutdown: watch::Receiver<bool>,
) {
    if !cache.config().enabled {
        return;
    }
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        match session(&cache, &database_url, schema, &mut shutdown).await {
            Ok(()) => break,
            Err(error) => {
                cache.fence_now();
                failures += 1;
                tracing::warn!(%error, replica = %cache.replica, "quota cache listener lost; answering from the database");
                let pause = std::time::Duration::from_millis(100 * u64::from(failures.min(20)));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {},
                    _ = shutdown.changed() => {},
                }
            }
        }
    }
    cache.fence_now();
    if let Ok(mut conn) = steward_kit::db::connect(&database_url, schema).await {
        let _ = diesel::sql_query("DELETE FROM cache_replicas WHERE replica_id = $1")
            .bind::<sql_types::Uuid, _>(cache.replica)
            .execute(&mut conn)
            .await;
    }
}

async fn session(
    cache: &Cache,
    database_url: &str,
    schema: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut conn = steward_kit::db::connect(database_url, schema).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    // Registered with the number current now: everything after it arrives
    // on this connection.
    diesel::sql_query(
        "INSERT INTO cache_replicas (replica_id, acked_seq, heartbeat_at) \
         SELECT $1, CASE WHEN is_called THEN last_value ELSE 0 END, now() FROM cache_seq \
         ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind::<sql_types::Uuid, _>(cache.replica)
    .execute(&mut conn)
    .await?;
    diesel::sql_query("DELETE FROM cache_replicas WHERE heartbeat_at < now() - interval '1 hour'")
        .execute(&mut conn)
        .await?;
    let mut applied = 0i64;
    let mut beat = Instant::now();
    heartbeat(cache, &mut conn, applied, beat).await?;
    loop {
        let mut batch = Vec::new();
        {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            let first = tokio::select! {
                n = tokio::time::timeout(cache.config().heartbeat, stream.next()) => n,
                _ = shutdown.changed() => return Ok(()),
            };
            match first {
                Ok(Some(n)) => batch.push(n?),
                Ok(None) => return Err("notification stream ended".into()),
                Err(_elapsed) => {}
            }
            // Whatever else has arrived already.
            while let Some(Some(n)) = stream.next().now_or_never() {
                batch.push(n?);
            }
        }
        let mut touched = Touched::default();
        for n in &batch {
            match parse(&n.payload) {
                Some((seq, change)) => {
                    applied = applied.max(seq);
                    match change {
                        Change::Catalog => touched.catalog = true,
                        Change::AllUsers => cache.clear_users(),
                        Change::Users(ids) => touched.users.extend(ids),
                    }
                }
                None => tracing::warn!(payload = %n.payload, "unreadable quota cache notification"),
            }
        }
        if !touched.is_empty() {
            cache.invalidate(&touched).await?;
        }
        if !batch.is_empty() || beat.elapsed() >= cache.config().heartbeat {
            beat = Instant::now();
            heartbeat(cache, &mut conn, applied, beat).await?;
        }
    }
}

/// Records `applied` and that this replica is alive; only then is the cache
/// usable (until `fence` after `started`).
async fn heartbeat(
    cache: &Cache,
    conn: &mut AsyncPgConnection,
    applied: i64,
    started: Instant,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let updated = diesel::sql_query(
        "UPDATE cache_replicas SET acked_seq = GREATEST(acked_seq, $2), heartbeat_at = now() \
         WHERE replica_id = $1",
    )
    .bind::<sql_types::Uuid, _>(cache.replica)
    .bind::<sql_types::BigInt, _>(applied)
    .execute(conn)
    .await?;
    if updated == 0 {
        return Err("replica row removed".into());
    }
    cache.alive_since(started).await?;
    steward_kit::metrics::QUOTAS_CACHE_USERS.set(
        &format!("replica=\"{}\"", cache.replica),
        cache.users_held() as f64,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        let id = Uuid::now_v7();
        assert_eq!(parse("7|c"), Some((7, Change::Catalog)));
        assert_eq!(parse("8|a"), Some((8, Change::AllUsers)));
        assert_eq!(
            parse(&format!("9|u:{id},{id}")),
            Some((9, Change::Users(vec![id, id])))
        );
        assert_eq!(parse("x|c"), None);
        assert_eq!(parse("1|u:nope"), None);
    }
}
