//! The `chain_head` row: the last sequence and hash, signed. Locking it
//! serialises appends (across replicas too).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::{
    chain::Hash,
    seal::{ChainSigner, checkpoint_message},
};

/// Locks the chain head for the rest of the transaction: appends are
/// serialised (across replicas too), which is what makes the chain linear.
pub async fn lock_head(mut conn: &AsyncPgConnection) -> QueryResult<(i64, Hash)> {
    use super::schema::chain_head::dsl as h;
    let (seq, hash): (i64, Vec<u8>) = h::chain_head
        .select((h::seq, h::hash))
        .for_update()
        .first(&mut conn)
        .await?;
    Ok((seq, hash.try_into().unwrap_or([0; 32])))
}

/// Moves the head and signs it (a checkpoint of the chain in the database:
/// a rewrite of history cannot be signed again without the key).
pub async fn set_head(
    mut conn: &AsyncPgConnection,
    signer: &ChainSigner,
    seq: i64,
    hash: &Hash,
) -> QueryResult<()> {
    use super::schema::chain_head::dsl as h;
    let (at, signature) = signed_now(signer, seq, hash);
    diesel::update(h::chain_head)
        .set((
            h::seq.eq(seq),
            h::hash.eq(hash.as_slice()),
            h::signed_at.eq(Some(at)),
            h::signature.eq(Some(signature)),
        ))
        .execute(&mut conn)
        .await
        .map(|_| ())
}

/// The time a head moved to (`seq`, `hash`), to the microsecond the
/// column keeps, and the signature over the three; also used by the COPY
/// path (`copy.rs`).
pub fn signed_now(signer: &ChainSigner, seq: i64, hash: &Hash) -> (DateTime<Utc>, Vec<u8>) {
    let at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default();
    let signature = signer.sign(&checkpoint_message(seq, hash, at.timestamp_micros()));
    (at, signature)
}

/// The head as stored: (seq, hash, signed_at, signature).
pub type Head = (i64, Vec<u8>, Option<DateTime<Utc>>, Option<Vec<u8>>);

pub async fn head(conn: &mut AsyncPgConnection) -> QueryResult<Head> {
    use super::schema::chain_head::dsl as h;
    h::chain_head
        .select((h::seq, h::hash, h::signed_at, h::signature))
        .first(conn)
        .await
}
