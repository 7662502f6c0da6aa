//! Applying accounts' membership events.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use steward_kit::{RequestContext, auth::Caller, outbox::AuditRecord};
use steward_proto::audit::Category;
use uuid::Uuid;

use super::store;
use crate::{
    SOURCE,
    cache::{Touched, announce},
    error::Error,
    users::store as overrides,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    UserCreated,
    GroupChanged,
    UserErased,
}

/// A validated membership event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub kind: EventKind,
    pub user: Uuid,
    pub group: String,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Applied {
    pub applied: usize,
    pub duplicates: usize,
    pub touched: Touched,
    pub seq: i64,
}

/// Applies a batch in one transaction: an event id seen before is a
/// duplicate; an event older than the user's last applied one changes
/// nothing. Erasure drops the user's overrides.
pub async fn apply(conn: &mut AsyncPgConnection, events: &[Event]) -> Result<Applied, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        let mut done = Applied::default();
        for event in events {
            if !store::claim_event(conn, event.id).await? {
                done.duplicates += 1;
                continue;
            }
            done.applied += 1;
            let erased = event.kind == EventKind::UserErased;
            if store::apply(conn, event.user, &event.group, erased, event.id).await? {
                if erased {
                    let removed = overrides::delete_all(conn, event.user).await?;
                    if !removed.is_empty() {
                        erasure_record(event, &removed).write(conn).await?;
                    }
                }
                done.touched.users.insert(event.user);
            }
        }
        if !done.touched.is_empty() {
            done.seq = announce(conn, &done.touched).await?;
        }
        Ok(done)
    })
    .await
}

/// The user's log says which overrides went with their personal data (keys
/// and values: no personal data), in the transaction that deleted them.
fn erasure_record(event: &Event, removed: &[overrides::OverrideRow]) -> AuditRecord {
    let values: Vec<String> = removed
        .iter()
        .map(|(key, value, unlimited)| {
            if *unlimited {
                format!("{key}=unlimited")
            } else {
                format!("{key}={value}")
            }
        })
        .collect();
    AuditRecord::new(
        SOURCE,
        "quotas.user.overrides_erased",
        &Caller::system(),
        &RequestContext::default(),
        &event.user.to_string(),
    )
    .category(Category::System)
    .comment("accounts_event_id", event.id.to_string())
    .comment("removed", values.join(", "))
}
