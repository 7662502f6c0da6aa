//! Plans, subscriptions and invoices.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: Uuid,
    pub product: String,
    pub name: String,
    pub price: Decimal,
    pub period_days: i32,
    pub created_at: DateTime<Utc>,
}

impl Plan {
    pub fn period(&self) -> Duration {
        Duration::days(self.period_days.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Cancelled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "ACTIVE" => Self::Active,
            "CANCELLED" => Self::Cancelled,
            _ => Self::Expired,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: Uuid,
    pub user_id: Uuid,
    pub plan: Plan,
    pub status: Status,
    pub environments: Vec<String>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// What the renewal job does with a subscription whose period ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Invoice and charge the next period.
    Renew,
    /// Cancelled earlier: it ends now.
    Expire,
}

pub fn renewal(status: Status) -> Option<Renewal> {
    match status {
        Status::Active => Some(Renewal::Renew),
        Status::Cancelled => Some(Renewal::Expire),
        Status::Expired => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub amount: Decimal,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_by_status() {
        assert_eq!(renewal(Status::Active), Some(Renewal::Renew));
        assert_eq!(renewal(Status::Cancelled), Some(Renewal::Expire));
        assert_eq!(renewal(Status::Expired), None);
    }
}
