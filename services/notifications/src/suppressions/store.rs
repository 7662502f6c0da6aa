//! Suppression list queries.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, Clone, QueryableByName)]
pub struct Suppression {
    #[diesel(sql_type = Text)]
    pub address: String,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub mail_id: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    pub create_time: DateTime<Utc>,
}

/// Which of `addresses` (normalized) are suppressed.
pub async fn suppressed(
    conn: &mut AsyncPgConnection,
    addresses: &[String],
) -> QueryResult<HashSet<String>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        address: String,
    }
    if addresses.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT address FROM suppressions WHERE address = ANY($1)")
            .bind::<Array<Text>, _>(addresses)
            .load(conn)
            .await?;
    Ok(rows.into_iter().map(|r| r.address).collect())
}

/// Suppresses `address`; a second bounce keeps the first entry.
pub async fn add(
    conn: &mut AsyncPgConnection,
    address: &str,
    reason: &str,
    mail_id: Uuid,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO suppressions (address, reason, mail_id) VALUES ($1, $2, $3)
         ON CONFLICT (address) DO NOTHING",
    )
    .bind::<Text, _>(address)
    .bind::<Text, _>(reason)
    .bind::<SqlUuid, _>(mail_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// `true` when an entry was removed.
pub async fn delete(conn: &mut AsyncPgConnection, address: &str) -> QueryResult<bool> {
    let n = diesel::sql_query("DELETE FROM suppressions WHERE address = $1")
        .bind::<Text, _>(address)
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// Entries by address after `after`, optionally starting with `prefix`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Suppression>> {
    diesel::sql_query(
        "SELECT address, reason, mail_id, create_time FROM suppressions
         WHERE ($1::text IS NULL OR starts_with(address, $1))
           AND ($2::text IS NULL OR address > $2)
         ORDER BY address LIMIT $3",
    )
    .bind::<Nullable<Text>, _>(prefix)
    .bind::<Nullable<Text>, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}
