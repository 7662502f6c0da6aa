//! Notifications' refusals and constraint table, on kit's one error model.

pub use steward_kit::Error;
use steward_kit::{Constraint, Kind};

/// Constraint violations and the refusal each one means.
pub const CONSTRAINTS: &[Constraint] = &[Constraint {
    name: "templates_pkey",
    kind: Kind::Exists,
    reason: "TEMPLATE_EXISTS",
    message: "a template with this id exists",
}];

pub fn template_not_found(id: impl ToString) -> Error {
    Error::not_found("template", id)
}

pub fn mail_not_found(id: impl ToString) -> Error {
    Error::not_found("mail", id)
}

pub fn suppression_not_found(address: impl ToString) -> Error {
    Error::not_found("suppression", address)
}

pub fn address_suppressed(address: &str) -> Error {
    Error::precondition(
        "ADDRESS_SUPPRESSED",
        format!("{address} is suppressed after a hard bounce; delete the suppression first"),
    )
}
