//! Personal-data erasure: on request (`BatchDeletePersonalData`) and by the
//! background job once a destroyed account's delay has passed.

pub mod commands;
pub mod job;
