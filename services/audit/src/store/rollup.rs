//! The daily activity rollup: actions per subject user per UTC day.

use std::collections::HashMap;

use chrono::{NaiveDate, Utc};
use diesel::{
    OptionalExtension, QueryableByName,
    sql_types::{Array, Date, Int8, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::domain::event::Event;

/// Adds `events` to the rollup and to the ranked window (rolled to today
/// first); call in the ingest transaction.
pub async fn add(conn: &mut AsyncPgConnection, events: &[&Event]) -> diesel::QueryResult<()> {
    let mut counts: HashMap<(&str, NaiveDate, &str), i64> = HashMap::new();
    for e in events.iter().filter(|e| !e.subject_user_id.is_empty()) {
        *counts
            .entry((&e.subject_user_id, e.occurred_at.date_naive(), &e.action))
            .or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    // The window first (from the counts before this batch), then the batch
    // into both.
    roll_window(conn, Utc::now().date_naive()).await?;
    let (mut users, mut days, mut actions, mut n) = (vec![], vec![], vec![], vec![]);
    for ((user, day, action), count) in counts {
        users.push(user.to_owned());
        days.push(day);
        actions.push(action.to_owned());
        n.push(count);
    }
    diesel::sql_query(
        "INSERT INTO activity_daily (subject_user_id, day, action, count)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::int8[])
         ON CONFLICT (day, subject_user_id, action)
         DO UPDATE SET count = activity_daily.count + EXCLUDED.count",
    )
    .bind::<Array<Text>, _>(&users)
    .bind::<Array<Date>, _>(&days)
    .bind::<Array<Text>, _>(actions)
    .bind::<Array<Int8>, _>(&n)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO activity_window (subject_user_id, count)
         SELECT x.u, sum(x.n) FROM UNNEST($1::text[], $2::date[], $3::int8[]) AS x(u, d, n)
         JOIN activity_window_span s ON x.d BETWEEN s.first_day AND s.last_day
         GROUP BY x.u
         ON CONFLICT (subject_user_id) DO UPDATE SET count = activity_window.count + EXCLUDED.count",
    )
    .bind::<Array<Text>, _>(users)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<Int8>, _>(n)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Days in the ranked window before its last day: start_date = end_date -
/// WINDOW_DAYS is the range the ranked totals answer.
pub const WINDOW_DAYS: i64 = 30;

/// Makes the ranked window end on `today`: one day later is a shift (the
/// oldest day out, the next in), anything else a rebuild from the rollup.
/// Call with the chain head lock held (every rollup writer holds it).
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
        .get_result(conn)
        .await
        .optional()?;
    match span {
        Some(s) if s.last_day == today => return Ok(()),
        Some(s) if s.last_day.succ_opt() == Some(today) => {
            diesel::sql_query("SELECT activity_window_shift()")
                .execute(conn)
                .await?;
        }
        _ => {
            diesel::sql_query("SELECT activity_window_rebuild($1)")
                .bind::<Date, _>(today)
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
