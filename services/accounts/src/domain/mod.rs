//! Accounts' rules, free of I/O and of proto types.

pub mod collaboration;
pub mod erasure;
pub mod identity;
pub mod status;
pub mod totp;
pub mod user;
pub mod validate;

pub use collaboration::{Collaboration, CollaborationStatus};
pub use erasure::{ErasureMode, Settings};
pub use status::{Refusal, StatusAction, UserStatus};
pub use user::{Group, Role, User};

/// Most users one batch command may name.
pub const MAX_BATCH: usize = 1000;
