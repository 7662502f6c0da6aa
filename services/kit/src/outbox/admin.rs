//! What an operator does with a service's outbox: see the backlog, list and
//! inspect parked rows, replay them (`steward outbox list|show|replay`).

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{BigInt, Double, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use uuid::Uuid;

use crate::schema::outbox::dsl as o;

/// One destination's queue.
#[derive(Debug, Clone, QueryableByName)]
pub struct Backlog {
    #[diesel(sql_type = Text)]
    pub destination: String,
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    #[diesel(sql_type = BigInt)]
    pub parked: i64,
    /// Seconds since the oldest pending row was written (0 when none).
    #[diesel(sql_type = Double)]
    pub oldest_pending_seconds: f64,
}

const BACKLOG: &str = "SELECT destination,
        count(*) FILTER (WHERE parked_at IS NULL) AS pending,
        count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,
        COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)), 0)::float8
            AS oldest_pending_seconds
    FROM outbox";

pub async fn backlogs(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Backlog>> {
    diesel::sql_query(format!(
        "{BACKLOG} GROUP BY destination ORDER BY destination"
    ))
    .load(conn)
    .await
}

pub async fn backlog(
    conn: &mut AsyncPgConnection,
    destination: &str,
) -> QueryResult<Option<Backlog>> {
    diesel::sql_query(format!(
        "{BACKLOG} WHERE destination = $1 GROUP BY destination"
    ))
    .bind::<Text, _>(destination)
    .load(conn)
    .await
    .map(|rows: Vec<Backlog>| rows.into_iter().next())
}

#[derive(Debug, Clone, Queryable)]
pub struct ParkedRow {
    pub id: i64,
    pub destination: String,
    pub event_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub parked_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

pub async fn parked(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<ParkedRow>> {
    o::outbox
        .filter(o::parked_at.is_not_null())
        .order(o::id)
        .limit(limit)
        .select((
            o::id,
            o::destination,
            o::event_id,
            o::created_at,
            o::attempts,
            o::parked_at,
            o::last_error,
        ))
        .load(conn)
        .await
}

/// A row's payload, decoded for a human when its destination is known.
pub async fn show(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<(ParkedRow, String)>> {
    let row: Option<(ParkedRow, Vec<u8>)> = o::outbox
        .find(id)
        .select((
            (
                o::id,
                o::destination,
                o::event_id,
                o::created_at,
                o::attempts,
                o::parked_at,
                o::last_error,
            ),
            o::payload,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(row, payload)| {
        let text = match row.destination.as_str() {
            super::AUDIT => steward_proto::audit::AuditEvent::decode(payload.as_slice())
                .map(|e| format!("{e:#?}"))
                .unwrap_or_else(|e| {
                    format!(
                        "(does not decode as an audit event: {e}) {}",
                        hex::encode(&payload)
                    )
                }),
            super::NOTIFICATIONS => {
                steward_proto::notifications::Notification::decode(payload.as_slice())
                    .map(|n| format!("{n:#?}"))
                    .unwrap_or_else(|e| {
                        format!(
                            "(does not decode as a notification: {e}) {}",
                            hex::encode(&payload)
                        )
                    })
            }
            _ => hex::encode(&payload),
        };
        (row, text)
    }))
}

/// Makes parked rows due again (all when `ids` is empty); returns how many.
pub async fn replay(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    let set = (
        o::parked_at.eq(None::<DateTime<Utc>>),
        o::next_attempt_at.eq(diesel::dsl::now),
    );
    let parked = o::outbox.filter(o::parked_at.is_not_null());
    let count = if ids.is_empty() {
        diesel::update(parked).set(set).execute(conn).await?
    } else {
        diesel::update(parked.filter(o::id.eq_any(ids)))
            .set(set)
            .execute(conn)
            .await?
    };
    if count > 0 {
        diesel::sql_query("SELECT pg_notify($1, 'replay')")
            .bind::<Text, _>(super::NOTIFY_CHANNEL)
            .execute(conn)
            .await?;
    }
    Ok(count)
}
