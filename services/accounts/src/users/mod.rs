//! Users: registration, profile, email, roles, notes, and the batch status
//! and group commands.

pub mod batch;
pub mod commands;
pub mod store;
