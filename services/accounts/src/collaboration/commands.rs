//! Collaboration use cases. Every change is audited on the owner's log.

use steward_kit::Tx;
use uuid::Uuid;

use super::store as collaborations;
use crate::{
    domain::{Collaboration, CollaborationStatus, Refusal, collaboration},
    error::{self, Error},
    users::{commands::load_user, store as users},
};

#[derive(Debug, Clone)]
pub struct Invitation {
    pub owner_id: Uuid,
    pub collaborator_email: String,
}

/// Shares the owner's account with the live user holding the email; an
/// open share between the two is refused through the constraint table.
pub async fn create(tx: &mut Tx<'_>, input: Invitation) -> Result<Collaboration, Error> {
    let owner = load_user(tx.conn, input.owner_id).await?;
    error::ensure_live(&owner)?;
    let email = &input.collaborator_email;
    let collaborator = users::find_live_by_email(tx.conn, email)
        .await?
        .filter(|u| u.status.is_live())
        .ok_or_else(|| error::user_not_found(email))?;
    if collaborator.id == owner.id {
        return Err(Error::invalid(
            "collaborator_email",
            "cannot share an account with itself",
        ));
    }
    let created = collaborations::insert(tx.conn, owner.id, collaborator.id).await?;
    tx.note(|r| {
        r.comment("collaboration_id", created.id.to_string())
            .comment("collaborator_user_id", collaborator.id.to_string())
    });
    Ok(created)
}

/// Who moves a collaboration, and to where.
#[derive(Debug, Clone, Copy)]
pub enum Transition {
    /// The invited user accepts.
    Accept { caller: Uuid },
    /// A party, or an administrator (`privileged`), revokes.
    Revoke { caller: Uuid, privileged: bool },
}

#[derive(Debug, Clone, Copy)]
pub struct Move {
    pub id: Uuid,
    pub transition: Transition,
}

/// Moves a collaboration to the status its rule allows.
pub async fn transition(tx: &mut Tx<'_>, input: Move) -> Result<Collaboration, Error> {
    let current = collaborations::lock(tx.conn, input.id)
        .await?
        .ok_or_else(|| Error::not_found("collaboration", input.id))?;
    let next: Result<CollaborationStatus, Refusal> = match input.transition {
        Transition::Accept { caller } => collaboration::accept(&current, caller),
        Transition::Revoke { caller, privileged } => {
            collaboration::revoke(&current, caller, privileged)
        }
    };
    let status = next.map_err(error::collaboration)?;
    let updated = collaborations::set_status(tx.conn, input.id, status).await?;
    tx.note(|r| {
        r.subject(&current.owner_id.to_string())
            .comment("collaboration_id", input.id.to_string())
    });
    Ok(updated)
}
