//! The `users` table.

use chrono::{DateTime, Utc};
use diesel::{
    dsl::sql,
    prelude::*,
    sql_types::{Bool, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Role, User, UserStatus};
use crate::schema::users::{self, dsl as u};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    id: Uuid,
    email: String,
    status: String,
    group_name: String,
    roles: Vec<String>,
    phone: Option<String>,
    signup_at: DateTime<Utc>,
    reseller: Option<String>,
    notes: String,
    ext_billing_id: Option<String>,
    two_factor_enabled: bool,
    upgrade_in_progress: bool,
    version: i64,
    updated_at: DateTime<Utc>,
    destroyed_at: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            // The table's CHECK constraint admits only known statuses.
            status: r.status.parse().unwrap_or(UserStatus::Inactive),
            group: r.group_name,
            roles: r.roles.iter().filter_map(|r| Role::parse(r)).collect(),
            phone: r.phone,
            signup_at: r.signup_at,
            reseller: r.reseller,
            notes: r.notes,
            ext_billing_id: r.ext_billing_id,
            two_factor_enabled: r.two_factor_enabled,
            upgrade_in_progress: r.upgrade_in_progress,
            version: r.version,
            updated_at: r.updated_at,
            destroyed_at: r.destroyed_at,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub status: String,
    pub group_name: String,
    pub roles: Vec<String>,
    pub phone: Option<String>,
    pub reseller: Option<String>,
    pub notes: String,
    pub ext_billing_id: Option<String>,
    pub password_hash: Option<String>,
}

/// Columns a command may change; `None` leaves a column as it is. Every
/// change bumps `version` (the etag) and `updated_at`.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub email: Option<String>,
    pub status: Option<String>,
    pub group_name: Option<String>,
    pub roles: Option<Vec<String>>,
    pub phone: Option<Option<String>>,
    pub notes: Option<String>,
    pub two_factor_enabled: Option<bool>,
    pub upgrade_in_progress: Option<bool>,
    pub password_hash: Option<Option<String>>,
    pub destroyed_at: Option<Option<DateTime<Utc>>>,
    pub erased_at: Option<Option<DateTime<Utc>>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: NewUser) -> QueryResult<User> {
    diesel::insert_into(u::users)
        .values(new)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .map(User::from)
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    u::users
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
        .map(|r| r.map(User::from))
}

/// Locks the user's row for the rest of the transaction.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    u::users
        .find(id)
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
        .map(|r| r.map(User::from))
}

