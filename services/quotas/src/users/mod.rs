//! Users' quotas: overrides, effective values with their source, the bulk
//! edit, reset to the group value, the preview of a group change and the
//! platform's check.

pub mod commands;
pub mod resolver;
pub mod store;
