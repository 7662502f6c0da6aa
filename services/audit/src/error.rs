//! The audit error enum and its one mapping to `tonic::Status`.

use diesel_async::pooled_connection::PoolError;
use steward_kit::{FieldViolations, error as kit_error, refusal};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(FieldViolations),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{message}")]
    Denied {
        reason: &'static str,
        message: String,
    },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] bb8::RunError<PoolError>),
    #[error("internal: {0}")]
    Internal(String),
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
            Error::Denied { reason, message } => refusal(Code::PermissionDenied, reason, message),
            Error::Unavailable(message) => refusal(Code::Unavailable, "AUDIT_UNAVAILABLE", message),
            Error::Database(e) => kit_error::database(&e),
            Error::Pool(e) => kit_error::pool(&e),
            Error::Internal(message) => {
                tracing::error!(%message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
