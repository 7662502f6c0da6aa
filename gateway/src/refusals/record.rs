//! A refusal event as the spool stores it: a versioned, self-contained byte
//! encoding of the `AuditEvent` (so the spool does not depend on a codec of
//! the generated types). Every field is written; adding a field to the
//! message fails to compile here until it is spooled too.

use std::collections::BTreeMap;

use steward_proto::audit::AuditEvent;

const VERSION: u8 = 1;

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn str(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn i64(&mut self, n: i64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn i32(&mut self, n: i32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn pair(&mut self, pair: Option<(i64, i32)>) {
        match pair {
            None => self.0.push(0),
            Some((a, b)) => {
                self.0.push(1);
                self.i64(a);
                self.i32(b);
            }
        }
    }
}

struct In<'a> {
    bytes: &'a [u8],
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn pair(&mut self) -> Option<Option<(i64, i32)>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some((self.i64()?, self.i32()?))),
            _ => None,
        }
    }
}

pub fn encode(event: &AuditEvent) -> Vec<u8> {
    let AuditEvent {
        event_id,
        occurred_at,
        product,
        action,
        category,
        actor_user_id,
        subject_user_id,
        modified_user_id,
        impersonator_user_id,
        impersonation_session_id,
        token_id,
        project,
        comments,
        client_ip,
        user_agent,
        result,
        error_message,
        duration,
        request_id,
        trace_id,
        source,
    } = event;
    let mut out = Out::default();
    out.0.push(VERSION);
    for s in [
        event_id,
        product,
        action,
        actor_user_id,
        subject_user_id,
        modified_user_id,
        impersonator_user_id,
        impersonation_session_id,
        token_id,
        project,
        client_ip,
        user_agent,
        error_message,
        request_id,
        trace_id,
        source,
    ] {
        out.str(s);
    }
    out.i32(*category);
    out.i32(*result);
    out.pair(occurred_at.as_ref().map(|t| (t.seconds, t.nanos)));
    out.pair(duration.as_ref().map(|d| (d.seconds, d.nanos)));
    let comments: BTreeMap<_, _> = comments.iter().collect();
    out.0
        .extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for (key, value) in comments {
        out.str(key);
        out.str(value);
    }
    out.0
}

/// The event, or `None` for bytes this version does not read.
pub fn decode(bytes: &[u8]) -> Option<AuditEvent> {
    let mut input = In { bytes };
    if input.u8()? != VERSION {
        return None;
    }
    let mut strings = Vec::with_capacity(16);
    for _ in 0..16 {
        strings.push(input.str()?);
    }
    let mut strings = strings.into_iter();
    let mut next = || strings.next().expect("sixteen strings");
    let (event_id, product, action, actor_user_id, subject_user_id, modified_user_id) =
        (next(), next(), next(), next(), next(), next());
    let (impersonator_user_id, impersonation_session_id, token_id, project) =
        (next(), next(), next(), next());
    let (client_ip, user_agent, error_message, request_id, trace_id, source) =
        (next(), next(), next(), next(), next(), next());
    let category = input.i32()?;
    let result = input.i32()?;
    let occurred_at = input
        .pair()?
        .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos });
    let duration = input
        .pair()?
        .map(|(seconds, nanos)| prost_types::Duration { seconds, nanos });
    let count = input.u32()?;
    let mut comments = std::collections::HashMap::new();
    for _ in 0..count {
        let key = input.str()?;
        comments.insert(key, input.str()?);
    }
    if !input.bytes.is_empty() {
        return None;
    }
    Some(AuditEvent {
        event_id,
        occurred_at,
        product,
        action,
        category,
        actor_user_id,
        subject_user_id,
        modified_user_id,
        impersonator_user_id,
        impersonation_session_id,
        token_id,
        project,
        comments,
        client_ip,
        user_agent,
        result,
        error_message,
        duration,
        request_id,
        trace_id,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips() {
        let event = AuditEvent {
            event_id: "e".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            product: "gateway".into(),
            action: "gateway.request.refused".into(),
            category: 2,
            actor_user_id: "a".into(),
            subject_user_id: "s".into(),
            modified_user_id: "m".into(),
            impersonator_user_id: "i".into(),
            impersonation_session_id: "sid".into(),
            token_id: "t".into(),
            project: "p".into(),
            comments: [("method", "/x.Y/Z"), ("reason", "ROLE_REQUIRED")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            client_ip: "203.0.113.1".into(),
            user_agent: "ua ✓".into(),
            result: 2,
            error_message: "no".into(),
            duration: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_000,
            }),
            request_id: "r".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            source: "gateway".into(),
        };
        let bytes = encode(&event);
        assert_eq!(decode(&bytes), Some(event.clone()));
        let empty = AuditEvent::default();
        assert_eq!(decode(&encode(&empty)), Some(empty));
        // Truncated, trailing or another version: not read.
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut other = bytes;
        other[0] = 2;
        assert_eq!(decode(&other), None);
    }
}
