//! Commands over many users at once. Each user gets its own audit record
//! and its own result; a refusal for one user does not stop the others.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use steward_kit::{Tx, outbox::AuditRecord};
use uuid::Uuid;

use super::store::{self as users, UserChanges};
use crate::{
    domain::{Refusal, StatusAction, User, UserStatus, status},
    error::Error,
    groups::store as groups,
    identity::revocations,
    notify,
};

/// What happened to one user of a batch.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    /// The user after the change, or as found when it was refused.
    pub user: Option<User>,
    pub refusal: Option<Refusal>,
}

/// A batch in progress: its users locked (in id order, so concurrent
/// batches cannot deadlock) and the outcomes so far. Each user's record is
/// the command's, on the user's log; missing users and refusals are
/// audited as FAILURE, and an `Err` aborts the whole batch.
pub struct Batch {
    found: HashMap<Uuid, User>,
    outcomes: Vec<Outcome>,
}

impl Batch {
    pub async fn lock(tx: &mut Tx<'_>, ids: &[Uuid]) -> Result<Self, Error> {
        tx.only_extra();
        let found = users::lock_many(tx.conn, ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        Ok(Self {
            found,
            outcomes: Vec::with_capacity(ids.len()),
        })
    }

    /// The user `id` and its record, or `None` (already recorded) when no
    /// such user exists.
    pub fn next(&mut self, tx: &mut Tx<'_>, id: Uuid) -> Option<(User, AuditRecord)> {
        let event = tx.record().clone().subject(&id.to_string());
        match self.found.get(&id) {
            Some(user) => Some((user.clone(), event)),
            None => {
                let missing = Refusal::new("USER_NOT_FOUND", "user not found");
                self.done(tx, id, event, Err(missing));
                None
            }
        }
    }

    /// Records what happened to `id`: the changed user, or a refusal.
    pub fn done(
        &mut self,
        tx: &mut Tx<'_>,
        id: Uuid,
        event: AuditRecord,
        result: Result<User, Refusal>,
    ) {
        let outcome = match result {
            Ok(user) => {
                tx.audit(event);
                Outcome {
                    id,
                    user: Some(user),
                    refusal: None,
                }
            }
            Err(refusal) => {
                tx.audit(event.failed(refusal.message.clone()));
                Outcome {
                    id,
                    user: self.found.get(&id).cloned(),
                    refusal: Some(refusal),
                }
            }
        };
        self.outcomes.push(outcome);
    }

    pub fn outcomes(self) -> Vec<Outcome> {
        self.outcomes
    }
}

#[derive(Debug, Clone)]
pub struct StatusChange {
    pub ids: Vec<Uuid>,
    pub action: StatusAction,
    pub reason: String,
}

/// Moves each user along the lifecycle (see [`status::transition`]).
pub async fn change_status(tx: &mut Tx<'_>, input: StatusChange) -> Result<Vec<Outcome>, Error> {
    let StatusChange {
        ids,
        action,
        reason,
    } = input;
    tx.note(|r| r.action(action.audit_action()).comment("reason", reason));
    let mut batch = Batch::lock(tx, &ids).await?;
    for id in ids {
        if let Some((user, mut event)) = batch.next(tx, id) {
            let result = move_status(tx.conn, &user, action, &mut event).await?;
            batch.done(tx, id, event, result);
        }
    }
    Ok(batch.outcomes())
}

async fn move_status(
    conn: &mut AsyncPgConnection,
    user: &User,
    action: StatusAction,
    event: &mut AuditRecord,
) -> Result<Result<User, Refusal>, Error> {
    *event = event.clone().comment("from", user.status.as_str());
    let target = match status::transition(user.status, action) {
        Ok(target) => target,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let changes = UserChanges {
        status: Some(target.as_str().to_owned()),
        destroyed_at: (target == UserStatus::Destroyed).then_some(Some(chrono::Utc::now())),
        ..UserChanges::default()
    };
    let updated = users::update(conn, user.id, changes).await?;
    if target != UserStatus::Active {
        // Tokens already handed out stop now, not when they expire.
        revocations::revoke_user(conn, user.id).await?;
    }
    *event = event.clone().comment("to", target.as_str());
    Ok(Ok(updated))
}

#[derive(Debug, Clone)]
pub struct GroupChange {
    pub ids: Vec<Uuid>,
    pub group: String,
    /// The notification template to send each moved user, if any.
    pub notify: Option<String>,
}

/// Moves live users to `group`, optionally telling each of them.
pub async fn change_group(tx: &mut Tx<'_>, input: GroupChange) -> Result<Vec<Outcome>, Error> {
    if !groups::exists(tx.conn, &input.group).await? {
        return Err(Error::invalid("group", "unknown group"));
    }
    tx.note(|r| r.comment("to", input.group.clone()));
    let mut batch = Batch::lock(tx, &input.ids).await?;
    for id in input.ids.iter().copied() {
        if let Some((user, mut event)) = batch.next(tx, id) {
            let result = move_group(tx.conn, &user, &input, &mut event).await?;
            batch.done(tx, id, event, result);
        }
    }
    Ok(batch.outcomes())
}

async fn move_group(
    conn: &mut AsyncPgConnection,
    user: &User,
    input: &GroupChange,
    event: &mut AuditRecord,
) -> Result<Result<User, Refusal>, Error> {
    let group = &input.group;
    if let Err(refusal) = status::ensure_live(user.status) {
        return Ok(Err(refusal));
    }
    if user.group == *group {
        return Ok(Err(Refusal::new(
            "GROUP_UNCHANGED",
            format!("user is already in {group}"),
        )));
    }
    let changes = UserChanges {
        group_name: Some(group.clone()),
        ..UserChanges::default()
    };
    let updated = users::update(conn, user.id, changes).await?;
    crate::quotas::membership(
        conn,
        crate::quotas::MembershipKind::GroupChanged,
        user.id,
        group,
    )
    .await?;
    *event = event
        .clone()
        .comment("from", user.group.clone())
        .comment("notify", input.notify.is_some().to_string());
    if let Some(template) = &input.notify {
        let params = HashMap::from([
            ("old_group".to_owned(), user.group.clone()),
            ("new_group".to_owned(), group.clone()),
        ]);
        let recipients = vec![updated.email.clone()];
        notify::send(conn, template, recipients, &updated, params).await?;
    }
    Ok(Ok(updated))
}
