//! Billing's refusals and constraint table, on kit's one error model.

pub use steward_kit::Error;
use steward_kit::{Constraint, Kind};

/// Constraint violations and the refusal each one means.
pub const CONSTRAINTS: &[Constraint] = &[
    Constraint {
        name: "ledger_one_registration_bonus",
        kind: Kind::Precondition,
        reason: "REGISTRATION_BONUS_GRANTED",
        message: "the user already received a registration bonus",
    },
    Constraint {
        name: "plans_product_name_key",
        kind: Kind::Exists,
        reason: "PLAN_EXISTS",
        message: "the product already has a plan of that name",
    },
];

pub fn insufficient_funds(balance: &str) -> Error {
    Error::precondition(
        "INSUFFICIENT_FUNDS",
        format!("the {balance} balance is lower than the amount"),
    )
}

pub fn is_insufficient_funds(err: &Error) -> bool {
    err.reason() == Some("INSUFFICIENT_FUNDS")
}

pub fn subscription_not_found(id: impl ToString) -> Error {
    Error::not_found("subscription", id)
}

pub fn subscription_not_active(status: &str) -> Error {
    Error::precondition(
        "SUBSCRIPTION_NOT_ACTIVE",
        format!("the subscription is {status}"),
    )
}
