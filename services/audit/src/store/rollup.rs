//! The daily activity rollup: actions per subject user per UTC day, and the
//! ranked 30-day window. Counted from the chain after ingest commits
//! ([`run`], [`catch_up`]), not in the ingest transaction: the upserts cost
//! more than the insert of the events themselves. Readers catch up first,
//! so a history includes every event acknowledged before it was asked.

use chrono::{NaiveDate, Utc};
use diesel::{
    OptionalExtension, QueryableByName,
    sql_types::{Array, Date, Int8, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use steward_kit::db::Prepare;

/// Chain sequences counted per catch-up transaction at most.
const CATCH_UP_BATCH: i64 = 50_000;

/// Counts the events the chain holds beyond what the rollup has counted
/// (up to the head, so rows outside the chain are never counted), into the
/// daily rollup and the ranked window (rolled to today first), and moves
/// the progress mark, in one transaction per batch. The progress row's lock
/// serialises every caller (the worker of each replica, and readers
/// catching up). Returns how many sequences were counted.
///
/// Ingest commits in sequence order (the chain head lock is held until
/// commit), so whatever is visible up to the head is the whole prefix.
async fn catch_up(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    use diesel_async::AsyncConnection;
    let mut counted = 0;
    loop {
        let step = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| step(conn).await)
            .await?;
        counted += step;
        if step < CATCH_UP_BATCH {
            return Ok(counted);
        }
    }
}

/// [`catch_up`] when [`behind`]: a reader or an idle worker costs one
/// plain read, not a locking transaction.
pub async fn catch_up_if_behind(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    if behind(conn).await? {
        catch_up(conn).await
    } else {
        Ok(0)
    }
}

/// Whether the chain holds events the rollup has not counted yet.
async fn behind(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Behind {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        behind: bool,
    }
    // No progress row (deleted by hand): behind, and the catch-up puts one
    // back.
    let b: Behind = diesel::sql_query(
        "SELECT COALESCE((SELECT seq FROM chain_head) > (SELECT seq FROM rollup_progress), true) \
         AS behind",
    )
    .prepared()
    .get_result(conn)
    .await?;
    Ok(b.behind)
}

async fn step(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Range {
        #[diesel(sql_type = Int8)]
        done: i64,
        #[diesel(sql_type = Int8)]
        head: i64,
    }
    let r: Option<Range> = diesel::sql_query(
        "SELECT p.seq AS done, (SELECT seq FROM chain_head) AS head \
         FROM rollup_progress p FOR UPDATE",
    )
    .prepared()
    .get_result(conn)
    .await
    .optional()?;
    let Some(r) = r else {
        // The row was deleted by hand: what was counted is unknown, so
        // counting restarts from the head (events stored before are not
        // counted again) and says so.
        tracing::error!(
            "rollup_progress was missing; the activity rollup restarts from the chain head"
        );
        diesel::sql_query(
            "INSERT INTO rollup_progress (seq) SELECT seq FROM chain_head ON CONFLICT DO NOTHING",
        )
        .prepared()
        .execute(conn)
        .await?;
        return Ok(0);
    };
    if r.head <= r.done {
        return Ok(0);
    }
    let upto = r.head.min(r.done + CATCH_UP_BATCH);
    // The window first (from the counts before this batch), then the batch
    // into both.
    roll_window(conn, Utc::now().date_naive()).await?;
    diesel::sql_query(
        "WITH batch AS (
           SELECT subject_user_id AS u, (occurred_at AT TIME ZONE 'UTC')::date AS d, action AS a,
                  count(*) AS n
           FROM events WHERE seq > $1 AND seq <= $2 AND subject_user_id <> ''
           GROUP BY 1, 2, 3
         ), daily AS (
           INSERT INTO activity_daily (subject_user_id, day, action, count)
           SELECT u, d, a, n FROM batch
           ON CONFLICT (day, subject_user_id, action)
           DO UPDATE SET count = activity_daily.count + EXCLUDED.count
         )
         INSERT INTO activity_window (subject_user_id, count)
         SELECT b.u, sum(b.n) FROM batch b
         JOIN activity_window_span s ON b.d BETWEEN s.first_day AND s.last_day
         GROUP BY b.u
         ON CONFLICT (subject_user_id) DO UPDATE SET count = activity_window.count + EXCLUDED.count",
    )
    .bind::<Int8, _>(r.done)
    .bind::<Int8, _>(upto)
    .prepared().execute(conn)
    .await?;
    diesel::sql_query("UPDATE rollup_progress SET seq = $1")
        .bind::<Int8, _>(upto)
        .prepared()
        .execute(conn)
        .await?;
    Ok(upto - r.done)
}

