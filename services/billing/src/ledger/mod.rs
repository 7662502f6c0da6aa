//! Balances and their ledger: refills, withdrawals, bonuses, funding history.
//!
//! Invariant: a balance and its ledger entries change together, so a
//! balance always equals the sum of its entries: either one guarded SQL
//! statement that updates the balance and writes its entry (usage,
//! subscriptions, bonuses), or, for refills and withdrawals, the
//! `batcher`'s transaction, which locks a shard's accounts once per batch
//! and writes every decided entry and final balance together.

pub mod batcher;
pub mod commands;
mod decide;
pub mod history;
pub mod store;
