//! Mail queries.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::Status;

/// A mail as lists show it (without the bodies).
#[derive(Debug, Clone, QueryableByName)]
pub struct Mail {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub notification_id: Uuid,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Text)]
    pub subject_user_id: String,
    #[diesel(sql_type = Text)]
    pub recipient: String,
    #[diesel(sql_type = Text)]
    pub template_id: String,
    #[diesel(sql_type = Integer)]
    pub template_version: i32,
    #[diesel(sql_type = Text)]
    pub locale: String,
    #[diesel(sql_type = Text)]
    pub subject: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Text)]
    pub last_error: String,
    #[diesel(sql_type = Text)]
    pub transport: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub resent_from: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub create_time: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub update_time: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub sent_time: Option<DateTime<Utc>>,
}

pub const COLUMNS: &str = "id, notification_id, source, subject_user_id, recipient, template_id, \
     template_version, locale, subject, status, attempts, last_error, transport, next_attempt_at, \
     resent_from, occurred_at, create_time, update_time, sent_time";

/// The bodies (GetNotification, resending, delivery).
#[derive(Debug, Clone, QueryableByName)]
pub struct Body {
    #[diesel(sql_type = Text)]
    pub text_body: String,
    #[diesel(sql_type = Text)]
    pub html_body: String,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct Event {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub detail: String,
}

/// A mail to insert.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: Uuid,
    pub notification_id: Uuid,
    pub source: String,
    pub subject_user_id: String,
    pub recipient: String,
    pub template_id: String,
    pub template_version: i32,
    pub locale: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// QUEUED or SUPPRESSED.
    pub status: Status,
    pub occurred_at: DateTime<Utc>,
    pub resent_from: Option<Uuid>,
    /// The first history entry's detail.
    pub detail: String,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
}

/// Which of `ids` were received before.
pub async fn known_requests(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<HashSet<Uuid>> {
    let rows: Vec<Id> = diesel::sql_query("SELECT event_id FROM requests WHERE event_id = ANY($1)")
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
}

/// Claims request ids; returns those claimed now (a concurrent delivery of
/// the same request waits for the first and claims nothing).
pub async fn claim_requests(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    sources: &[String],
) -> QueryResult<HashSet<Uuid>> {
    let rows: Vec<Id> = diesel::sql_query(
        "INSERT INTO requests (event_id, source)
         SELECT * FROM UNNEST($1::uuid[], $2::text[])
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(sources)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
}

/// Inserts mails with their first history entry.
pub async fn insert(conn: &mut AsyncPgConnection, mails: &[NewMail]) -> QueryResult<()> {
    if mails.is_empty() {
        return Ok(());
    }
    macro_rules! col {
        ($f:expr) => {
            mails.iter().map($f).collect::<Vec<_>>()
        };
    }
    diesel::sql_query(
        "WITH m AS (
           INSERT INTO mails (id, notification_id, source, subject_user_id, recipient, template_id,
                              template_version, locale, subject, text_body, html_body, status,
                              occurred_at, resent_from, next_attempt_at)
           SELECT u.id, u.notification_id, u.source, u.subject_user_id, u.recipient, u.template_id,
                  u.template_version, u.locale, u.subject, u.text_body, u.html_body, u.status,
                  u.occurred_at, u.resent_from,
                  CASE WHEN u.status = 'QUEUED' THEN now() END
           FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::int[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                       $13::timestamptz[], $14::uuid[], $15::text[])
                AS u(id, notification_id, source, subject_user_id, recipient, template_id,
                     template_version, locale, subject, text_body, html_body, status, occurred_at,
                     resent_from, detail)
           RETURNING id, status
         )
         INSERT INTO mail_events (mail_id, status, detail)
         SELECT u.id, u.status, u.detail
         FROM UNNEST($1::uuid[], $12::text[], $15::text[]) AS u(id, status, detail)",
    )
    .bind::<Array<SqlUuid>, _>(col!(|m| m.id))
    .bind::<Array<SqlUuid>, _>(col!(|m| m.notification_id))
    .bind::<Array<Text>, _>(col!(|m| m.source.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.subject_user_id.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.recipient.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.template_id.clone()))
    .bind::<Array<Integer>, _>(col!(|m| m.template_version))
    .bind::<Array<Text>, _>(col!(|m| m.locale.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.subject.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.text_body.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.html_body.clone()))
    .bind::<Array<Text>, _>(col!(|m| m.status.as_str().to_owned()))
    .bind::<Array<Timestamptz>, _>(col!(|m| m.occurred_at))
    .bind::<Array<Nullable<SqlUuid>>, _>(col!(|m| m.resent_from))
    .bind::<Array<Text>, _>(col!(|m| m.detail.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<(Mail, Body)>> {
    let mut mails: Vec<Mail> =
        diesel::sql_query(format!("SELECT {COLUMNS} FROM mails WHERE id = $1"))
            .bind::<SqlUuid, _>(id)
            .load(conn)
            .await?;
    let Some(mail) = mails.pop() else {
        return Ok(None);
    };
    let body: Body = diesel::sql_query("SELECT text_body, html_body FROM mails WHERE id = $1")
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await?;
    Ok(Some((mail, body)))
}

/// The mail's status changes, oldest first.
pub async fn history(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Vec<Event>> {
    diesel::sql_query("SELECT status, at, detail FROM mail_events WHERE mail_id = $1 ORDER BY id")
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await
}

/// What ListNotifications filters by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub user_id: Option<String>,
    pub statuses: Vec<Status>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Newest first (ids are UUIDv7), after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    f: &Filter,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Mail>> {
    let statuses: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_owned()).collect();
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM mails
         WHERE ($1::text IS NULL OR subject_user_id = $1)
           AND (cardinality($2::text[]) = 0 OR status = ANY($2))
           AND ($3::timestamptz IS NULL OR create_time >= $3)
           AND ($4::timestamptz IS NULL OR create_time < $4)
           AND ($5::uuid IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6"
    ))
    .bind::<Nullable<Text>, _>(f.user_id.as_deref())
    .bind::<Array<Text>, _>(statuses)
    .bind::<Nullable<Timestamptz>, _>(f.start)
    .bind::<Nullable<Timestamptz>, _>(f.end)
    .bind::<Nullable<SqlUuid>, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}
