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

/// Drops every partition whose whole month is older than the longest
/// retention: no policy can still want any of its rows.
pub async fn drop_expired_partitions(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<String>> {
    let longest = list(conn)
        .await?
        .iter()
        .map(|p| p.days)
        .max()
        .unwrap_or(i32::MAX);
    let cutoff = (now - Duration::days(longest.into())).date_naive();
    let mut dropped = Vec::new();
    for partition in partitions::list(conn).await? {
        if partitions::next_month(partition.month) <= cutoff {
            tombstone_partition(conn, &partition).await?;
            partitions::drop(conn, &partition).await?;
            dropped.push(partition.name);
        }
    }
    Ok(dropped)
}

/// Keeps the links from rows of `partition` to successors outside it.
async fn tombstone_partition(
    conn: &mut AsyncPgConnection,
    partition: &Partition,
) -> QueryResult<()> {
    conn.batch_execute(&format!(
        "INSERT INTO chain_tombstones (seq, prev_hash, hash)
         SELECT p.seq, p.prev_hash, p.hash FROM {name} p
         WHERE EXISTS (SELECT 1 FROM events e WHERE e.seq = p.seq + 1
                       AND NOT (e.occurred_at >= '{from}' AND e.occurred_at < '{to}'))
         ON CONFLICT (seq) DO NOTHING",
        name = partition.name,
        from = partition.month,
        to = partitions::next_month(partition.month),
    ))
    .await
}

/// Deletes up to `batch` events past their own policy's retention; returns
/// how many. Call repeatedly (each call is its own short transaction).
pub async fn trim_batch(
    conn: &mut AsyncPgConnection,
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
    let doomed: Vec<i64> = diesel::sql_query(
        "SELECT e.seq FROM events e
         WHERE e.occurred_at < $1
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
    .load::<Seq>(conn)
    .await?
    .into_iter()
    .map(|s| s.seq)
    .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "INSERT INTO chain_tombstones (seq, prev_hash, hash)
         SELECT e.seq, e.prev_hash, e.hash FROM events e
         WHERE e.seq = ANY($1)
           AND EXISTS (SELECT 1 FROM events n WHERE n.seq = e.seq + 1 AND NOT n.seq = ANY($1))
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind::<Array<Int8>, _>(&doomed)
    .execute(conn)
    .await?;
    diesel::sql_query("DELETE FROM events WHERE seq = ANY($1)")
        .bind::<Array<Int8>, _>(&doomed)
        .execute(conn)
        .await
}
