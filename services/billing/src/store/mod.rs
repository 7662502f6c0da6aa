//! Queries of the billing schema. Every balance change is one guarded
//! statement (balance and ledger entry together): no SELECT ... FOR UPDATE
//! round trips, the row lock lives only until the short transaction ends.

pub mod ledger;
pub mod subscriptions;
pub mod usage;
