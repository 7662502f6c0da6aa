//! quotas' own copy of each user's group: fed by accounts' membership
//! events through its outbox (deduplicated by event id, older events
//! ignored), and for a user not heard of yet asked from accounts once.

pub mod accounts;
pub mod commands;
pub mod store;
