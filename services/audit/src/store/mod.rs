//! Diesel queries of the audit schema, returning `QueryResult`, and the
//! writer's COPY path on tokio-postgres (`copy.rs`).

pub mod catalog;
pub mod copy;
pub mod events;
pub mod head;
pub mod partitions;
pub mod retention;
pub mod rollup;
pub mod schema;
