//! Override queries.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{domain::Value, schema::overrides::dsl as o};

/// A stored override: (key, text, unlimited).
pub type OverrideRow = (String, String, bool);

pub async fn of_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<OverrideRow>> {
    o::overrides
        .filter(o::user_id.eq(user))
        .order(o::key)
        .select((o::key, o::value, o::unlimited))
        .load(conn)
        .await
}

pub async fn of_users(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> QueryResult<HashMap<Uuid, Vec<OverrideRow>>> {
    let rows: Vec<(Uuid, String, String, bool)> = o::overrides
        .filter(o::user_id.eq_any(users))
        .order((o::user_id, o::key))
        .select((o::user_id, o::key, o::value, o::unlimited))
        .load(conn)
        .await?;
    let mut out: HashMap<Uuid, Vec<OverrideRow>> = HashMap::new();
    for (user, key, value, unlimited) in rows {
        out.entry(user).or_default().push((key, value, unlimited));
    }
    Ok(out)
}

pub async fn set(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    value: &Value,
) -> QueryResult<()> {
    diesel::insert_into(o::overrides)
        .values((
            o::user_id.eq(user),
            o::key.eq(key),
            o::value.eq(value.text()),
            o::unlimited.eq(value.is_unlimited()),
        ))
        .on_conflict((o::user_id, o::key))
        .do_update()
        .set((
            o::value.eq(value.text()),
            o::unlimited.eq(value.is_unlimited()),
            o::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn delete(conn: &mut AsyncPgConnection, user: Uuid, key: &str) -> QueryResult<bool> {
    diesel::delete(o::overrides.filter(o::user_id.eq(user).and(o::key.eq(key))))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Every override of a user (their personal data is erased).
/// Deletes every override of `user`; returns what was deleted, by key.
pub async fn delete_all(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<OverrideRow>> {
    let mut rows: Vec<OverrideRow> = diesel::delete(o::overrides.filter(o::user_id.eq(user)))
        .returning((o::key, o::value, o::unlimited))
        .get_results(conn)
        .await?;
    rows.sort();
    Ok(rows)
}
