//! Plans, subscriptions with their first-period charge, invoices, and the
//! renewal job.
//!
//! Invariant: a period is invoiced once (unique (subscription, period
//! start)) and never charged into debt: a renewal the user cannot pay for
//! leaves no invoice and the subscription expires.

pub mod commands;
pub mod renewal;
pub mod store;
