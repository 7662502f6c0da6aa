//! The account lifecycle.
//!
//! ```text
//!            activate                suspend
//!  INACTIVE ----------> ACTIVE <------------> SUSPENDED
//!     ^  \_____________/  |    activate         |
//!     |    deactivate     | destroy             | destroy / deactivate
//!     +-------------------+---------------------+
//!                         v
//!                     DESTROYED --(erase personal data)--> DELETED
//! ```
//! DESTROYED and DELETED are final for status commands; only erasure moves
//! DESTROYED (or any live status) to DELETED.

use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    Active,
    Inactive,
    Suspended,
    Destroyed,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Destroyed => "DESTROYED",
            Self::Deleted => "DELETED",
        }
    }

    /// Accounts that still hold personal data and may sign in eventually.
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Destroyed | Self::Deleted)
    }
}

impl FromStr for UserStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ACTIVE" => Self::Active,
            "INACTIVE" => Self::Inactive,
            "SUSPENDED" => Self::Suspended,
            "DESTROYED" => Self::Destroyed,
            "DELETED" => Self::Deleted,
            other => return Err(format!("unknown status {other}")),
        })
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    Activate,
    Suspend,
    Deactivate,
    Destroy,
}

impl StatusAction {
    pub fn target(self) -> UserStatus {
        match self {
            Self::Activate => UserStatus::Active,
            Self::Suspend => UserStatus::Suspended,
            Self::Deactivate => UserStatus::Inactive,
            Self::Destroy => UserStatus::Destroyed,
        }
    }

    /// The audit action recorded for a change by this command.
    pub fn audit_action(self) -> &'static str {
        match self {
            Self::Activate => "user.status.activated",
            Self::Suspend => "user.status.suspended",
            Self::Deactivate => "user.status.deactivated",
            Self::Destroy => "user.status.destroyed",
        }
    }
}

/// A domain refusal: machine reason plus human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Reasons for a user that no longer holds a live account: used by every
/// command that refuses one.
pub const USER_DELETED: &str = "USER_DELETED";
pub const USER_DESTROYED: &str = "USER_DESTROYED";

/// Refuses a user whose account is destroyed or erased.
pub fn ensure_live(status: UserStatus) -> Result<(), Refusal> {
    match status {
        UserStatus::Deleted => Err(Refusal::new(
            USER_DELETED,
            "user's personal data was erased",
        )),
        UserStatus::Destroyed => Err(Refusal::new(USER_DESTROYED, "user is destroyed")),
        _ => Ok(()),
    }
}

/// The status `action` leads to from `current`, or why it is refused.
pub fn transition(current: UserStatus, action: StatusAction) -> Result<UserStatus, Refusal> {
    use UserStatus::*;
    let target = action.target();
    if current == target {
        return Err(Refusal::new(
            "STATUS_UNCHANGED",
            format!("user is already {current}"),
        ));
    }
    match current {
        Deleted => Err(Refusal::new(
            USER_DELETED,
            "user's personal data was erased; no status change is possible",
        )),
        Destroyed => Err(Refusal::new(
            USER_DESTROYED,
            format!("a destroyed user cannot become {target}"),
        )),
        Active | Inactive | Suspended => Ok(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatusAction::*;
    use UserStatus::*;

    #[test]
    fn legal_transitions() {
        assert_eq!(transition(Inactive, Activate), Ok(Active));
        assert_eq!(transition(Suspended, Activate), Ok(Active));
        assert_eq!(transition(Active, Suspend), Ok(Suspended));
        assert_eq!(transition(Inactive, Suspend), Ok(Suspended));
        assert_eq!(transition(Active, Deactivate), Ok(Inactive));
        assert_eq!(transition(Suspended, Deactivate), Ok(Inactive));
        for from in [Active, Inactive, Suspended] {
            assert_eq!(transition(from, Destroy), Ok(Destroyed));
        }
    }

    #[test]
    fn only_live_users_pass() {
        for live in [Active, Inactive, Suspended] {
            assert!(ensure_live(live).is_ok());
        }
        assert_eq!(ensure_live(Deleted).unwrap_err().reason, USER_DELETED);
        assert_eq!(ensure_live(Destroyed).unwrap_err().reason, USER_DESTROYED);
    }

    #[test]
    fn illegal_transitions_have_reasons() {
        assert_eq!(
            transition(Active, Activate).unwrap_err().reason,
            "STATUS_UNCHANGED"
        );
        assert_eq!(
            transition(Destroyed, Destroy).unwrap_err().reason,
            "STATUS_UNCHANGED"
        );
        for action in [Activate, Suspend, Deactivate] {
            assert_eq!(
                transition(Destroyed, action).unwrap_err().reason,
                "USER_DESTROYED"
            );
        }
        for action in [Activate, Suspend, Deactivate, Destroy] {
            assert_eq!(
                transition(Deleted, action).unwrap_err().reason,
                "USER_DELETED"
            );
        }
    }
}
