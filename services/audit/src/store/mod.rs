//! Diesel queries of the audit schema, returning `QueryResult`.

pub mod catalog;
pub mod events;
pub mod partitions;
pub mod retention;
pub mod rollup;
pub mod schema;
