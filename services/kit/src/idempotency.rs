//! Idempotency keys: a retried command returns the first execution's
//! response instead of applying twice.
//!
//! Use inside the command's transaction: [`claim`] first, [`complete`] last.
//! A concurrent duplicate blocks on the key's row until the first commits,
//! then replays; a rolled-back first attempt leaves no key behind.

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
