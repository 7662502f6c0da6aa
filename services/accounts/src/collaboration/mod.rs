//! Sharing an account with another user: invite, accept, revoke, list.

pub mod commands;
pub mod store;
