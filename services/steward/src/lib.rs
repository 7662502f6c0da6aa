//! steward: every Steward component in one binary, and the one place that
//! composes them ([`suite::Suite`]), used by the binary and the tests alike.

pub mod config;
pub mod resolve;
pub mod suite;

use clap::ValueEnum;

/// The components of the suite.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Gateway,
    Accounts,
    Billing,
    Quotas,
    Audit,
    Notifications,
}

impl Component {
    /// The services with a database schema, in migration order.
    pub const SERVICES: [Component; 5] = [
        Component::Accounts,
        Component::Audit,
        Component::Billing,
        Component::Quotas,
        Component::Notifications,
    ];

    /// Every component this release has, in start order.
    pub const ALL: [Component; 6] = [
        Component::Audit,
        Component::Notifications,
        Component::Quotas,
        Component::Accounts,
        Component::Billing,
        Component::Gateway,
    ];

    /// The name used in package names, backends and logs.
    pub fn name(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Accounts => "accounts",
            Component::Billing => "billing",
            Component::Quotas => "quotas",
            Component::Audit => "audit",
            Component::Notifications => "notifications",
        }
    }

    /// Whether this release has the component.
    pub fn exists(self) -> bool {
        Self::ALL.contains(&self)
    }

    /// The database schema of a service (none for the gateway).
    pub fn schema(self) -> Option<&'static str> {
        match self {
            Component::Accounts => Some(steward_accounts::SCHEMA),
            Component::Audit => Some(steward_audit::SCHEMA),
            Component::Billing => Some(steward_billing::SCHEMA),
            Component::Quotas => Some(steward_quotas::SCHEMA),
            Component::Notifications => Some(steward_notifications::SCHEMA),
            _ => None,
        }
    }
}
