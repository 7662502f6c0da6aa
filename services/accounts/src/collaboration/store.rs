//! The `collaborations` table, read joined with both users' emails.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::{Collaboration, CollaborationStatus};
use crate::schema::collaborations::dsl as c;

type Row = (Uuid, Uuid, Uuid, String, DateTime<Utc>, DateTime<Utc>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rows where the user is the owner.
    SharedByUser,
    /// Rows where the user is the collaborator.
    SharedWithUser,
}

/// Emails are looked up separately (two small queries) rather than joining
/// `users` twice under aliases.
async fn hydrate(conn: &mut AsyncPgConnection, rows: Vec<Row>) -> QueryResult<Vec<Collaboration>> {
    use crate::schema::users::dsl as u;
    let mut ids: Vec<Uuid> = rows.iter().flat_map(|r| [r.1, r.2]).collect();
    ids.sort();
    ids.dedup();
    let emails: std::collections::HashMap<Uuid, String> = u::users
        .filter(u::id.eq_any(&ids))
        .select((u::id, u::email))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(
            |(id, owner_id, collaborator_id, status, created_at, updated_at)| Collaboration {
                id,
                owner_id,
                owner_email: emails.get(&owner_id).cloned().unwrap_or_default(),
                collaborator_id,
                collaborator_email: emails.get(&collaborator_id).cloned().unwrap_or_default(),
                status: CollaborationStatus::parse(&status).unwrap_or(CollaborationStatus::Revoked),
                created_at,
                updated_at,
            },
        )
        .collect())
}

const COLUMNS: (
    c::id,
    c::owner_id,
    c::collaborator_id,
    c::status,
    c::created_at,
    c::updated_at,
) = (
    c::id,
    c::owner_id,
    c::collaborator_id,
    c::status,
    c::created_at,
    c::updated_at,
);

pub async fn insert(
    conn: &mut AsyncPgConnection,
    owner_id: Uuid,
    collaborator_id: Uuid,
) -> QueryResult<Collaboration> {
    let row: Row = diesel::insert_into(c::collaborations)
        .values((
            c::id.eq(Uuid::now_v7()),
            c::owner_id.eq(owner_id),
            c::collaborator_id.eq(collaborator_id),
            c::status.eq(CollaborationStatus::Pending.as_str()),
        ))
        .returning(COLUMNS)
        .get_result(conn)
        .await?;
    Ok(hydrate(conn, vec![row]).await?.remove(0))
}

pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Collaboration>> {
    let row: Option<Row> = c::collaborations
        .find(id)
        .select(COLUMNS)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    match row {
        Some(row) => Ok(hydrate(conn, vec![row]).await?.pop()),
        None => Ok(None),
    }
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: CollaborationStatus,
) -> QueryResult<Collaboration> {
    let row: Row = diesel::update(c::collaborations.find(id))
        .set((
            c::status.eq(status.as_str()),
            c::updated_at.eq(diesel::dsl::now),
        ))
        .returning(COLUMNS)
        .get_result(conn)
        .await?;
    Ok(hydrate(conn, vec![row]).await?.remove(0))
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    direction: Direction,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Collaboration>> {
    let mut query = c::collaborations
        .select(COLUMNS)
        .order(c::id)
        .limit(limit)
        .into_boxed();
    query = match direction {
        Direction::SharedByUser => query.filter(c::owner_id.eq(user_id)),
        Direction::SharedWithUser => query.filter(c::collaborator_id.eq(user_id)),
    };
    if let Some(after) = after {
        query = query.filter(c::id.gt(after));
    }
    let rows = query.load::<Row>(conn).await?;
    hydrate(conn, rows).await
}

/// Revokes every open collaboration the user is a party to (erasure).
pub async fn revoke_open_for_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<()> {
    diesel::update(
        c::collaborations
            .filter(c::owner_id.eq(user_id).or(c::collaborator_id.eq(user_id)))
            .filter(c::status.ne(CollaborationStatus::Revoked.as_str())),
    )
    .set((
        c::status.eq(CollaborationStatus::Revoked.as_str()),
        c::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
    .map(|_| ())
}
