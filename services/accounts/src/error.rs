//! The accounts error enum and its one mapping to `tonic::Status`.

use diesel_async::pooled_connection::PoolError;
use steward_kit::{FieldViolations, error as kit_error, refusal};
use tonic::{Code, Status};

use crate::domain::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(FieldViolations),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A domain rule said no; `code` is FAILED_PRECONDITION, ABORTED,
    /// ALREADY_EXISTS or PERMISSION_DENIED.
    #[error("{}", .1.message)]
    Refused(Code, Refusal),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] bb8::RunError<PoolError>),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Refused(Code::FailedPrecondition, Refusal::new(reason, message))
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// The caller's fault (bad input, refused by a rule): audited as a
    /// FAILURE. Infrastructure errors are not: the audit write would fail
    /// the same way.
    pub fn is_domain(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_) | Self::NotFound { .. } | Self::Refused(..)
        )
    }
}

/// A reused key is the caller's mistake (a field violation); a stored
/// response that no longer decodes is ours.
impl From<steward_kit::idempotency::IdempotencyError> for Error {
    fn from(err: steward_kit::idempotency::IdempotencyError) -> Self {
        use steward_kit::idempotency::IdempotencyError as E;
        match err {
            E::Mismatch => {
                FieldViolations::single("request_id", "already used for a different request").into()
            }
            E::Decode(e) => Self::Internal(format!("stored response: {e}")),
            E::Database(e) => e.into(),
        }
    }
}

impl From<FieldViolations> for Error {
    fn from(v: FieldViolations) -> Self {
        Self::Invalid(v)
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(v) => v.into_status(),
            Error::NotFound { what, id } => refusal(
                Code::NotFound,
                &format!("{}_NOT_FOUND", what.to_uppercase()),
                format!("{what} {id} not found"),
            ),
            Error::Refused(code, r) => refusal(code, r.reason, r.message),
            Error::Database(e) => kit_error::database(&e),
            Error::Pool(e) => kit_error::pool(&e),
            Error::Internal(message) => {
                tracing::error!(%message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// `Caller::ensure_may_act_on` refusals arrive as a `Status`; keep them in
/// the enum so they are audited like other refusals.
pub fn denied(status: Status) -> Error {
    Error::Refused(
        Code::PermissionDenied,
        Refusal::new("NOT_YOUR_RESOURCE", status.message().to_owned()),
    )
}
