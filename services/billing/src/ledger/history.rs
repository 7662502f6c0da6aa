//! The funding history: a user's entries newest first, keyset-paged, and
//! the period's totals per operation (the read side of the ledger).

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{Entry, dec};
use crate::domain::{BalanceType, Operation};

/// Keyset position in the funding history (newest first), with the period
/// of the first page (its defaults are relative to "now").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = SqlUuid)]
    entry_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Text)]
    operation: String,
    #[diesel(sql_type = Text)]
    balance_type: String,
    #[diesel(sql_type = Text)]
    amount: String,
    #[diesel(sql_type = Text)]
    balance_after: String,
    #[diesel(sql_type = Text)]
    actor_user_id: String,
    #[diesel(sql_type = Text)]
    notes: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// A user's entries in `[start, end)`, newest first.
pub async fn history(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    operations: &[Operation],
    after: Option<Cursor>,
    limit: i64,
) -> QueryResult<Vec<Entry>> {
    let ops: Vec<&str> = operations.iter().map(|o| o.as_str()).collect();
    let (after_at, after_id) = after
        .map(|c| (c.created_at, c.id))
        .unwrap_or((end, i64::MAX));
    let rows: Vec<EntryRow> = diesel::sql_query(
        "SELECT id, entry_id, user_id, operation, balance_type, amount::text AS amount,
                balance_after::text AS balance_after, actor_user_id, notes, created_at
         FROM ledger
         WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
           AND (cardinality($4::text[]) = 0 OR operation = ANY($4))
           AND (created_at, id) < ($5, $6)
         ORDER BY created_at DESC, id DESC
         LIMIT $7",
    )
    .bind::<SqlUuid, _>(user_id)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .bind::<Array<Text>, _>(ops)
    .bind::<Timestamptz, _>(after_at)
    .bind::<BigInt, _>(after_id)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Entry {
            id: r.id,
            entry_id: r.entry_id,
            user_id: r.user_id,
            operation: r.operation.parse().unwrap_or(Operation::Charge),
            balance_type: r.balance_type.parse().unwrap_or(BalanceType::Main),
            amount: dec(&r.amount),
            balance_after: dec(&r.balance_after),
            actor_user_id: r.actor_user_id,
            notes: r.notes,
            created_at: r.created_at,
        })
        .collect())
}

/// Count and sum per operation over `[start, end)`.
pub async fn totals(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    operations: &[Operation],
) -> QueryResult<Vec<(Operation, i64, Decimal)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        operation: String,
        #[diesel(sql_type = BigInt)]
        count: i64,
        #[diesel(sql_type = Text)]
        amount: String,
    }
    let ops: Vec<&str> = operations.iter().map(|o| o.as_str()).collect();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT operation, count(*) AS count, sum(amount)::text AS amount FROM ledger
         WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
           AND (cardinality($4::text[]) = 0 OR operation = ANY($4))
         GROUP BY operation ORDER BY operation",
    )
    .bind::<SqlUuid, _>(user_id)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .bind::<Array<Text>, _>(ops)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.operation.parse().ok()?, r.count, dec(&r.amount))))
        .collect())
}
