//! Quotas' refusals and constraint table, on kit's one error model.

pub use steward_kit::Error;
use steward_kit::{Constraint, Kind};
use uuid::Uuid;

/// Constraint violations and the refusal each one means.
pub const CONSTRAINTS: &[Constraint] = &[
    Constraint {
        name: "group_values_key_fkey",
        kind: Kind::Precondition,
        reason: "QUOTA_KEY_UNKNOWN",
        message: "the quota key does not exist",
    },
    Constraint {
        name: "overrides_key_fkey",
        kind: Kind::Precondition,
        reason: "QUOTA_KEY_UNKNOWN",
        message: "the quota key does not exist",
    },
];

pub fn user_not_found(id: Uuid) -> Error {
    Error::not_found("user", id)
}

pub fn type_fixed(key: &str, was: &str) -> Error {
    Error::precondition(
        "QUOTA_TYPE_FIXED",
        format!("{key} is a {was} quota; a definition's type never changes"),
    )
}

pub fn other_product(key: &str, product: &str) -> Error {
    Error::precondition(
        "QUOTA_KEY_OF_OTHER_PRODUCT",
        format!("{key} is defined by {product}"),
    )
}

pub fn enum_values_removed(key: &str) -> Error {
    Error::precondition(
        "QUOTA_ENUM_VALUES_REMOVED",
        format!("{key}: allowed values may be added, not removed (stored values use them)"),
    )
}

pub fn same_group() -> Error {
    Error::invalid("source_group", "must differ from group")
}
