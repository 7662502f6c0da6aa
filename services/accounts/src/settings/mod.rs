//! Platform settings: the erasure mode and automatic erasure.

pub mod commands;
pub mod store;
