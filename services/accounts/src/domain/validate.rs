//! Accounts' own input rules (emails, phones, group names, batches); ids,
//! request ids, texts and notes follow `steward_kit::validate`.

use steward_kit::FieldViolations;
pub use steward_kit::validate::{id, notes, request_id, required_text, short_text};
use uuid::Uuid;

pub const MAX_EMAIL: usize = 254;

/// Lowercases and checks an email address: one `@`, a non-empty local part,
/// a dotted domain, no spaces or control characters.
pub fn email(field: &str, raw: &str, v: &mut FieldViolations) -> String {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if !valid {
        v.add(field, "must be a valid email address");
    }
    email
}

/// E.164: `+` then 7 to 15 digits (spaces and dashes dropped).
pub fn phone(field: &str, raw: &str, v: &mut FieldViolations) -> String {
    let phone: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = phone.strip_prefix('+').unwrap_or("");
    if !(7..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        v.add(
            field,
            "must be an international number such as +15551234567",
        );
    }
    phone
}

pub fn group_name(field: &str, raw: &str, v: &mut FieldViolations) {
    let ok = raw.len() <= 63
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        v.add(
            field,
            "must be 1-63 characters: lowercase letters, digits, '-' or '_', starting with a letter",
        );
    }
}

/// Batch ids: 1..=MAX_BATCH valid, distinct UUIDs, returned in a stable
/// order (sorted, so that row locks are always taken in the same order).
pub fn batch_ids(field: &str, raw: &[String], v: &mut FieldViolations) -> Vec<Uuid> {
    if raw.is_empty() {
        v.add(field, "must name at least one user");
    }
    if raw.len() > super::MAX_BATCH {
        v.add(
            field,
            format!("must name at most {} users", super::MAX_BATCH),
        );
    }
    let mut ids: Vec<Uuid> = raw
        .iter()
        .enumerate()
        .map(|(i, s)| id(&format!("{field}[{i}]"), s, v))
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    if ids.len() != before {
        v.add(field, "must not repeat a user");
    }
    ids
}

#[cfg(test)]
mod tests {
    use steward_kit::validate::MAX_NOTES;

    use super::*;

    #[test]
    fn emails() {
        let mut v = FieldViolations::new();
        assert_eq!(email("e", "  Ann@Example.COM ", &mut v), "ann@example.com");
        assert!(v.is_empty());
        for bad in [
            "", "ann", "ann@", "@x.io", "a@b", "a b@x.io", "a@x..io", "a@@x.io",
        ] {
            let mut v = FieldViolations::new();
            email("e", bad, &mut v);
            assert!(!v.is_empty(), "{bad} accepted");
        }
    }

    #[test]
    fn phones_notes_groups() {
        let mut v = FieldViolations::new();
        assert_eq!(phone("p", "+1 555-123-4567", &mut v), "+15551234567");
        assert!(v.is_empty());
        phone("p", "555", &mut v);
        notes("n", &"x".repeat(MAX_NOTES + 1), &mut v);
        group_name("g", "Bad Group", &mut v);
        assert_eq!(v.fields().collect::<Vec<_>>(), ["p", "n", "g"]);
    }

    #[test]
    fn batch_ids_are_checked_sorted_and_distinct() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let mut v = FieldViolations::new();
        assert_eq!(
            batch_ids("ids", &[b.to_string(), a.to_string()], &mut v),
            [a, b]
        );
        assert!(v.is_empty());
        batch_ids("ids", &[a.to_string(), a.to_string(), "x".into()], &mut v);
        let fields: Vec<_> = v.fields().collect();
        assert_eq!(fields, ["ids[2]", "ids"]);
    }
}
