//! Balances and their ledger: refills, withdrawals, bonuses, funding history.
//!
//! Invariant: every balance change is one guarded SQL statement that updates
//! the balance and writes its ledger entry together (no SELECT ... FOR
//! UPDATE round trip; the row lock lives only until the short transaction
//! ends), so a balance always equals the sum of its entries.

pub mod commands;
pub mod store;
