//! The daily activity rollup: actions per subject user per UTC day.

use std::collections::HashMap;

use chrono::NaiveDate;
use diesel::{
    QueryableByName,
    sql_types::{Array, Date, Int8, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::domain::event::Event;

/// Adds `events` to the rollup (one statement); call in the ingest
/// transaction.
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
    .bind::<Array<Text>, _>(users)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<Text>, _>(actions)
    .bind::<Array<Int8>, _>(n)
    .execute(conn)
    .await
    .map(|_| ())
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
    /// Most active first: the whole range is aggregated per query.
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
