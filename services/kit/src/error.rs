//! The one error model of Steward's services.
//!
//! Every service returns [`Error`]; its `error.rs` holds the refusals it
//! names (constructors) and its [`Constraint`] table. The mapping to
//! `tonic::Status` is here and nowhere else:
//!
//! * bad input: INVALID_ARGUMENT with `BadRequest` field violations (at most
//!   [`MAX_VIOLATIONS`] listed, then a count, so details stay small);
//! * domain refusals: a [`Kind`] plus `ErrorInfo { reason: UPPER_SNAKE }`;
//! * pool and connection failures, a server shutting down: UNAVAILABLE (the
//!   caller may retry);
//! * anything else from the database: INTERNAL with a fixed message; the
//!   database's own text is logged, never returned.

use std::borrow::Cow;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Steward refusal.
pub const ERROR_DOMAIN: &str = "steward";

/// Field violations listed in one answer; the rest are counted.
pub const MAX_VIOLATIONS: usize = 20;

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What kind of refusal: each maps to one gRPC code, in [`Error::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A rule forbids it in the current state (FAILED_PRECONDITION).
    Precondition,
    /// A concurrent change or a stale etag; read again and retry (ABORTED).
    Aborted,
    /// The resource exists already (ALREADY_EXISTS).
    Exists,
    /// The caller may not do this (PERMISSION_DENIED).
    Denied,
    /// No valid credentials (UNAUTHENTICATED).
    Unauthenticated,
    /// A limit was hit (RESOURCE_EXHAUSTED).
    Exhausted,
    /// A dependency is down; retry later (UNAVAILABLE). Not the caller's doing.
    Unavailable,
}

impl Kind {
    pub fn code(self) -> Code {
        match self {
            Kind::Precondition => Code::FailedPrecondition,
            Kind::Aborted => Code::Aborted,
            Kind::Exists => Code::AlreadyExists,
            Kind::Denied => Code::PermissionDenied,
            Kind::Unauthenticated => Code::Unauthenticated,
            Kind::Exhausted => Code::ResourceExhausted,
            Kind::Unavailable => Code::Unavailable,
        }
    }
}

/// The error every service command returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(FieldViolations),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{message}")]
    Refused {
        kind: Kind,
        reason: Cow<'static, str>,
        message: String,
    },
    #[error("database: {0}")]
    Database(#[from] DieselError),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn refused(
        kind: Kind,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::Refused {
            kind,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::refused(Kind::Precondition, reason, message)
    }

    pub fn denied(reason: &'static str, message: impl Into<String>) -> Self {
        Self::refused(Kind::Denied, reason, message)
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(FieldViolations::single(field, description))
    }

    /// The caller's doing (bad input, a rule said no): audited as FAILURE.
    /// Infrastructure errors are not: the audit write would fail the same way.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Invalid(_) | Self::NotFound { .. } => true,
            Self::Refused { kind, .. } => *kind != Kind::Unavailable,
            _ => false,
        }
    }

    /// The machine-readable reason, when the error has one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Refused { reason, .. } => Some(reason),
            Self::Invalid(_) => Some("INVALID_ARGUMENT"),
            _ => None,
        }
    }

    /// Replaces a constraint violation named in `table` by its refusal, and
    /// a NUL byte refused by PostgreSQL by a field violation; anything else
    /// is returned as it was.
    pub fn resolve(self, table: &[Constraint]) -> Self {
        let Self::Database(DieselError::DatabaseError(kind, info)) = &self else {
            return self;
        };
        if let Some(name) = info.constraint_name()
            && let Some(c) = table.iter().find(|c| c.name == name)
        {
            return Self::refused(c.kind, c.reason, c.message);
        }
        if matches!(kind, DatabaseErrorKind::Unknown) && info.message().contains("0x00") {
            return Self::invalid("*", "text must not contain NUL characters");
        }
        self
    }

    pub fn code(&self) -> Code {
        match self {
            Self::Invalid(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::Refused { kind, .. } => kind.code(),
            Self::Database(_) | Self::Internal(_) => Code::Internal,
            Self::Pool(_) => Code::Unavailable,
        }
    }
}

/// A named database constraint and the refusal its violation means; each
/// service lists its own in `error.rs`, and the command runner applies them.
#[derive(Debug, Clone, Copy)]
pub struct Constraint {
    pub name: &'static str,
    pub kind: Kind,
    pub reason: &'static str,
    pub message: &'static str,
}

impl From<FieldViolations> for Error {
    fn from(v: FieldViolations) -> Self {
        Self::Invalid(v)
    }
}

impl<E: std::error::Error + 'static> From<bb8::RunError<E>> for Error {
    fn from(err: bb8::RunError<E>) -> Self {
        Self::Pool(err.to_string())
    }
}

/// A reused key is the caller's mistake (a field violation); a stored
/// response that no longer decodes is ours.
impl From<crate::idempotency::IdempotencyError> for Error {
    fn from(err: crate::idempotency::IdempotencyError) -> Self {
        use crate::idempotency::IdempotencyError as E;
        match err {
            E::Mismatch => Self::invalid("request_id", "already used for a different request"),
            E::Decode(e) => Self::Internal(format!("stored response: {e}")),
            E::Database(e) => e.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(v) => v.into_status(),
            Error::NotFound { what, id } => refusal(
                Code::NotFound,
                &format!("{}_NOT_FOUND", what.to_uppercase()),
                format!("{what} {} not found", clip(&id, 128)),
            ),
            Error::Refused {
                kind,
                reason,
                message,
            } => refusal(kind.code(), &reason, message),
            Error::Database(e) => database(&e),
            Error::Pool(message) => {
                tracing::warn!(error = %message, "database pool unavailable");
                unavailable()
            }
            Error::Internal(message) => {
                tracing::error!(%message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

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

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// At most [`MAX_VIOLATIONS`] are listed, then one entry counting the
    /// rest: hundreds of bad repeated values must not make details so large
    /// that transports refuse the answer.
    pub fn into_status(self) -> Status {
        let total = self.0.len();
        let mut listed: Vec<(String, String)> = self.0.into_iter().take(MAX_VIOLATIONS).collect();
        if total > MAX_VIOLATIONS {
            listed.push((
                "*".to_owned(),
                format!("{} more violations not listed", total - MAX_VIOLATIONS),
            ));
        }
        let summary = listed
            .iter()
            .map(|(f, d)| format!("{f}: {}", clip(d, 200)))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for (field, description) in listed {
            details.add_bad_request_violation(clip(&field, 200), clip(&description, 500));
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
        DieselError::DatabaseError(_, info) if server_going_away(info.message()) => {
            tracing::warn!(error = %err, "database server going away");
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

/// PostgreSQL's messages for a server that is stopping, starting or cut
/// off (SQLSTATE class 57 and 08, which diesel does not expose by code).
fn server_going_away(message: &str) -> bool {
    const TRANSIENT: [&str; 6] = [
        "terminating connection",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "server closed the connection unexpectedly",
        "connection to server",
    ];
    TRANSIENT.iter().any(|t| message.contains(t))
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
    fn violations_are_capped() {
        let mut v = FieldViolations::new();
        for i in 0..300 {
            v.add(format!("roles[{i}]"), "unknown role ".repeat(20));
        }
        let status = v.into_status();
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), MAX_VIOLATIONS + 1);
        assert!(violations.last().unwrap().description.contains("280 more"));
        assert!(status.details().len() + status.message().len() < 16 * 1024);
    }

    #[test]
    fn admin_shutdown_is_unavailable() {
        let err = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("terminating connection due to administrator command".to_string()),
        );
        assert_eq!(Status::from(Error::from(err)).code(), Code::Unavailable);
    }

    #[test]
    fn constraints_map_by_table() {
        struct Info;
        impl diesel::result::DatabaseErrorInformation for Info {
            fn message(&self) -> &str {
                "duplicate key"
            }
            fn details(&self) -> Option<&str> {
                None
            }
            fn hint(&self) -> Option<&str> {
                None
            }
            fn table_name(&self) -> Option<&str> {
                None
            }
            fn column_name(&self) -> Option<&str> {
                None
            }
            fn constraint_name(&self) -> Option<&str> {
                Some("groups_pkey")
            }
            fn statement_position(&self) -> Option<i32> {
                None
            }
        }
        const TABLE: &[Constraint] = &[Constraint {
            name: "groups_pkey",
            kind: Kind::Exists,
            reason: "GROUP_EXISTS",
            message: "the group exists",
        }];
        let err = Error::from(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(Info),
        ))
        .resolve(TABLE);
        assert_eq!(err.code(), Code::AlreadyExists);
        assert_eq!(err.reason(), Some("GROUP_EXISTS"));
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
