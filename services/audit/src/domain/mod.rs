//! Audit rules without I/O: the canonical form and hash chain, personal
//! data separation, event validation.

pub mod chain;
pub mod event;
pub mod seal;
pub mod validate;

/// Comment keys whose values are personal data: stored apart from the
/// chained bytes (covered by the salted digest) and blanked on erasure.
/// Free text (notes, reasons, device and token names) is personal data too:
/// people write emails and phone numbers into it.
pub const PII_COMMENT_KEYS: &[&str] = &[
    "notes",
    "reason",
    "device",
    "name",
    "token_name",
    "email",
    "old_email",
    "new_email",
    "phone",
    "collaborator_email",
    "ip",
    "user_agent",
];

pub fn is_pii_key(key: &str) -> bool {
    PII_COMMENT_KEYS.contains(&key)
}
