//! Sign-in rules: lockout after repeated failures, opaque secrets for
//! refresh and API tokens, lifetimes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use steward_kit::FieldViolations;

/// The shortest password accepted anywhere (registration, change, the CLI).
pub const MIN_PASSWORD: usize = 12;

/// A new password: at least [`MIN_PASSWORD`] characters.
pub fn password(field: &str, raw: &str, v: &mut FieldViolations) {
    if raw.chars().count() < MIN_PASSWORD {
        v.add(field, format!("must be at least {MIN_PASSWORD} characters"));
    }
}

/// After `threshold` failures within `window` the account is locked for
/// `duration`.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// A user's failed sign-in attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    pub failed: i32,
    pub window_start: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Attempts {
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// The state after one more failure, and whether it locked the account.
    pub fn after_failure(self, policy: &LockoutPolicy, now: DateTime<Utc>) -> (Self, bool) {
        let window = chrono::Duration::from_std(policy.window).unwrap_or(chrono::Duration::MAX);
        let in_window = self.window_start.is_some_and(|start| now - start < window);
        let (failed, window_start) = if in_window {
            (self.failed + 1, self.window_start)
        } else {
            (1, Some(now))
        };
        if failed as u32 >= policy.threshold.max(1) {
            let lock = chrono::Duration::from_std(policy.duration).unwrap_or(chrono::Duration::MAX);
            let locked = Self {
                failed: 0,
                window_start: None,
                locked_until: Some(now + lock),
            };
            return (locked, true);
        }
        (
            Self {
                failed,
                window_start,
                locked_until: None,
            },
            false,
        )
    }
}

/// Prefix of API token secrets: lets the gateway (and secret scanners) tell
/// them from JWTs.
pub const API_TOKEN_PREFIX: &str = "stw_";

/// A new 256-bit secret (base64url) with `prefix`, and its stored digest.
pub fn new_secret(prefix: &str) -> (String, Vec<u8>) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = secret_digest(&secret);
    (secret, digest)
}

/// What is stored for a secret: SHA-256 is enough for 256 random bits.
pub fn secret_digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            threshold: 3,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }

    #[test]
    fn locks_after_threshold_within_window() {
        let t0 = Utc::now();
        let (a, locked) = Attempts::default().after_failure(&policy(), t0);
        assert!(!locked);
        let (a, locked) = a.after_failure(&policy(), t0 + chrono::Duration::seconds(10));
        assert!(!locked);
        assert_eq!(a.failed, 2);
        let (a, locked) = a.after_failure(&policy(), t0 + chrono::Duration::seconds(20));
        assert!(locked);
        assert!(a.is_locked(t0 + chrono::Duration::seconds(299)));
        assert!(!a.is_locked(t0 + chrono::Duration::seconds(321)));
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let t0 = Utc::now();
        let (a, _) = Attempts::default().after_failure(&policy(), t0);
        let (a, _) = a.after_failure(&policy(), t0 + chrono::Duration::seconds(10));
        let (a, locked) = a.after_failure(&policy(), t0 + chrono::Duration::seconds(90));
        assert!(!locked);
        assert_eq!(a.failed, 1);
    }

    #[test]
    fn passwords_need_twelve_characters() {
        let mut v = FieldViolations::new();
        password("p", "correct horse", &mut v);
        assert!(v.is_empty());
        password("p", "elevenchars", &mut v);
        assert_eq!(v.fields().collect::<Vec<_>>(), ["p"]);
    }

    #[test]
    fn secrets_are_prefixed_and_digested() {
        let (secret, digest) = new_secret(API_TOKEN_PREFIX);
        assert!(secret.starts_with("stw_"));
        assert_eq!(secret.len(), 4 + 43);
        assert_eq!(secret_digest(&secret), digest);
        assert_ne!(new_secret("").0, new_secret("").0);
    }
}
