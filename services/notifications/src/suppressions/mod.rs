//! Addresses that hard-bounced. Mail to a suppressed address is
//! SUPPRESSED, never sent; an admin lifts an entry with DeleteSuppression.
//! Addresses are stored in one spelling (`domain::address::normalize`).

pub mod commands;
pub mod store;
