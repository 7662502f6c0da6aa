//! The gateway arrives with its own issue (identity + gateway). Until then the
//! services are called directly; each enforces authn and method policy itself
//! through `steward-kit`.
