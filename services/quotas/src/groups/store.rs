//! Group value queries.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{cache::GroupRow, domain::Value, schema::group_values::dsl as g};

/// Every group's values.
pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<GroupRow>> {
    g::group_values
        .select((g::group_name, g::key, g::value, g::unlimited))
        .load(conn)
        .await
}

/// One group's stored values (key, text, unlimited), locked.
pub async fn lock_group(
    conn: &mut AsyncPgConnection,
    group: &str,
) -> QueryResult<Vec<(String, String, bool)>> {
    g::group_values
        .filter(g::group_name.eq(group))
        .order(g::key)
        .select((g::key, g::value, g::unlimited))
        .for_update()
        .load(conn)
        .await
}

/// One group's stored values (key, text, unlimited).
pub async fn of_group(
    conn: &mut AsyncPgConnection,
    group: &str,
) -> QueryResult<Vec<(String, String, bool)>> {
    g::group_values
        .filter(g::group_name.eq(group))
        .order(g::key)
        .select((g::key, g::value, g::unlimited))
        .load(conn)
        .await
}

pub async fn set(
    conn: &mut AsyncPgConnection,
    group: &str,
    key: &str,
    value: &Value,
) -> QueryResult<()> {
    diesel::insert_into(g::group_values)
        .values((
            g::group_name.eq(group),
            g::key.eq(key),
            g::value.eq(value.text()),
            g::unlimited.eq(value.is_unlimited()),
        ))
        .on_conflict((g::group_name, g::key))
        .do_update()
        .set((
            g::value.eq(value.text()),
            g::unlimited.eq(value.is_unlimited()),
            g::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Removes a group's value; whether there was one.
pub async fn delete(conn: &mut AsyncPgConnection, group: &str, key: &str) -> QueryResult<bool> {
    diesel::delete(g::group_values.filter(g::group_name.eq(group).and(g::key.eq(key))))
        .execute(conn)
        .await
        .map(|n| n > 0)
}
