//! Diesel queries of the accounts schema. Functions return `QueryResult`;
//! deciding what an error means is the caller's job.

pub mod collaborations;
pub mod groups;
pub mod identity;
pub mod schema;
pub mod settings;
pub mod users;

use diesel::result::{DatabaseErrorKind, Error};

/// Was this a unique-constraint violation on `constraint`?
pub fn is_unique_violation(err: &Error, constraint: &str) -> bool {
    matches!(
        err,
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint)
    )
}
