//! Values per group: a group without a value for a key inherits the
//! definition's default; a new group may copy a source group's values.

pub mod commands;
pub mod store;
