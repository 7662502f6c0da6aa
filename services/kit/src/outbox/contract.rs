//! The audit event contract: the limits ingest holds events to, and
//! [`conform`], which makes any event fit them without dropping it.
//!
//! Services call it where a record is built (every record a service writes
//! is acceptable to ingest), and ingest calls it again on what it receives,
//! so an event of a committed change is never refused for its content: a
//! control character is escaped as `\u{7}`, an over-long text is cut at a
//! character boundary and marked with [`TRUNCATED`].

use steward_proto::audit::AuditEvent;

/// Identifiers and short names: ids, product, action, ip, request id, ...
pub const MAX_ID: usize = 128;
pub const MAX_USER_AGENT: usize = 1024;
pub const MAX_ERROR: usize = 4096;
pub const MAX_COMMENTS: usize = 64;
pub const MAX_COMMENT_KEY: usize = 64;
pub const MAX_COMMENT_VALUE: usize = 4096;
/// The marker ending a text that was cut to fit.
pub const TRUNCATED: &str = "…[truncated]";

/// Escapes control characters (line breaks and tabs stay) and cuts `text`
/// to at most `max` bytes, marker included. Returns whether it changed.
pub fn conform_text(text: &mut String, max: usize) -> bool {
    let needs_escape = text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t');
    if !needs_escape && text.len() <= max {
        return false;
    }
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    if out.len() > max {
        let mut end = max.saturating_sub(TRUNCATED.len());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str(TRUNCATED);
    }
    *text = out;
    true
}

/// Makes `event` acceptable to ingest whatever its texts hold. Structure
/// (ids, times, the action's name) is the emitter's to get right; content
/// is never a reason to lose the event.
pub fn conform(event: &mut AuditEvent) {
    for field in [
        &mut event.actor_user_id,
        &mut event.subject_user_id,
        &mut event.modified_user_id,
        &mut event.impersonator_user_id,
        &mut event.impersonation_session_id,
        &mut event.token_id,
        &mut event.project,
        &mut event.client_ip,
        &mut event.request_id,
        &mut event.trace_id,
        &mut event.source,
        &mut event.product,
    ] {
        conform_text(field, MAX_ID);
    }
    conform_text(&mut event.user_agent, MAX_USER_AGENT);
    conform_text(&mut event.error_message, MAX_ERROR);
    if event.comments.is_empty() {
        return;
    }
    let mut entries: Vec<(String, String)> =
        std::mem::take(&mut event.comments).into_iter().collect();
    entries.sort();
    let total = entries.len();
    for (i, (mut key, mut value)) in entries.into_iter().enumerate() {
        if i + 1 == MAX_COMMENTS && total > MAX_COMMENTS {
            event.comments.insert(
                "comments_truncated".to_owned(),
                format!("{} more comments not kept", total - i),
            );
            break;
        }
        if key.is_empty() {
            key = "_".to_owned();
        }
        conform_text(&mut key, MAX_COMMENT_KEY);
        conform_text(&mut value, MAX_COMMENT_VALUE);
        event.comments.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_truncates_with_a_marker() {
        let mut s = "x\u{1b}[2K".to_owned();
        assert!(conform_text(&mut s, 64));
        assert_eq!(s, "x\\u{1b}[2K");
        let mut s = "é".repeat(3000);
        conform_text(&mut s, MAX_ERROR);
        assert!(s.len() <= MAX_ERROR && s.ends_with(TRUNCATED));
        let mut s = "line\nbreak".to_owned();
        assert!(!conform_text(&mut s, 64));
    }

    #[test]
    fn every_event_fits_ingest_limits() {
        let mut e = AuditEvent {
            actor_user_id: "a".repeat(204),
            error_message: "e".repeat(10_000),
            ..Default::default()
        };
        e.comments.insert("device".into(), "laptop\u{7}".into());
        e.comments.insert("".into(), "x".into());
        for i in 0..100 {
            e.comments.insert(format!("k{i}"), "v".into());
        }
        conform(&mut e);
        assert!(e.actor_user_id.len() <= MAX_ID);
        assert!(e.error_message.len() <= MAX_ERROR);
        assert!(e.comments.len() <= MAX_COMMENTS);
        assert!(
            e.comments
                .keys()
                .all(|k| !k.is_empty() && k.len() <= MAX_COMMENT_KEY)
        );
        assert!(
            e.comments
                .values()
                .all(|v| !v.chars().any(|c| c.is_control()))
        );
    }
}