/// The rollup worker: catches up whenever ingest committed (`wake`) and at
/// least every 1.25 s (other replicas' ingest, audit's own events), but at
/// most every [`MIN_INTERVAL`]: under steady ingest one pass counts many
/// commits' events instead of competing with every commit for the CPU.
/// Readers catch up themselves, so the delay is never visible.
pub async fn run(
    pool: steward_kit::db::Pool,
    wake: std::sync::Arc<tokio::sync::Notify>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match pool.get().await {
            Ok(mut conn) => {
                if let Err(error) = catch_up_if_behind(&mut conn).await {
                    tracing::warn!(%error, "activity rollup cannot catch up; retrying");
                }
            }
            Err(error) => tracing::warn!(%error, "activity rollup has no database connection"),
        }
        tokio::select! {
            _ = tokio::time::sleep(MIN_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The shortest pause between two passes of the rollup worker.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Days in the ranked window before its last day: start_date = end_date -
/// WINDOW_DAYS is the range the ranked totals answer.
pub const WINDOW_DAYS: i64 = 30;

/// Makes the ranked window end on `today`: one day later is a shift (the
/// oldest day out, the next in), anything else a rebuild from the rollup.
/// Call with the progress row locked (every rollup writer holds it).
pub async fn roll_window(
    conn: &mut AsyncPgConnection,
    today: NaiveDate,
) -> diesel::QueryResult<()> {
    #[derive(QueryableByName)]
    struct Span {
        #[diesel(sql_type = Date)]
        last_day: NaiveDate,
    }
    let span: Option<Span> = diesel::sql_query("SELECT last_day FROM activity_window_span")
        .prepared()
        .get_result(conn)
        .await
        .optional()?;
    match span {
        Some(s) if s.last_day == today => return Ok(()),
        Some(s) if s.last_day.succ_opt() == Some(today) => {
            diesel::sql_query("SELECT activity_window_shift()")
                .prepared()
                .execute(conn)
                .await?;
        }
        _ => {
            diesel::sql_query("SELECT activity_window_rebuild($1)")
                .bind::<Date, _>(today)
                .prepared()
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Activity {
    #[diesel(sql_type = Text)]
    pub user_id: String,
    #[diesel(sql_type = Int8)]
    pub actions: i64,
}

/// The order of the activity history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By user id: a page reads only its own users' rows.
    UserId,
    /// Most active first: the ranked window's index for the trailing
    /// window ([`WINDOW_DAYS`] before today through today, no user filter);
    /// any other range is aggregated per query.
    ActionsDesc,
}

/// Keyset position: (actions desc, user id) or user id alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub actions: i64,
    pub user_id: String,
}

/// Actions per user between two dates (inclusive), in `order`.
pub async fn activity(
    conn: &mut AsyncPgConnection,
    start: NaiveDate,
    end: NaiveDate,
    users: &[String],
    order: Order,
    after: Option<&Cursor>,
    limit: i64,
) -> diesel::QueryResult<Vec<Activity>> {
    let (after_actions, after_user) = after
        .map(|c| (c.actions, c.user_id.clone()))
        .unwrap_or((i64::MAX, String::new()));
    // The ranked window when the range is exactly it and no users are named:
    // an index range scan from the cursor. The span and the page are read in
    // one statement (one snapshot); no row at all means the window is
    // another range, and the range is aggregated instead. (Not a UNION
    // with the aggregation: its plan starts parallel workers even when its
    // branch is filtered out.)
    if order == Order::ActionsDesc && users.is_empty() {
        #[derive(QueryableByName)]
        struct Ranked {
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            user_id: Option<String>,
            #[diesel(sql_type = diesel::sql_types::Nullable<Int8>)]
            actions: Option<i64>,
        }
        let ranked: Vec<Ranked> = diesel::sql_query(
            "SELECT w.user_id, w.actions FROM activity_window_span s
             LEFT JOIN LATERAL (
                 SELECT subject_user_id AS user_id, count AS actions FROM activity_window
                 WHERE (-count, subject_user_id) > (-$3, $4)
                 ORDER BY -count, subject_user_id
                 LIMIT $5
             ) w ON true
             WHERE s.first_day = $1 AND s.last_day = $2",
        )
        .bind::<Date, _>(start)
        .bind::<Date, _>(end)
        .bind::<Int8, _>(after_actions)
        .bind::<Text, _>(&after_user)
        .bind::<Int8, _>(limit)
        .load(conn)
        .await?;
        if !ranked.is_empty() {
            return Ok(ranked
                .into_iter()
                .filter_map(|r| {
                    Some(Activity {
                        user_id: r.user_id?,
                        actions: r.actions?,
                    })
                })
                .collect());
        }
    }
    let sql = match order {
        // Walks the (user, day) index from the cursor: GroupAggregate + LIMIT.
        Order::UserId => {
            "SELECT subject_user_id AS user_id, sum(count)::int8 AS actions
             FROM activity_daily
             WHERE day BETWEEN $1 AND $2
               AND (cardinality($3::text[]) = 0 OR subject_user_id = ANY($3))
               AND subject_user_id > $5
             GROUP BY subject_user_id
             ORDER BY subject_user_id
             LIMIT $6"
        }
        Order::ActionsDesc => {
            "SELECT user_id, actions FROM (
                 SELECT subject_user_id AS user_id, sum(count)::int8 AS actions
                 FROM activity_daily
                 WHERE day BETWEEN $1 AND $2
                   AND (cardinality($3::text[]) = 0 OR subject_user_id = ANY($3))
                 GROUP BY subject_user_id
             ) a
             WHERE actions < $4 OR (actions = $4 AND user_id > $5)
             ORDER BY actions DESC, user_id
             LIMIT $6"
        }
    };
    diesel::sql_query(sql)
        .bind::<Date, _>(start)
        .bind::<Date, _>(end)
        .bind::<Array<Text>, _>(users.to_vec())
        .bind::<Int8, _>(after_actions)
        .bind::<Text, _>(after_user)
        .bind::<Int8, _>(limit)
        .load(conn)
        .await
}
