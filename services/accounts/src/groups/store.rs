//! The `groups` table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::Group;
use crate::schema::groups::dsl as g;

type Row = (String, String, bool, DateTime<Utc>);

fn group((name, display_name, built_in, created_at): Row) -> Group {
    Group {
        name,
        display_name,
        built_in,
        created_at,
    }
}

pub async fn exists(conn: &mut AsyncPgConnection, name: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(g::groups.find(name)))
        .get_result(conn)
        .await
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    name: &str,
    display_name: &str,
) -> QueryResult<Group> {
    diesel::insert_into(g::groups)
        .values((g::name.eq(name), g::display_name.eq(display_name)))
        .returning((g::name, g::display_name, g::built_in, g::created_at))
        .get_result(conn)
        .await
        .map(group)
}

/// Groups by name after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Group>> {
    let mut query = g::groups
        .select((g::name, g::display_name, g::built_in, g::created_at))
        .order(g::name)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(g::name.gt(after.to_owned()));
    }
    query
        .load::<Row>(conn)
        .await
        .map(|rows| rows.into_iter().map(group).collect())
}
