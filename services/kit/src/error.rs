//! The shared vocabulary of gRPC errors. Services map their own error enum
//! onto these helpers in one `From<Error> for tonic::Status`; nothing else
//! builds a `Status` by hand.
//!
//! * bad input: INVALID_ARGUMENT with `BadRequest` field violations;
//! * domain refusals: a code plus `ErrorInfo { reason: UPPER_SNAKE }`;
//! * pool and connection failures: UNAVAILABLE (the caller may retry);
//! * anything else from the database: INTERNAL with a fixed message; the
//!   database's own text is logged, never returned.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Steward refusal.
pub const ERROR_DOMAIN: &str = "steward";

/// Accumulates field violations so a request reports all its problems at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations(Vec<(String, String)>);

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _)| f.as_str())
    }

    /// `Ok(())` when nothing was added, so validators end with `v.check()?`.
    pub fn check(self) -> Result<(), FieldViolations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    pub fn merge(&mut self, other: FieldViolations) {
        self.0.extend(other.0);
    }

    pub fn into_status(self) -> Status {
        let summary = self
            .0
            .iter()
            .map(|(f, d)| format!("{f}: {d}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for (field, description) in self.0 {
            details.add_bad_request_violation(field, description);
        }
        Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {summary}"),
            details,
        )
    }
}

impl std::fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (field, description)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field}: {description}")?;
        }
        Ok(())
    }
}

/// A domain refusal: `code` (FAILED_PRECONDITION, ABORTED, NOT_FOUND, ...)
/// with an `ErrorInfo` carrying the machine-readable `reason`.
pub fn refusal(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(
        reason,
        ERROR_DOMAIN,
        std::collections::HashMap::<String, String>::new(),
    );
    Status::with_error_details(code, message, details)
}

/// Maps a database error that the service did not handle itself.
pub fn database(err: &DieselError) -> Status {
    match err {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => {
            tracing::warn!(error = %err, "database connection lost");
            unavailable()
        }
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => refusal(
            Code::Aborted,
            "CONCURRENT_UPDATE",
            "concurrent update, retry",
        ),
        _ => {
            tracing::error!(error = %err, "database error");
            Status::internal("internal error")
        }
    }
}

/// The pool could not hand out a connection in time.
pub fn pool<E: std::error::Error + 'static>(err: &bb8::RunError<E>) -> Status {
    tracing::warn!(error = %err, "database pool unavailable");
    unavailable()
}

fn unavailable() -> Status {
    refusal(
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
        "the database is unavailable, retry later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_violations_become_bad_request_details() {
        let mut v = FieldViolations::new();
        v.add("email", "must be a valid address");
        v.add("notes", "at most 4096 characters");
        let status = v.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|f| f.field.clone())
            .collect();
        assert_eq!(fields, ["email", "notes"]);
    }

    #[test]
    fn database_text_never_leaks() {
        let err = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("relation \"secret_table\" does not exist".to_string()),
        );
        let status = database(&err);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret_table"));
    }

    #[test]
    fn refusal_carries_reason() {
        let status = refusal(Code::FailedPrecondition, "ILLEGAL", "no");
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "ILLEGAL");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }
}
