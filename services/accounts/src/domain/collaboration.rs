//! Sharing an account with another user.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Refusal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollaborationStatus {
    Pending,
    Active,
    Revoked,
}

impl CollaborationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "ACTIVE" => Some(Self::Active),
            "REVOKED" => Some(Self::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collaboration {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub owner_email: String,
    pub collaborator_id: Uuid,
    pub collaborator_email: String,
    pub status: CollaborationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Refusal reasons that concern who the caller is (not the share's state).
pub const NOT_COLLABORATOR: &str = "NOT_COLLABORATOR";
pub const NOT_A_PARTY: &str = "NOT_A_PARTY";

/// Only the invited user accepts, and only a pending invitation.
pub fn accept(c: &Collaboration, caller: Uuid) -> Result<CollaborationStatus, Refusal> {
    if c.collaborator_id != caller {
        return Err(Refusal::new(
            NOT_COLLABORATOR,
            "only the invited user may accept a collaboration",
        ));
    }
    match c.status {
        CollaborationStatus::Pending => Ok(CollaborationStatus::Active),
        other => Err(Refusal::new(
            "COLLABORATION_NOT_PENDING",
            format!("collaboration is {}", other.as_str()),
        )),
    }
}

/// Owner, collaborator or an administrator (`privileged`) may revoke.
pub fn revoke(
    c: &Collaboration,
    caller: Uuid,
    privileged: bool,
) -> Result<CollaborationStatus, Refusal> {
    if !privileged && caller != c.owner_id && caller != c.collaborator_id {
        return Err(Refusal::new(
            NOT_A_PARTY,
            "only the owner, the collaborator or an administrator may revoke",
        ));
    }
    match c.status {
        CollaborationStatus::Revoked => Err(Refusal::new(
            "COLLABORATION_REVOKED",
            "collaboration is already revoked",
        )),
        _ => Ok(CollaborationStatus::Revoked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collab(status: CollaborationStatus) -> Collaboration {
        Collaboration {
            id: Uuid::now_v7(),
            owner_id: Uuid::from_u128(1),
            owner_email: "o@x.io".into(),
            collaborator_id: Uuid::from_u128(2),
            collaborator_email: "c@x.io".into(),
            status,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn accept_and_revoke_rules() {
        let pending = collab(CollaborationStatus::Pending);
        assert_eq!(
            accept(&pending, Uuid::from_u128(2)),
            Ok(CollaborationStatus::Active)
        );
        assert!(accept(&pending, Uuid::from_u128(1)).is_err());
        assert!(accept(&collab(CollaborationStatus::Active), Uuid::from_u128(2)).is_err());
        assert!(revoke(&pending, Uuid::from_u128(1), false).is_ok());
        assert!(revoke(&pending, Uuid::from_u128(3), false).is_err());
        assert!(revoke(&pending, Uuid::from_u128(3), true).is_ok());
        assert!(
            revoke(
                &collab(CollaborationStatus::Revoked),
                Uuid::from_u128(1),
                false
            )
            .is_err()
        );
    }
}
