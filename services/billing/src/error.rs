//! The billing error enum and its one mapping to `tonic::Status`.

use diesel_async::pooled_connection::PoolError;
use steward_kit::{FieldViolations, error as kit_error, refusal};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(FieldViolations),
    #[error("{message}")]
    Refused {
        code: Code,
        reason: &'static str,
        message: String,
    },
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] bb8::RunError<PoolError>),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn insufficient_funds(balance: &str) -> Self {
        Self::Refused {
            code: Code::FailedPrecondition,
            reason: "INSUFFICIENT_FUNDS",
            message: format!("the {balance} balance is lower than the amount"),
        }
    }

    /// Audited as FAILURE (the caller's or a rule's doing).
    pub fn is_domain(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Refused { .. })
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
            Error::Refused {
                code,
                reason,
                message,
            } => refusal(code, reason, message),
            Error::Database(e) => kit_error::database(&e),
            Error::Pool(e) => kit_error::pool(&e),
            Error::Internal(message) => {
                tracing::error!(%message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
