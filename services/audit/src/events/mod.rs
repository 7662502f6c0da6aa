//! Reading the trail: search (ListEvents), one event (GetEvent), activity
//! counts per user (GetActivityHistory).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use steward_kit::{FieldViolations, auth::Caller, page::Page};
use uuid::Uuid;

use crate::{
    domain::event::StoredEvent,
    error::Error,
    state::State,
    store::{
        events::{self, Cursor, Filter},
        rollup::{self, Activity, Order},
    },
};

/// Longest time range one query may span.
pub const MAX_SPAN_DAYS: i64 = 366;
/// Most actions one filter may name.
pub const MAX_ACTIONS: usize = 100;
/// Most users one activity query may name.
pub const MAX_USERS: usize = 1000;

/// A query's time window: `end` defaults to now, `start` to 30 days
/// before `end`; `start` after `end` or a span over [`MAX_SPAN_DAYS`] is a
/// violation of `{prefix}start_time`.
pub fn window(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    prefix: &str,
    v: &mut FieldViolations,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = end.unwrap_or_else(|| Utc::now() + Duration::seconds(1));
    let start = start.unwrap_or(end - Duration::days(30));
    if start > end {
        v.add(format!("{prefix}start_time"), "after end_time");
    } else if end - start > Duration::days(MAX_SPAN_DAYS) {
        v.add(
            format!("{prefix}start_time"),
            format!("the range may span at most {MAX_SPAN_DAYS} days"),
        );
    }
    (start, end)
}

/// Events matching `filter`, newest first. Without an administrative role,
/// only the caller's own log.
pub async fn search(
    state: &State,
    caller: &Caller,
    mut filter: Filter,
    page: &Page<Cursor>,
) -> Result<(Filter, Vec<StoredEvent>), Error> {
    if !caller.is_privileged() {
        match &filter.subject_user_id {
            None => filter.subject_user_id = Some(caller.user_id.clone()),
            Some(subject) if *subject == caller.user_id => {}
            Some(_) => {
                return Err(Error::denied(
                    "NOT_YOUR_RESOURCE",
                    "callers without an administrative role may act only on their own account",
                ));
            }
        }
    }
    let rows = state
        .commands
        .read(async |conn| Ok(events::list(conn, &filter, page.after, page.limit()).await?))
        .await?;
    Ok((filter, rows))
}

pub async fn get(state: &State, id: Uuid) -> Result<StoredEvent, Error> {
    state
        .commands
        .read(async |conn| {
            events::get(conn, id)
                .await?
                .ok_or(Error::not_found("event", id))
        })
        .await
}

/// GetActivityHistory's question.
#[derive(Debug, Clone)]
pub struct ActivityQuery {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub user_ids: Vec<String>,
    pub order: Order,
}

impl ActivityQuery {
    /// Checks the range and the user list; dates are parsed by the caller.
    pub fn check(&self, v: &mut FieldViolations) {
        if self.start > self.end {
            v.add("start_date", "after end_date");
        }
        if self.user_ids.len() > MAX_USERS {
            v.add("user_ids", format!("at most {MAX_USERS} users"));
        }
    }

    /// What a page token is bound to.
    pub fn fingerprint(&self) -> String {
        format!(
            "activity|{}|{}|{:?}|{:?}",
            self.start, self.end, self.user_ids, self.order
        )
    }
}

pub async fn activity(
    state: &State,
    q: &ActivityQuery,
    page: &Page<rollup::Cursor>,
) -> Result<Vec<Activity>, Error> {
    state
        .commands
        .read(async |conn| {
            // Every event acknowledged before this call is counted.
            rollup::catch_up_if_behind(conn).await?;
            Ok(rollup::activity(
                conn,
                q.start,
                q.end,
                &q.user_ids,
                q.order,
                page.after.as_ref(),
                page.limit(),
            )
            .await?)
        })
        .await
}
