//! The dispatcher's queries: claim due mail, record an attempt's end,
//! recover interrupted sends.

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::Status;

/// A mail claimed for an attempt (now SENDING).
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub subject_user_id: String,
    #[diesel(sql_type = Text)]
    pub recipient: String,
    #[diesel(sql_type = Text)]
    pub template_id: String,
    #[diesel(sql_type = Text)]
    pub subject: String,
    #[diesel(sql_type = Text)]
    pub text_body: String,
    #[diesel(sql_type = Text)]
    pub html_body: String,
    /// This attempt's number (1-based).
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Moves up to `limit` due QUEUED/DEFERRED mails to SENDING (one attempt
/// more each) and records the change; replicas skip each other's rows.
pub async fn claim(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Claimed>> {
    diesel::sql_query(
        "WITH due AS (
           SELECT id FROM mails
           WHERE status IN ('QUEUED', 'DEFERRED') AND next_attempt_at <= now()
           ORDER BY next_attempt_at
           LIMIT $1
           FOR UPDATE SKIP LOCKED
         ), claimed AS (
           UPDATE mails m SET status = 'SENDING', attempts = m.attempts + 1,
                  next_attempt_at = NULL, update_time = now()
           FROM due WHERE m.id = due.id
           RETURNING m.id, m.subject_user_id, m.recipient, m.template_id, m.subject, m.text_body,
                     m.html_body, m.attempts
         ), history AS (
           INSERT INTO mail_events (mail_id, status, detail)
           SELECT id, 'SENDING', 'attempt ' || attempts FROM claimed
         )
         SELECT * FROM claimed",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// How an attempt ended, to write.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub to: Status,
    pub detail: &'a str,
    pub last_error: &'a str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub transport: &'a str,
}

/// Moves a mail to `f.to` if its status allows it (a status only moves
/// forward); `false` when it did not.
pub async fn finish(conn: &mut AsyncPgConnection, id: Uuid, f: &Finish<'_>) -> QueryResult<bool> {
    let from: Vec<String> = Status::sources_of(f.to)
        .into_iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let n = diesel::sql_query(
        "WITH moved AS (
           UPDATE mails SET status = $2, last_error = $3, next_attempt_at = $4,
                  transport = CASE WHEN $5 = '' THEN transport ELSE $5 END,
                  sent_time = CASE WHEN $2 = 'SENT' THEN now() ELSE sent_time END,
                  update_time = now()
           WHERE id = $1 AND status = ANY($6)
           RETURNING id
         )
         INSERT INTO mail_events (mail_id, status, detail)
         SELECT id, $2, $7 FROM moved",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(f.to.as_str())
    .bind::<Text, _>(f.last_error)
    .bind::<Nullable<Timestamptz>, _>(f.next_attempt_at)
    .bind::<Text, _>(f.transport)
    .bind::<Array<Text>, _>(from)
    .bind::<Text, _>(f.detail)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Mail SENDING for longer than `lease` seconds (the process died mid-send)
/// is DEFERRED to be tried again now. Returns how many.
pub async fn recover(conn: &mut AsyncPgConnection, lease_secs: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "WITH stale AS (
           UPDATE mails SET status = 'DEFERRED', next_attempt_at = now(), update_time = now(),
                  last_error = 'interrupted while sending'
           WHERE status = 'SENDING' AND update_time < now() - make_interval(secs => $1)
           RETURNING id
         )
         INSERT INTO mail_events (mail_id, status, detail)
         SELECT id, 'DEFERRED', 'interrupted while sending' FROM stale",
    )
    .bind::<BigInt, _>(lease_secs)
    .execute(conn)
    .await
}

/// When the next deferred mail is due, if any.
pub async fn next_due(conn: &mut AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        at: Option<DateTime<Utc>>,
    }
    let due: Due = diesel::sql_query(
        "SELECT min(next_attempt_at) AS at FROM mails WHERE status IN ('QUEUED', 'DEFERRED')",
    )
    .get_result(conn)
    .await?;
    Ok(due.at)
}

/// Mail not yet at a final status: (status, count, age of the oldest in
/// seconds), for the queue gauges.
pub async fn queue_depth(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(String, i64, f64)>> {
    #[derive(QueryableByName)]
    struct Depth {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        oldest: f64,
    }
    let rows: Vec<Depth> = diesel::sql_query(
        "SELECT status, count(*) AS n, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(create_time)), 0)::float8 AS oldest \
         FROM mails WHERE status IN ('QUEUED', 'SENDING', 'DEFERRED') GROUP BY status",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|d| (d.status, d.n, d.oldest))
        .collect())
}
