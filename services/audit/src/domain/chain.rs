//! The hash chain. Each stored event has a sequence number and
//! `hash = SHA-256(prev_hash || seq || canonical bytes)`. The canonical
//! bytes are a fixed-order, length-prefixed encoding of every chained field;
//! personal data enters only through `pii_digest`, so erasing it leaves the
//! chain intact.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub const GENESIS: Hash = [0; 32];

/// The chained content of one event (everything but personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chained<'a> {
    pub event_id: &'a str,
    pub occurred_at_micros: i64,
    pub product: &'a str,
    pub action: &'a str,
    pub category: i16,
    pub actor_user_id: &'a str,
    pub subject_user_id: &'a str,
    pub modified_user_id: &'a str,
    pub impersonator_user_id: &'a str,
    pub impersonation_session_id: &'a str,
    pub token_id: &'a str,
    pub project: &'a str,
    pub comments: &'a BTreeMap<String, String>,
    pub result: i16,
    pub error_message: &'a str,
    pub duration_us: i64,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub source: &'a str,
    pub pii_digest: &'a [u8],
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Chained<'_> {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(1); // format version
        put_str(&mut out, self.event_id);
        out.extend_from_slice(&self.occurred_at_micros.to_be_bytes());
        for s in [
            self.product,
            self.action,
            self.actor_user_id,
            self.subject_user_id,
            self.modified_user_id,
            self.impersonator_user_id,
            self.impersonation_session_id,
            self.token_id,
            self.project,
        ] {
            put_str(&mut out, s);
        }
        out.extend_from_slice(&self.category.to_be_bytes());
        out.extend_from_slice(&(self.comments.len() as u32).to_be_bytes());
        for (k, v) in self.comments {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out.extend_from_slice(&self.result.to_be_bytes());
        put_str(&mut out, self.error_message);
        out.extend_from_slice(&self.duration_us.to_be_bytes());
        for s in [self.request_id, self.trace_id, self.source] {
            put_str(&mut out, s);
        }
        out.extend_from_slice(&(self.pii_digest.len() as u32).to_be_bytes());
        out.extend_from_slice(self.pii_digest);
        out
    }

    pub fn hash(&self, prev: &[u8], seq: i64) -> Hash {
        let mut digest = Sha256::new();
        digest.update(prev);
        digest.update(seq.to_be_bytes());
        digest.update(self.canonical_bytes());
        digest.finalize().into()
    }
}

/// SHA-256 over a random salt and the personal data of one event.
pub fn pii_digest(
    salt: &[u8],
    client_ip: &str,
    user_agent: &str,
    pii_comments: &BTreeMap<String, String>,
) -> Hash {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(salt);
    put_str(&mut bytes, client_ip);
    put_str(&mut bytes, user_agent);
    for (k, v) in pii_comments {
        put_str(&mut bytes, k);
        put_str(&mut bytes, v);
    }
    Sha256::digest(&bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(comments: &BTreeMap<String, String>) -> Chained<'_> {
        Chained {
            event_id: "e1",
            occurred_at_micros: 1,
            product: "accounts",
            action: "user.created",
            category: 3,
            actor_user_id: "a",
            subject_user_id: "s",
            modified_user_id: "s",
            impersonator_user_id: "",
            impersonation_session_id: "",
            token_id: "",
            project: "",
            comments,
            result: 1,
            error_message: "",
            duration_us: 5,
            request_id: "r",
            trace_id: "",
            source: "accounts",
            pii_digest: &[9; 32],
        }
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let comments = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let base = sample(&comments);
        let h = base.hash(&GENESIS, 1);
        assert_eq!(h, base.hash(&GENESIS, 1));
        assert_ne!(h, base.hash(&GENESIS, 2));
        assert_ne!(h, base.hash(&[1; 32], 1));
        assert_ne!(
            h,
            Chained {
                action: "user.deleted",
                ..base.clone()
            }
            .hash(&GENESIS, 1)
        );
        let other = BTreeMap::from([("k".to_string(), "w".to_string())]);
        assert_ne!(
            h,
            Chained {
                comments: &other,
                ..base.clone()
            }
            .hash(&GENESIS, 1)
        );
        // Length prefixes: moving a byte between fields is a change.
        assert_ne!(
            Chained {
                actor_user_id: "ab",
                subject_user_id: "",
                ..base.clone()
            }
            .hash(&GENESIS, 1),
            Chained {
                actor_user_id: "a",
                subject_user_id: "b",
                ..base.clone()
            }
            .hash(&GENESIS, 1)
        );
    }

    #[test]
    fn pii_digest_depends_on_salt_and_data() {
        let none = BTreeMap::new();
        let a = pii_digest(b"salt", "10.0.0.1", "curl", &none);
        assert_eq!(a, pii_digest(b"salt", "10.0.0.1", "curl", &none));
        assert_ne!(a, pii_digest(b"salt2", "10.0.0.1", "curl", &none));
        assert_ne!(a, pii_digest(b"salt", "10.0.0.2", "curl", &none));
    }
}
