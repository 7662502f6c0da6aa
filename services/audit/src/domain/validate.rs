//! Rules for the structure of ingested events and for the audit API's own
//! inputs. The limits on an event's texts are kit's event contract
//! (`steward_kit::outbox::contract`): ingest conforms texts, never refuses them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use steward_kit::FieldViolations;

pub const MAX_BATCH: usize = 5000;
pub use steward_kit::outbox::contract::MAX_ID;
/// Product and action names, titles.
pub const MAX_NAME: usize = 128;
/// Clock skew tolerated for events stamped in the future.
pub const MAX_FUTURE_SKEW_MINUTES: i64 = 10;

pub fn text(v: &mut FieldViolations, field: &str, value: &str, max: usize) {
    if value.len() > max {
        v.add(field, format!("at most {max} bytes"));
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        v.add(field, "must not contain control characters");
    }
}

pub fn required(v: &mut FieldViolations, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        v.add(field, "required");
    } else {
        text(v, field, value, max);
    }
}

/// Events from before 2000 or more than a few minutes ahead are bad clocks.
pub fn occurred_at(v: &mut FieldViolations, field: &str, at: DateTime<Utc>, now: DateTime<Utc>) {
    let floor = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    if at < floor {
        v.add(field, "before 2000-01-01");
    } else if at > now + Duration::minutes(MAX_FUTURE_SKEW_MINUTES) {
        v.add(field, "in the future");
    }
}

/// Dotted lowercase names such as `user.status.suspended`.
pub fn action_name(v: &mut FieldViolations, field: &str, value: &str) {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        v.add(
            field,
            "a dotted lowercase name such as user.status.suspended",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let now = Utc::now();
        let mut v = FieldViolations::new();
        occurred_at(&mut v, "a", now - Duration::days(3), now);
        action_name(&mut v, "b", "user.status.suspended");
        required(&mut v, "c", "x", 4);
        assert!(v.is_empty());
        occurred_at(&mut v, "d", now + Duration::hours(1), now);
        action_name(&mut v, "e", "User Created");
        required(&mut v, "f", "", 4);
        text(&mut v, "g", "12345", 4);
        text(&mut v, "h", "bell\u{7}", 40);
        assert_eq!(v.fields().collect::<Vec<_>>(), ["d", "e", "f", "g", "h"]);
    }
}
