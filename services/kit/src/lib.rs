//! steward-kit: the one place for what every Steward service shares.
//!
//! Services depend on this crate for configuration, telemetry, the database
//! pool and migrations, error mapping, request context, authentication and
//! method policy, page tokens, idempotency, the transactional outbox and
//! server bootstrap. Nothing here knows about a particular service.

pub mod auth;
pub mod command;
pub mod config;
pub mod context;
pub mod db;
pub mod devdb;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod outbox;
pub mod page;
mod schema;
pub mod server;
pub mod telemetry;
pub mod validate;

pub use command::{Commands, Key, Tx};
pub use context::RequestContext;
pub use error::{Constraint, Error, FieldViolations, Kind, refusal};
