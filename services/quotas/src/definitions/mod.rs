//! The catalog of quota keys: seeded by the migration, extended by platform
//! services through `RegisterQuotaDefinitions`. A key's type never changes
//! (stored values would stop meaning what they meant).

pub mod commands;
pub mod store;
