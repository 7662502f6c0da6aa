//! Membership and applied-event queries.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{applied_events::dsl as e, memberships::dsl as m};

/// A user's group and whether their personal data was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group: String,
    pub erased: bool,
}

pub async fn get(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Option<Membership>> {
    m::memberships
        .find(user)
        .select((m::group_name, m::erased))
        .first::<(String, bool)>(conn)
        .await
        .optional()
        .map(|r| r.map(|(group, erased)| Membership { group, erased }))
}

/// Up to `limit` memberships after `after`, in id order (the cache's
/// warm-up walks them all).
pub async fn page(
    conn: &mut AsyncPgConnection,
    after: Uuid,
    limit: i64,
) -> QueryResult<Vec<(Uuid, Membership)>> {
    let rows: Vec<(Uuid, String, bool)> = m::memberships
        .filter(m::user_id.gt(after))
        .order(m::user_id)
        .limit(limit)
        .select((m::user_id, m::group_name, m::erased))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, group, erased)| (id, Membership { group, erased }))
        .collect())
}

/// The memberships of `users` that exist, locked (in id order) for a
/// read-modify-write of their overrides.
pub async fn lock_many(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> QueryResult<HashMap<Uuid, Membership>> {
    m::memberships
        .filter(m::user_id.eq_any(users))
        .order(m::user_id)
        .select((m::user_id, m::group_name, m::erased))
        .for_update()
        .load::<(Uuid, String, bool)>(conn)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|(id, group, erased)| (id, Membership { group, erased }))
                .collect()
        })
}

pub async fn get_many(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> QueryResult<HashMap<Uuid, Membership>> {
    m::memberships
        .filter(m::user_id.eq_any(users))
        .select((m::user_id, m::group_name, m::erased))
        .load::<(Uuid, String, bool)>(conn)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|(id, group, erased)| (id, Membership { group, erased }))
                .collect()
        })
}

/// What accounts answered for a user quotas had not heard of; an event
/// applied meanwhile wins.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    group: &str,
) -> QueryResult<()> {
    diesel::insert_into(m::memberships)
        .values((m::user_id.eq(user), m::group_name.eq(group)))
        .on_conflict(m::user_id)
        .do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Claims an event id; false when it was applied before.
pub async fn claim_event(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::insert_into(e::applied_events)
        .values(e::event_id.eq(id))
        .on_conflict(e::event_id)
        .do_nothing()
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// Applies an event unless a newer one was applied for the user; whether
/// it changed anything.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    group: &str,
    erased: bool,
    event_id: Uuid,
) -> QueryResult<bool> {
    use diesel::sql_types::{Bool, Text, Uuid as SqlUuid};
    diesel::sql_query(
        "INSERT INTO memberships (user_id, group_name, erased, last_event_id) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE \
         SET group_name = EXCLUDED.group_name, erased = EXCLUDED.erased, \
             last_event_id = EXCLUDED.last_event_id, updated_at = now() \
         WHERE memberships.last_event_id IS NULL OR memberships.last_event_id < EXCLUDED.last_event_id",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Text, _>(group)
    .bind::<Bool, _>(erased)
    .bind::<SqlUuid, _>(event_id)
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Event ids older than `days` are forgotten (accounts' relay does not
/// redeliver that late).
pub async fn trim_events(conn: &mut AsyncPgConnection, days: i32) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM applied_events WHERE applied_at < now() - make_interval(days => $1)",
    )
    .bind::<diesel::sql_types::Integer, _>(days)
    .execute(conn)
    .await
}
