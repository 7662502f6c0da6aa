//! The user and group records as the domain sees them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::UserStatus;

pub use steward_kit::auth::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub status: UserStatus,
    pub group: String,
    pub roles: Vec<Role>,
    pub phone: Option<String>,
    pub signup_at: DateTime<Utc>,
    pub reseller: Option<String>,
    pub notes: String,
    pub ext_billing_id: Option<String>,
    pub two_factor_enabled: bool,
    pub upgrade_in_progress: bool,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub destroyed_at: Option<DateTime<Utc>>,
}

impl User {
    /// The etag clients echo back to refuse stale writes.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub display_name: String,
    pub built_in: bool,
    pub created_at: DateTime<Utc>,
}
