//! The `collaborations` table, read joined with both users' emails.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::{Collaboration, CollaborationStatus};
use crate::schema::collaborations::dsl as c;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = crate::schema::collaborations, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    owner_id: Uuid,
    collaborator_id: Uuid,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

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
    let mut ids: Vec<Uuid> = rows
        .iter()
        .flat_map(|r| [r.owner_id, r.collaborator_id])
        .collect();
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
        .map(|r| Collaboration {
            id: r.id,
            owner_id: r.owner_id,
            owner_email: emails.get(&r.owner_id).cloned().unwrap_or_default(),
            collaborator_id: r.collaborator_id,
            collaborator_email: emails.get(&r.collaborator_id).cloned().unwrap_or_default(),
            status: CollaborationStatus::parse(&r.status).unwrap_or(CollaborationStatus::Revoked),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

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
        .returning(Row::as_returning())
        .get_result(conn)
        .await?;
    Ok(hydrate(conn, vec![row]).await?.remove(0))
}

pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Collaboration>> {
    let row: Option<Row> = c::collaborations
        .find(id)
        .select(Row::as_select())
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
        .returning(Row::as_returning())
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
        .select(Row::as_select())
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
