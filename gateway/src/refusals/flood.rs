//! A flood of refusals is not recorded one by one: per window and per
//! (method, reason, client address), the first `sample` refusals are
//! recorded individually, the rest counted and summarised in one event
//! when the window closes (as kit's services do).

use std::{collections::HashMap, time::Duration};

use steward_proto::audit::AuditEvent;

use super::Summary;

/// Distinct keys followed per window; refusals under further keys are
/// counted together (a flood from many addresses).
const MAX_KEYS: usize = 10_000;

type Key = (String, String, String);

struct Seen {
    count: u64,
    code: String,
}

pub struct Flood {
    sample: u64,
    seen: HashMap<Key, Seen>,
    /// Refusals beyond [`MAX_KEYS`] keys in this window.
    unkeyed: u64,
}

fn comment<'a>(event: &'a AuditEvent, key: &str) -> &'a str {
    event.comments.get(key).map_or("", String::as_str)
}

impl Flood {
    pub fn new(sample: u64) -> Self {
        Self {
            sample,
            seen: HashMap::new(),
            unkeyed: 0,
        }
    }

    /// Counts `event` in the window: `true` when it is to be recorded
    /// individually, `false` when only counted.
    pub fn admit(&mut self, event: &AuditEvent) -> bool {
        let key = (
            comment(event, "method").to_owned(),
            comment(event, "reason").to_owned(),
            event.client_ip.clone(),
        );
        if !self.seen.contains_key(&key) && self.seen.len() >= MAX_KEYS {
            self.unkeyed += 1;
            return false;
        }
        let seen = self.seen.entry(key).or_insert_with(|| Seen {
            count: 0,
            code: comment(event, "code").to_owned(),
        });
        seen.count += 1;
        seen.count <= self.sample
    }

    /// Ends the window: one summary per key that went past the sample, and
    /// one for the refusals beyond the keys followed.
    pub fn close(&mut self, window: Duration) -> Vec<Summary> {
        let mut summaries: Vec<Summary> = self
            .seen
            .drain()
            .filter(|(_, seen)| seen.count > self.sample)
            .map(|((method, reason, client_ip), seen)| {
                let count = seen.count - self.sample;
                Summary {
                    method,
                    code: seen.code,
                    reason,
                    client_ip,
                    count,
                    window: Some(window),
                    message: format!("{count} more refusals not recorded one by one"),
                }
            })
            .collect();
        let unkeyed = std::mem::take(&mut self.unkeyed);
        if unkeyed > 0 {
            summaries.push(Summary {
                count: unkeyed,
                window: Some(window),
                message: format!("{unkeyed} refusals from too many sources to follow one by one"),
                ..Summary::default()
            });
        }
        summaries.sort_by(|a, b| (&a.method, &a.client_ip).cmp(&(&b.method, &b.client_ip)));
        summaries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(method: &str, ip: &str) -> AuditEvent {
        AuditEvent {
            client_ip: ip.into(),
            comments: [
                ("method", method),
                ("reason", "ROLE_REQUIRED"),
                ("code", "PermissionDenied"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn the_first_of_a_key_are_recorded_the_rest_summarised_per_window() {
        let mut flood = Flood::new(3);
        let admitted = (0..10)
            .filter(|_| flood.admit(&refusal("/a.B/C", "192.0.2.1")))
            .count();
        assert_eq!(admitted, 3);
        // Another address and another method are other keys.
        assert!(flood.admit(&refusal("/a.B/C", "192.0.2.2")));
        assert!(flood.admit(&refusal("/a.B/D", "192.0.2.1")));
        let summaries = flood.close(Duration::from_secs(10));
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        assert_eq!(
            (
                s.method.as_str(),
                s.reason.as_str(),
                s.client_ip.as_str(),
                s.count
            ),
            ("/a.B/C", "ROLE_REQUIRED", "192.0.2.1", 7)
        );
        assert_eq!(s.code, "PermissionDenied");
        // A new window starts afresh.
        assert!(flood.admit(&refusal("/a.B/C", "192.0.2.1")));
        assert!(flood.close(Duration::from_secs(10)).is_empty());
    }
}
