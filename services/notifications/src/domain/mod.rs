//! Notification rules without I/O: the status machine, address syntax,
//! retry decisions and template rendering. Unit-tested here.

pub mod address;
pub mod render;
pub mod retry;
pub mod status;

pub use status::Status;
