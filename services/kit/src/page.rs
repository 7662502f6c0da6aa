//! Opaque keyset page tokens (AIP-158).
//!
//! A token is `base64url(json {q, c}) "." base64url(hmac)`: `q` fingerprints
//! the query (filters and order) that produced it, `c` is the keyset cursor
//! (the sort key of the last row). The HMAC makes tokens tamper-evident and
//! `q` makes a token from one query useless for another.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::FieldViolations;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<C> {
    q: String,
    c: C,
}

/// A request's page: how many rows, and where to start.
#[derive(Debug)]
pub struct Page<C> {
    pub size: usize,
    pub after: Option<C>,
}

impl<C> Page<C> {
    /// The row limit to query: one more than the page, to learn whether a
    /// next page exists without counting.
    pub fn limit(&self) -> i64 {
        self.size as i64 + 1
    }
}

/// Cuts the extra row fetched by [`Page::limit`] and returns the rows of
/// this page with the next page's token (empty at the end).
pub fn split<T>(
    mut rows: Vec<T>,
    size: usize,
    token_after: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    if rows.len() <= size {
        return (rows, String::new());
    }
    rows.truncate(size);
    let next = rows.last().map(token_after).unwrap_or_default();
    (rows, next)
}

impl PageTokens {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// Derives the token key from a secret shared by all replicas.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("hmac takes any key length");
        mac.update(b"steward page tokens v1");
        Self::new(mac.finalize().into_bytes().into())
    }

    fn sign(&self, body: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("hmac takes any key length");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    pub fn encode<C: Serialize>(&self, query: &str, cursor: &C) -> String {
        let body = serde_json::to_vec(&Envelope {
            q: fingerprint(query),
            c: cursor,
        })
        .expect("cursors serialize");
        let sig = self.sign(&body);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// `Ok(None)` for an empty token (first page).
    pub fn decode<C: DeserializeOwned>(
        &self,
        query: &str,
        token: &str,
    ) -> Result<Option<C>, FieldViolations> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || FieldViolations::single("page.page_token", "invalid page token");
        let (body, sig) = token.split_once('.').ok_or_else(invalid)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("hmac takes any key length");
        mac.update(&body);
        mac.verify_slice(&sig).map_err(|_| invalid())?;
        let envelope: Envelope<C> = serde_json::from_slice(&body).map_err(|_| invalid())?;
        if envelope.q != fingerprint(query) {
            return Err(FieldViolations::single(
                "page.page_token",
                "page token belongs to a different query",
            ));
        }
        Ok(Some(envelope.c))
    }

    /// Validates size and token of a list request in one step.
    pub fn page<C: DeserializeOwned>(
        &self,
        query: &str,
        request: Option<&steward_proto::common::PageRequest>,
        default_size: usize,
        max_size: usize,
    ) -> Result<Page<C>, FieldViolations> {
        let (size, token) = request
            .map(|p| (p.page_size, p.page_token.as_str()))
            .unwrap_or((0, ""));
        let size = match size {
            n if n < 0 => {
                return Err(FieldViolations::single(
                    "page.page_size",
                    "must not be negative",
                ));
            }
            0 => default_size,
            n => (n as usize).min(max_size),
        };
        Ok(Page {
            size,
            after: self.decode(query, token)?,
        })
    }
}

fn fingerprint(query: &str) -> String {
    hex::encode(&Sha256::digest(query.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let tokens = PageTokens::new([7; 32]);
        let token = tokens.encode("users|group=trial", &("2026-01-01", 42));
        let cursor: Option<(String, i32)> = tokens.decode("users|group=trial", &token).unwrap();
        assert_eq!(cursor, Some(("2026-01-01".to_string(), 42)));

        // Another query's token.
        assert!(
            tokens
                .decode::<(String, i32)>("users|group=beta", &token)
                .is_err()
        );
        // Tampered body.
        let mut tampered = token.clone();
        tampered.replace_range(0..1, if &token[0..1] == "e" { "f" } else { "e" });
        assert!(
            tokens
                .decode::<(String, i32)>("users|group=trial", &tampered)
                .is_err()
        );
        // Another key.
        assert!(
            PageTokens::new([8; 32])
                .decode::<(String, i32)>("users|group=trial", &token)
                .is_err()
        );
    }

    #[test]
    fn page_size_rules() {
        let tokens = PageTokens::new([1; 32]);
        let req = |n| steward_proto::common::PageRequest {
            page_size: n,
            page_token: String::new(),
        };
        assert_eq!(
            tokens
                .page::<i32>("q", Some(&req(0)), 50, 500)
                .unwrap()
                .size,
            50
        );
        assert_eq!(
            tokens
                .page::<i32>("q", Some(&req(9999)), 50, 500)
                .unwrap()
                .size,
            500
        );
        assert!(tokens.page::<i32>("q", Some(&req(-1)), 50, 500).is_err());
    }
}
