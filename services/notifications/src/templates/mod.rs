//! Named, versioned, per-locale templates.
//!
//! Invariant: a version, once written, never changes; an update writes the
//! next version and moves `current_version`, so every sent mail can name
//! the text it was rendered from. A template is checked whole (syntax,
//! variables, a sample render) before anything is written.

pub mod commands;
pub mod seed;
pub mod store;
