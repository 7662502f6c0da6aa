//! Groups users belong to (pricing, quotas).

pub mod commands;
pub mod store;