/// Locks several rows, always in id order so that concurrent batches
/// cannot deadlock.
pub async fn lock_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<User>> {
    u::users
        .filter(u::id.eq_any(ids))
        .order(u::id)
        .select(UserRow::as_select())
        .for_update()
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(User::from).collect())
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: UserChanges,
) -> QueryResult<User> {
    diesel::update(u::users.find(id))
        .set((
            changes,
            u::version.eq(u::version + 1),
            u::updated_at.eq(diesel::dsl::now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .map(User::from)
}

pub async fn find_live_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<User>> {
    u::users
        .filter(u::email.eq(email))
        .filter(u::status.ne(UserStatus::Deleted.as_str()))
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
        .map(|r| r.map(User::from))
}

/// Was an account with this (pseudonymised) email erased?
pub async fn erased_digest_exists(conn: &mut AsyncPgConnection, digest: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        u::users
            .filter(u::email.eq(digest))
            .filter(u::status.eq(UserStatus::Deleted.as_str())),
    ))
    .get_result(conn)
    .await
}

/// Destroyed accounts due for automatic erasure, locked; rows another
/// replica is already erasing are skipped.
pub async fn lock_due_for_erasure(
    conn: &mut AsyncPgConnection,
    destroyed_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    u::users
        .filter(u::status.eq(UserStatus::Destroyed.as_str()))
        .filter(u::destroyed_at.le(destroyed_before))
        .order(u::destroyed_at)
        .limit(limit)
        .select(UserRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(User::from).collect())
}

/// Destroyed users after `after` (destroyed_at, id), oldest first, locked
/// (rows another replica holds are skipped): the erasure job walks them all,
/// since each user's delay is their own quota.
pub async fn lock_destroyed_page(
    conn: &mut AsyncPgConnection,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let (at, id) = after.unwrap_or((DateTime::<Utc>::UNIX_EPOCH, Uuid::nil()));
    u::users
        .filter(u::status.eq(UserStatus::Destroyed.as_str()))
        .filter(
            u::destroyed_at
                .gt(at)
                .or(u::destroyed_at.eq(at).and(u::id.gt(id))),
        )
        .order((u::destroyed_at, u::id))
        .limit(limit)
        .select(UserRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(User::from).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    SignupDesc,
    SignupAsc,
    EmailAsc,
    EmailDesc,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub group: Option<String>,
    pub status: Option<UserStatus>,
    pub id: Option<Uuid>,
    /// Lowercased substring of the email.
    pub email_contains: Option<String>,
}

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    Signup(DateTime<Utc>, Uuid),
    Email(String, Uuid),
}

impl Cursor {
    pub fn of(user: &User, order: Order) -> Self {
        match order {
            Order::SignupAsc | Order::SignupDesc => Cursor::Signup(user.signup_at, user.id),
            Order::EmailAsc | Order::EmailDesc => Cursor::Email(user.email.clone(), user.id),
        }
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Lexemes are at most 2046 bytes; emails are far shorter.
const MAX_INDEXED_NEEDLE: usize = 1024;

/// The tsquery "some lexeme starts with `needle`", quoted so that any
/// character of the needle is literal.
fn suffix_prefix_query(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 4);
    out.push('\'');
    for c in needle.chars() {
        if matches!(c, '\'' | '\\') {
            out.push(c);
        }
        out.push(c);
    }
    out.push_str("':*");
    out
}

/// One page of users in keyset order: rows strictly after `after`, at most
/// `limit`. The row comparison `(key, id) > (...)` lets PostgreSQL walk the
/// matching (filter, key, id) index without OFFSET or COUNT.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    order: Order,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut query = u::users.select(UserRow::as_select()).into_boxed();
    if let Some(group) = &filter.group {
        query = query.filter(u::group_name.eq(group.clone()));
    }
    if let Some(status) = filter.status {
        query = query.filter(u::status.eq(status.as_str()));
    }
    if let Some(id) = filter.id {
        query = query.filter(u::id.eq(id));
    }
    if let Some(needle) = &filter.email_contains {
        // The suffix index finds the candidates (see the email_substring
        // migration); the LIKE is the definition. A needle longer than a
        // lexeme may be is left to the LIKE: no email is that long.
        if needle.len() <= MAX_INDEXED_NEEDLE {
            query = query.filter(
                sql::<Bool>("email_suffixes(email) @@ ")
                    .bind::<Text, _>(suffix_prefix_query(needle))
                    .sql("::tsquery"),
            );
        }
        query = query.filter(u::email.like(format!("%{}%", escape_like(needle))));
    }
    let descending = matches!(order, Order::SignupDesc | Order::EmailDesc);
    let op = if descending { "<" } else { ">" };
    match after {
        Some(Cursor::Signup(at, id)) => {
            query = query.filter(
                sql::<Bool>(&format!("(signup_at, id) {op} ("))
                    .bind::<Timestamptz, _>(*at)
                    .sql(", ")
                    .bind::<SqlUuid, _>(*id)
                    .sql(")"),
            );
        }
        Some(Cursor::Email(email, id)) => {
            query = query.filter(
                sql::<Bool>(&format!("(email, id) {op} ("))
                    .bind::<Text, _>(email.clone())
                    .sql(", ")
                    .bind::<SqlUuid, _>(*id)
                    .sql(")"),
            );
        }
        None => {}
    }
    query = match order {
        Order::SignupDesc => query.order((u::signup_at.desc(), u::id.desc())),
        Order::SignupAsc => query.order((u::signup_at.asc(), u::id.asc())),
        Order::EmailAsc => query.order((u::email.asc(), u::id.asc())),
        Order::EmailDesc => query.order((u::email.desc(), u::id.desc())),
    };
    query
        .limit(limit)
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(User::from).collect())
}

/// The stored argon2id hash of a user's password, if any.
pub async fn password_hash(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<String>> {
    u::users
        .find(id)
        .select(u::password_hash)
        .first(conn)
        .await
        .optional()
        .map(Option::flatten)
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn suffix_query_quotes_the_needle() {
        assert_eq!(super::suffix_prefix_query("user4242"), "'user4242':*");
        assert_eq!(super::suffix_prefix_query("o'b\\c:*&"), "'o''b\\\\c:*&':*");
    }

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
