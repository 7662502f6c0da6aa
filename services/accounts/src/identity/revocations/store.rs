//! The `revocations` table and its NOTIFY channel.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use steward_kit::auth::revocations::{Entry, RevokedKind};

use crate::schema::revocations;

/// Carries each new row (see [`encode`]) at commit.
pub const NOTIFY_CHANNEL: &str = "accounts_revocations";

fn kind_name(kind: RevokedKind) -> &'static str {
    match kind {
        RevokedKind::User => "user",
        RevokedKind::Session => "session",
        RevokedKind::ApiToken => "api_token",
    }
}

fn kind_of(name: &str) -> Option<RevokedKind> {
    Some(match name {
        "user" => RevokedKind::User,
        "session" => RevokedKind::Session,
        "api_token" => RevokedKind::ApiToken,
        _ => return None,
    })
}

/// The NOTIFY payload: `kind|subject|not_before_ms|expires_at` (subjects
/// are UUIDs, never containing `|`).
pub fn encode(e: &Entry) -> String {
    format!(
        "{}|{}|{}|{}",
        kind_name(e.kind),
        e.subject,
        e.not_before_ms,
        e.expires_at
    )
}

pub fn decode(payload: &str) -> Option<Entry> {
    let mut parts = payload.split('|');
    let (Some(kind), Some(subject), Some(not_before), Some(expires), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(Entry {
        kind: kind_of(kind)?,
        subject: subject.to_owned(),
        not_before_ms: not_before.parse().ok()?,
        expires_at: expires.parse().ok()?,
    })
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = revocations, check_for_backend(diesel::pg::Pg))]
struct Row {
    kind: String,
    subject: String,
    not_before: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Row {
    fn entry(self) -> Option<Entry> {
        Some(Entry {
            kind: kind_of(&self.kind)?,
            subject: self.subject,
            not_before_ms: self.not_before.timestamp_millis(),
            expires_at: self.expires_at.timestamp(),
        })
    }
}

/// Inserts the entry and notifies at commit (nothing on rollback).
pub async fn insert(conn: &mut AsyncPgConnection, entry: &Entry) -> QueryResult<()> {
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now);
    diesel::insert_into(revocations::table)
        .values((
            revocations::kind.eq(kind_name(entry.kind)),
            revocations::subject.eq(&entry.subject),
            revocations::not_before.eq(at(entry.not_before_ms)),
            revocations::expires_at.eq(at(entry.expires_at * 1000)),
        ))
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(NOTIFY_CHANNEL)
        .bind::<diesel::sql_types::Text, _>(encode(entry))
        .execute(conn)
        .await?;
    Ok(())
}

/// Every entry that still matters.
pub async fn live(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Entry>> {
    let rows: Vec<Row> = revocations::table
        .filter(revocations::expires_at.gt(diesel::dsl::now))
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(Row::entry).collect())
}

/// Deletes entries past their expiry; returns how many.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(revocations::table.filter(revocations::expires_at.le(diesel::dsl::now)))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let e = Entry {
            kind: RevokedKind::Session,
            subject: "0190c0de-0000-7000-8000-000000000000".into(),
            not_before_ms: 1_700_000_000_123,
            expires_at: 1_700_000_600,
        };
        assert_eq!(decode(&encode(&e)), Some(e));
        assert_eq!(decode("user|x|1"), None);
        assert_eq!(decode("group|x|1|2"), None);
    }
}
