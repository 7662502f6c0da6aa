//! Audit's errors: kit's one error model ([`Error`], mapped to
//! `tonic::Status` in kit), the refusals this service names, and its
//! constraint table.

pub use steward_kit::Error;
use steward_kit::{Constraint, Kind};

/// Audit's writes conflict on nothing a caller controls: events are
/// deduplicated, catalog and policies are upserts of validated input. A
/// violation left is a bug and stays INTERNAL.
pub const CONSTRAINTS: &[Constraint] = &[];

/// The writer or its database is gone for now: retry (ingest redelivers).
pub fn unavailable(message: impl Into<String>) -> Error {
    Error::refused(Kind::Unavailable, "AUDIT_UNAVAILABLE", message)
}

/// An internal invariant did not hold.
pub fn internal(message: impl Into<String>) -> Error {
    Error::Internal(message.into())
}
