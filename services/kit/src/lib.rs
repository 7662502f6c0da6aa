//! steward-kit: the one place for what every Steward service shares.
//!
//! Services depend on this crate for configuration, telemetry, the database
//! pool and migrations, error mapping, request context, authentication and
//! method policy, page tokens, idempotency, the transactional outbox and
//! server bootstrap. Nothing here knows about a particular service.

pub mod auth;
pub mod config;
pub mod context;
pub mod db;
pub mod devdb;
pub mod error;
pub mod idempotency;
pub mod outbox;
pub mod page;
mod schema;
pub mod server;
pub mod telemetry;

pub use context::RequestContext;
pub use error::{FieldViolations, refusal};
