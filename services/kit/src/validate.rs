//! Input rules every service shares, each with one message. A validator
//! adds to a [`FieldViolations`] so a request reports all its problems at
//! once; the caller ends with `v.check()?`.

use uuid::Uuid;

use crate::error::FieldViolations;

/// Rows a list returns when `page_size` is 0.
pub const DEFAULT_PAGE: usize = 50;
/// The largest page a list returns, whatever `page_size` asks.
pub const MAX_PAGE: usize = 500;
/// Longest idempotency key.
pub const MAX_REQUEST_ID: usize = 128;
/// Longest free text (notes, comments).
pub const MAX_NOTES: usize = 4096;
/// Longest short text (names, reasons, labels).
pub const MAX_TEXT: usize = 256;

/// A UUID; the nil UUID stands in when it does not parse.
pub fn id(field: &str, raw: &str, v: &mut FieldViolations) -> Uuid {
    match Uuid::parse_str(raw) {
        Ok(id) => id,
        Err(_) => {
            v.add(field, "must be a UUID");
            Uuid::nil()
        }
    }
}

/// An idempotency key. `required` is the RPC's contract (money commands
/// require one); an empty optional key executes without replay protection.
pub fn request_id(raw: &str, required: bool, v: &mut FieldViolations) {
    if raw.is_empty() {
        if required {
            v.add("request_id", "required: an idempotency key, e.g. a UUID");
        }
    } else if raw.len() > MAX_REQUEST_ID || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        v.add(
            "request_id",
            format!("must be 1-{MAX_REQUEST_ID} characters without spaces or control characters"),
        );
    }
}

/// A name, label or reason: at most [`MAX_TEXT`] characters, no control
/// characters (they would rewrite a terminal or a log line).
pub fn short_text(field: &str, raw: &str, v: &mut FieldViolations) {
    if raw.chars().count() > MAX_TEXT {
        v.add(field, format!("must be at most {MAX_TEXT} characters"));
    } else if raw.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

/// A required [`short_text`].
pub fn required_text(field: &str, raw: &str, v: &mut FieldViolations) {
    if raw.trim().is_empty() {
        v.add(field, "required");
    } else {
        short_text(field, raw, v);
    }
}

/// Free text: at most [`MAX_NOTES`] characters; line breaks and tabs are
/// allowed, other control characters are not.
pub fn notes(field: &str, raw: &str, v: &mut FieldViolations) {
    notes_up_to(field, raw, MAX_NOTES, v);
}

/// [`notes`] with a service's own, smaller limit.
pub fn notes_up_to(field: &str, raw: &str, max: usize, v: &mut FieldViolations) {
    if raw.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    } else if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        v.add(
            field,
            "must not contain control characters other than line breaks and tabs",
        );
    }
}

/// No NUL byte anywhere: PostgreSQL text cannot hold one.
pub fn no_nul(field: &str, raw: &str, v: &mut FieldViolations) {
    if raw.contains('\0') {
        v.add(field, "must not contain NUL characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_rule() {
        let mut v = FieldViolations::new();
        id("user_id", "nope", &mut v);
        request_id("", true, &mut v);
        request_id("a b", false, &mut v);
        short_text("reason", "ticket 42\x07", &mut v);
        notes("notes", "x\x1b[2K", &mut v);
        notes("notes", "line\nbreak\ttab", &mut v);
        request_id("", false, &mut v);
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            ["user_id", "request_id", "request_id", "reason", "notes"]
        );
    }
}
