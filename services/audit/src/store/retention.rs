//! Retention: policies, whole-partition drops and small-batch trims, with
//! tombstones so the chain still verifies across removed events.

use chrono::{DateTime, Duration, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{Array, Int8},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::{
    partitions::{self, Partition},
    schema::retention_policies::dsl as r,
};
use crate::domain::seal::{ChainSigner, tombstone_message};

#[derive(QueryableByName)]
struct Link {
    #[diesel(sql_type = Int8)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    prev_hash: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    hash: Vec<u8>,
}

/// Stores the tombstones of removed events, each signed with the chain key:
/// a tombstone without that signature is a forgery covering a deletion.
async fn insert_tombstones(
    conn: &mut AsyncPgConnection,
    signer: &ChainSigner,
    links: Vec<Link>,
) -> QueryResult<()> {
    if links.is_empty() {
        return Ok(());
    }
    let signatures: Vec<Vec<u8>> = links
        .iter()
        .map(|l| signer.sign(&tombstone_message(l.seq, &l.prev_hash, &l.hash)))
        .collect();
    let (seqs, prevs, hashes): (Vec<i64>, Vec<Vec<u8>>, Vec<Vec<u8>>) = links
        .into_iter()
        .map(|l| (l.seq, l.prev_hash, l.hash))
        .fold(
            (vec![], vec![], vec![]),
            |(mut a, mut b, mut c), (x, y, z)| {
                a.push(x);
                b.push(y);
                c.push(z);
                (a, b, c)
            },
        );
    diesel::sql_query(
        "INSERT INTO chain_tombstones (seq, prev_hash, hash, signature)
         SELECT * FROM UNNEST($1::int8[], $2::bytea[], $3::bytea[], $4::bytea[])
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind::<Array<Int8>, _>(seqs)
    .bind::<Array<diesel::sql_types::Bytea>, _>(prevs)
    .bind::<Array<diesel::sql_types::Bytea>, _>(hashes)
    .bind::<Array<diesel::sql_types::Bytea>, _>(signatures)
    .execute(conn)
    .await
    .map(|_| ())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// '' = any product.
    pub product: String,
    /// 0 = any category.
    pub category: i16,
    pub days: i32,
}

pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Policy>> {
    r::retention_policies
        .select((r::product, r::category, r::retention_days))
        .order((r::product, r::category))
        .load::<(String, i16, i32)>(conn)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|(product, category, days)| Policy {
                    product,
                    category,
                    days,
                })
                .collect()
        })
}

pub async fn set(conn: &mut AsyncPgConnection, policy: &Policy) -> QueryResult<()> {
    diesel::insert_into(r::retention_policies)
        .values((
            r::product.eq(&policy.product),
            r::category.eq(policy.category),
            r::retention_days.eq(policy.days),
        ))
        .on_conflict((r::product, r::category))
        .do_update()
        .set(r::retention_days.eq(policy.days))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Locks the chain head for the rest of the transaction (retention and
/// appends serialise, so a successor cannot appear mid-deletion) and
/// returns its sequence: the newest event is never removed.
async fn lock_head(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    use super::schema::chain_head::dsl as h;
    h::chain_head.select(h::seq).for_update().first(conn).await
}

/// Drops every partition whose whole month is older than the longest
/// retention: no policy can still want any of its rows. Each drop is its
/// own transaction; a partition holding the newest event is kept.
pub async fn drop_expired_partitions(
    conn: &mut AsyncPgConnection,
    signer: &ChainSigner,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Partition>> {
    use diesel_async::AsyncConnection;
    let longest = list(conn)
        .await?
        .iter()
        .map(|p| p.days)
        .max()
        .unwrap_or(i32::MAX);
    let cutoff = (now - Duration::days(longest.into())).date_naive();
    let mut dropped = Vec::new();
    for partition in partitions::list(conn).await? {
        if partitions::next_month(partition.month) > cutoff {
            continue;
        }
        let gone = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let head = lock_head(conn).await?;
                if holds_seq(conn, &partition, head).await? {
                    return Ok(false);
                }
                tombstone_partition(conn, signer, &partition).await?;
                conn.batch_execute(&format!(
                    "DELETE FROM event_ids i USING {} p WHERE i.event_id = p.event_id",
                    partition.name
                ))
                .await?;
                partitions::drop(conn, &partition).await?;
                Ok(true)
            })
            .await?;
        if gone {
            dropped.push(partition);
        }
    }
    Ok(dropped)
}

async fn holds_seq(
    conn: &mut AsyncPgConnection,
    partition: &Partition,
    seq: i64,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE seq = $1) AS found",
        partition.name
    ))
    .bind::<Int8, _>(seq)
    .get_result::<Found>(conn)
    .await
    .map(|f| f.found)
}

/// Keeps the links from rows of `partition` to successors outside it.
async fn tombstone_partition(
    conn: &mut AsyncPgConnection,
    signer: &ChainSigner,
    partition: &Partition,
) -> QueryResult<()> {
    let links: Vec<Link> = diesel::sql_query(format!(
        "SELECT p.seq, p.prev_hash, p.hash FROM {name} p
         WHERE EXISTS (SELECT 1 FROM events e WHERE e.seq = p.seq + 1
                       AND NOT (e.occurred_at >= '{from}' AND e.occurred_at < '{to}'))",
        name = partition.name,
        from = partition.month,
        to = partitions::next_month(partition.month),
    ))
    .load(conn)
    .await?;
    insert_tombstones(conn, signer, links).await
}

/// Deletes up to `batch` events past their own policy's retention; returns
/// how many. Call repeatedly (each call is its own short transaction).
pub async fn trim_batch(
    conn: &mut AsyncPgConnection,
    signer: &ChainSigner,
    now: DateTime<Utc>,
    batch: i64,
) -> QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = Int8)]
        seq: i64,
    }
    let shortest = list(conn)
        .await?
        .iter()
        .map(|p| p.days)
        .min()
        .unwrap_or(i32::MAX);
    let horizon = now - Duration::days(shortest.into());
    let head = lock_head(conn).await?;
    let doomed: Vec<i64> = diesel::sql_query(
        "SELECT e.seq FROM events e
         WHERE e.occurred_at < $1 AND e.seq <> $4
           AND e.occurred_at < $2 - make_interval(days => (
               SELECT p.retention_days FROM retention_policies p
               WHERE (p.product = e.product OR p.product = '')
                 AND (p.category = e.category OR p.category = 0)
               ORDER BY (p.product <> '') DESC, (p.category <> 0) DESC
               LIMIT 1))
         LIMIT $3",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(horizon)
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .bind::<Int8, _>(batch)
    .bind::<Int8, _>(head)
    .load::<Seq>(conn)
    .await?
    .into_iter()
    .map(|s| s.seq)
    .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let links: Vec<Link> = diesel::sql_query(
        "SELECT e.seq, e.prev_hash, e.hash FROM events e
         WHERE e.seq = ANY($1)
           AND EXISTS (SELECT 1 FROM events n WHERE n.seq = e.seq + 1 AND NOT n.seq = ANY($1))",
    )
    .bind::<Array<Int8>, _>(&doomed)
    .load(conn)
    .await?;
    insert_tombstones(conn, signer, links).await?;
    diesel::sql_query(
        "DELETE FROM event_ids WHERE event_id IN (SELECT event_id FROM events WHERE seq = ANY($1))",
    )
    .bind::<Array<Int8>, _>(&doomed)
    .execute(conn)
    .await?;
    diesel::sql_query("DELETE FROM events WHERE seq = ANY($1)")
        .bind::<Array<Int8>, _>(&doomed)
        .execute(conn)
        .await
}
