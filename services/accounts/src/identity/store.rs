//! Sign-in state, refresh tokens, API tokens and impersonation sessions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::identity::Attempts;
use crate::schema::{api_tokens, credentials, impersonation_sessions, refresh_tokens};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = credentials, check_for_backend(diesel::pg::Pg))]
pub struct Credentials {
    pub user_id: Uuid,
    pub totp_secret: Option<String>,
    pub totp_pending_secret: Option<String>,
    pub totp_last_step: i64,
    pub failed_attempts: i32,
    pub failure_window_start: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Credentials {
    pub fn attempts(&self) -> Attempts {
        Attempts {
            failed: self.failed_attempts,
            window_start: self.failure_window_start,
            locked_until: self.locked_until,
        }
    }
}

/// Columns to change; `None` leaves one as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = credentials)]
pub struct CredentialChanges {
    pub totp_secret: Option<Option<String>>,
    pub totp_pending_secret: Option<Option<String>>,
    pub totp_last_step: Option<i64>,
    pub failed_attempts: Option<i32>,
    pub failure_window_start: Option<Option<DateTime<Utc>>>,
    pub locked_until: Option<Option<DateTime<Utc>>>,
}

impl CredentialChanges {
    pub fn attempts(a: Attempts) -> Self {
        Self {
            failed_attempts: Some(a.failed),
            failure_window_start: Some(a.window_start),
            locked_until: Some(a.locked_until),
            ..Self::default()
        }
    }
}

/// The user's sign-in state, locked for this transaction (created on first
/// use), so that concurrent attempts count one after another.
pub async fn lock_credentials(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<Credentials> {
    use credentials::dsl as c;
    diesel::insert_into(c::credentials)
        .values(c::user_id.eq(user_id))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    c::credentials
        .find(user_id)
        .select(Credentials::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Users with a TOTP secret (active or pending) stored.
pub async fn users_with_totp_secrets(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
    use credentials::dsl as c;
    c::credentials
        .filter(
            c::totp_secret
                .is_not_null()
                .or(c::totp_pending_secret.is_not_null()),
        )
        .select(c::user_id)
        .order(c::user_id)
        .load(conn)
        .await
}

pub async fn update_credentials(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    changes: CredentialChanges,
) -> QueryResult<()> {
    use credentials::dsl as c;
    diesel::update(c::credentials.find(user_id))
        .set((changes, c::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshToken {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub device: String,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: Vec<u8>,
    pub device: String,
    pub client_ip: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    new: NewRefreshToken,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values(new)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn lock_refresh_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<RefreshToken>> {
    use refresh_tokens::dsl as r;
    r::refresh_tokens
        .filter(r::token_hash.eq(token_hash))
        .select(RefreshToken::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn mark_rotated(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    use refresh_tokens::dsl as r;
    diesel::update(r::refresh_tokens.find(id))
        .set(r::rotated_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Revokes every live token of the family; returns how many.
pub async fn revoke_family(conn: &mut AsyncPgConnection, family_id: Uuid) -> QueryResult<usize> {
    use refresh_tokens::dsl as r;
    diesel::update(
        r::refresh_tokens
            .filter(r::family_id.eq(family_id))
            .filter(r::revoked_at.is_null()),
    )
    .set(r::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}

/// Signs the user out everywhere; returns how many tokens were live.
pub async fn revoke_all_for_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<usize> {
    use refresh_tokens::dsl as r;
    diesel::update(
        r::refresh_tokens
            .filter(r::user_id.eq(user_id))
            .filter(r::revoked_at.is_null()),
    )
    .set(r::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens, check_for_backend(diesel::pg::Pg))]
pub struct ApiToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub lifetime_secs: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub lifetime_secs: i64,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_api_token(
    conn: &mut AsyncPgConnection,
    new: NewApiToken,
) -> QueryResult<ApiToken> {
    diesel::insert_into(api_tokens::table)
        .values(new)
        .returning(ApiToken::as_returning())
        .get_result(conn)
        .await
}

/// A live (not deleted) token, locked.
pub async fn lock_api_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<ApiToken>> {
    use api_tokens::dsl as t;
    t::api_tokens
        .find(id)
        .filter(t::deleted_at.is_null())
        .select(ApiToken::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn find_api_token_by_secret(
    conn: &mut AsyncPgConnection,
    secret_hash: &[u8],
) -> QueryResult<Option<ApiToken>> {
    use api_tokens::dsl as t;
    t::api_tokens
        .filter(t::secret_hash.eq(secret_hash))
        .filter(t::deleted_at.is_null())
        .select(ApiToken::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn replace_api_token_secret(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    secret_hash: Vec<u8>,
    expires_at: DateTime<Utc>,
) -> QueryResult<ApiToken> {
    use api_tokens::dsl as t;
    diesel::update(t::api_tokens.find(id))
        .set((t::secret_hash.eq(secret_hash), t::expires_at.eq(expires_at)))
        .returning(ApiToken::as_returning())
        .get_result(conn)
        .await
}

pub async fn delete_api_token(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    use api_tokens::dsl as t;
    diesel::update(t::api_tokens.find(id))
        .set(t::deleted_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn touch_api_token(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    use api_tokens::dsl as t;
    diesel::update(t::api_tokens.find(id))
        .set(t::last_used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// A user's live tokens, newest first, after the cursor `after` (an id).
pub async fn list_api_tokens(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<ApiToken>> {
    use api_tokens::dsl as t;
    let mut query = t::api_tokens
        .filter(t::user_id.eq(user_id))
        .filter(t::deleted_at.is_null())
        .select(ApiToken::as_select())
        .order(t::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(t::id.lt(after));
    }
    query.load(conn).await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = impersonation_sessions, check_for_backend(diesel::pg::Pg))]
pub struct ImpersonationSession {
    pub id: Uuid,
    pub admin_id: String,
    pub user_id: Uuid,
    pub reason: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl ImpersonationSession {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = impersonation_sessions)]
pub struct NewImpersonationSession {
    pub id: Uuid,
    pub admin_id: String,
    pub user_id: Uuid,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_session(
    conn: &mut AsyncPgConnection,
    new: NewImpersonationSession,
) -> QueryResult<ImpersonationSession> {
    diesel::insert_into(impersonation_sessions::table)
        .values(new)
        .returning(ImpersonationSession::as_returning())
        .get_result(conn)
        .await
}

pub async fn get_session(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lock: bool,
) -> QueryResult<Option<ImpersonationSession>> {
    use impersonation_sessions::dsl as s;
    let query = s::impersonation_sessions
        .find(id)
        .select(ImpersonationSession::as_select());
    if lock {
        query.for_update().first(conn).await.optional()
    } else {
        query.first(conn).await.optional()
    }
}

pub async fn end_session(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    ended_by: &str,
) -> QueryResult<ImpersonationSession> {
    use impersonation_sessions::dsl as s;
    diesel::update(s::impersonation_sessions.find(id))
        .set((s::ended_at.eq(diesel::dsl::now), s::ended_by.eq(ended_by)))
        .returning(ImpersonationSession::as_returning())
        .get_result(conn)
        .await
}

#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub admin_id: Option<String>,
    pub user_id: Option<Uuid>,
    pub active_only: bool,
}

/// Sessions newest first (ids are UUIDv7), after the cursor `after`.
pub async fn list_sessions(
    conn: &mut AsyncPgConnection,
    filter: &SessionFilter,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<ImpersonationSession>> {
    use impersonation_sessions::dsl as s;
    let mut query = s::impersonation_sessions
        .select(ImpersonationSession::as_select())
        .order(s::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(admin) = &filter.admin_id {
        query = query.filter(s::admin_id.eq(admin.clone()));
    }
    if let Some(user) = filter.user_id {
        query = query.filter(s::user_id.eq(user));
    }
    if filter.active_only {
        query = query
            .filter(s::ended_at.is_null())
            .filter(s::expires_at.gt(diesel::dsl::now));
    }
    if let Some(after) = after {
        query = query.filter(s::id.lt(after));
    }
    query.load(conn).await
}
