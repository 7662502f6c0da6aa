//! Idempotency keys: a retried command returns the first execution's
//! response instead of applying twice.
//!
//! Use inside the command's transaction: [`claim`] first, [`complete`] last.
//! A concurrent duplicate blocks on the key's row until the first commits,
//! then replays; a rolled-back first attempt leaves no key behind.

use crate::db::Prepare;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::schema::idempotency_keys::dsl as k;

#[derive(Debug)]
pub enum Claim {
    /// First time: execute, then [`complete`].
    New,
    /// Seen before with the same request: return this response.
    Replay(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used before for a different request.
    #[error("idempotency key reused with a different request")]
    Mismatch,
    /// The stored response no longer decodes (a contract change).
    #[error("stored response does not decode: {0}")]
    Decode(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// A digest of the request message: a key reused for another request is
/// refused rather than silently answered with the wrong response.
pub fn fingerprint<M: Message>(request: &M) -> Vec<u8> {
    Sha256::digest(request.encode_to_vec()).to_vec()
}

pub async fn claim(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
    fingerprint: &[u8],
) -> Result<Claim, IdempotencyError> {
    let inserted = diesel::insert_into(k::idempotency_keys)
        .values((
            k::scope.eq(scope),
            k::key.eq(key),
            k::fingerprint.eq(fingerprint),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let (stored_fingerprint, response): (Vec<u8>, Option<Vec<u8>>) = k::idempotency_keys
        .filter(k::scope.eq(scope).and(k::key.eq(key)))
        .select((k::fingerprint, k::response))
        .first(conn)
        .await?;
    if stored_fingerprint != fingerprint {
        return Err(IdempotencyError::Mismatch);
    }
    Ok(Claim::Replay(response.unwrap_or_default()))
}

/// Claims `key` (no-op when empty); `Some` is the first execution's
/// response, to return instead of executing again.
pub async fn replay<M: Message + Default>(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<M>, IdempotencyError> {
    if key.is_empty() {
        return Ok(None);
    }
    match claim(conn, scope, key, fingerprint).await? {
        Claim::New => Ok(None),
        Claim::Replay(bytes) => M::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| IdempotencyError::Decode(e.to_string())),
    }
}

/// Stores the response of a claimed key (no-op when empty).
pub async fn remember<M: Message>(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
    response: &M,
) -> QueryResult<()> {
    if key.is_empty() {
        return Ok(());
    }
    complete(conn, scope, key, response).await
}

pub async fn complete<M: Message>(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
    response: &M,
) -> QueryResult<()> {
    diesel::update(k::idempotency_keys.filter(k::scope.eq(scope).and(k::key.eq(key))))
        .set(k::response.eq(response.encode_to_vec()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// [`claim`] for many distinct keys in two statements (a batch of commands
/// sharing one transaction), in the order given. Claims take the keys' row
/// locks in (scope, key) order whatever that order is, so two batches never
/// deadlock on each other's keys.
pub async fn claim_many(
    mut conn: &AsyncPgConnection,
    keys: &[(&str, &str, &[u8])],
) -> Result<Vec<Result<Claim, IdempotencyError>>, IdempotencyError> {
    use diesel::sql_types::{Array, Bytea, Nullable, Text};

    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = Text)]
        scope: String,
        #[diesel(sql_type = Text)]
        key: String,
    }
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Text)]
        scope: String,
        #[diesel(sql_type = Text)]
        key: String,
        #[diesel(sql_type = Bytea)]
        fingerprint: Vec<u8>,
        #[diesel(sql_type = Nullable<Bytea>)]
        response: Option<Vec<u8>>,
    }

    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&(&str, &str, &[u8])> = keys.iter().collect();
    sorted.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let scopes: Vec<&str> = sorted.iter().map(|k| k.0).collect();
    let names: Vec<&str> = sorted.iter().map(|k| k.1).collect();
    let prints: Vec<&[u8]> = sorted.iter().map(|k| k.2).collect();
    let claimed: Vec<Claimed> = diesel::sql_query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[])
         ON CONFLICT DO NOTHING
         RETURNING scope, key",
    )
    .bind::<Array<Text>, _>(&scopes)
    .bind::<Array<Text>, _>(&names)
    .bind::<Array<Bytea>, _>(&prints)
    .prepared()
    .load(&mut conn)
    .await?;
    let claimed: std::collections::HashSet<(String, String)> =
        claimed.into_iter().map(|c| (c.scope, c.key)).collect();
    let mut stored = std::collections::HashMap::new();
    if claimed.len() < keys.len() {
        let rows: Vec<Stored> = diesel::sql_query(
            "SELECT k.scope, k.key, k.fingerprint, k.response
             FROM idempotency_keys k JOIN UNNEST($1::text[], $2::text[]) AS q(s, n)
               ON k.scope = q.s AND k.key = q.n",
        )
        .bind::<Array<Text>, _>(&scopes)
        .bind::<Array<Text>, _>(&names)
        .prepared()
        .load(&mut conn)
        .await?;
        for r in rows {
            stored.insert((r.scope, r.key), (r.fingerprint, r.response));
        }
    }
    Ok(keys
        .iter()
        .map(|(scope, key, fingerprint)| {
            let id = ((*scope).to_owned(), (*key).to_owned());
            if claimed.contains(&id) {
                return Ok(Claim::New);
            }
            match stored.get(&id) {
                Some((stored, _)) if stored.as_slice() != *fingerprint => {
                    Err(IdempotencyError::Mismatch)
                }
                Some((_, response)) => Ok(Claim::Replay(response.clone().unwrap_or_default())),
                // Neither inserted nor found: not possible under the lock
                // the insert waited for, but never answer with a guess.
                None => Err(IdempotencyError::Database(diesel::result::Error::NotFound)),
            }
        })
        .collect())
}

