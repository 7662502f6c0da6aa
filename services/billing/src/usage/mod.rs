//! Usage records from the platform, priced by the group's tariff and
//! charged bonus first; billing history and environments read from them.
//!
//! Invariant: a usage id is stored once; a batch charges only its records
//! that were new, so a redelivered batch never charges twice.

pub mod commands;
pub mod store;
