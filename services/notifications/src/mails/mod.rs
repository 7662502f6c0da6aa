//! Mail: ingest of notification requests (one mail per recipient, rendered
//! at once), the admin view and resending.
//!
//! Invariants: a request's event id is claimed in the ingest transaction,
//! so a retry or a relay redelivery queues nothing twice; a batch is
//! validated whole and refused whole; every status change writes a
//! timestamped `mail_events` row in the same statement or transaction.

pub mod commands;
pub mod store;