/// [`complete`] for many claimed keys in one statement.
pub async fn complete_many(
    mut conn: &AsyncPgConnection,
    responses: &[(&str, &str, Vec<u8>)],
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Bytea, Text};

    if responses.is_empty() {
        return Ok(());
    }
    let scopes: Vec<&str> = responses.iter().map(|r| r.0).collect();
    let names: Vec<&str> = responses.iter().map(|r| r.1).collect();
    let bodies: Vec<&[u8]> = responses.iter().map(|r| r.2.as_slice()).collect();
    diesel::sql_query(
        "UPDATE idempotency_keys k SET response = q.r
         FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS q(s, n, r)
         WHERE k.scope = q.s AND k.key = q.n",
    )
    .bind::<Array<Text>, _>(&scopes)
    .bind::<Array<Text>, _>(&names)
    .bind::<Array<Bytea>, _>(&bodies)
    .prepared()
    .execute(&mut conn)
    .await
    .map(|_| ())
}

/// Gives claimed keys back (their commands were refused): what a rollback
/// does for a command in a transaction of its own, so a retry executes.
pub async fn release_many(mut conn: &AsyncPgConnection, keys: &[(&str, &str)]) -> QueryResult<()> {
    use diesel::sql_types::{Array, Text};

    if keys.is_empty() {
        return Ok(());
    }
    let scopes: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.1).collect();
    diesel::sql_query(
        "DELETE FROM idempotency_keys k USING UNNEST($1::text[], $2::text[]) AS q(s, n)
         WHERE k.scope = q.s AND k.key = q.n",
    )
    .bind::<Array<Text>, _>(&scopes)
    .bind::<Array<Text>, _>(&names)
    .prepared()
    .execute(&mut conn)
    .await
    .map(|_| ())
}

/// Forgets keys older than `retention` (a retry after that executes again).
pub async fn purge(
    conn: &mut AsyncPgConnection,
    retention: std::time::Duration,
) -> QueryResult<usize> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    diesel::delete(k::idempotency_keys.filter(k::created_at.lt(cutoff)))
        .execute(conn)
        .await
}

/// Purges expired keys every hour until `shutdown` turns true.
pub async fn run_purger(
    pool: crate::db::Pool,
    retention: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let pass = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            purge(&mut conn, retention).await.map_err(|e| e.to_string())
        };
        match pass.await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "purged expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "idempotency key purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {},
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}
