//! What a delivery attempt's outcome means: sent, try again later
//! (exponential backoff with jitter, up to a limit) or fail now, and whether
//! the address is suppressed.

use std::time::Duration;

/// How an attempt ended, as the transport saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted the message; its reply.
    Sent { reply: String },
    /// A 4xx reply, a timeout, a refused or broken connection.
    Transient { error: String },
    /// A 5xx reply.
    Permanent { code: u16, error: String },
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Sent {
        reply: String,
    },
    /// DEFERRED; tried again after the delay.
    Retry {
        after: Duration,
        error: String,
    },
    /// FAILED; with `suppress`, the address goes on the suppression list.
    Fail {
        error: String,
        suppress: bool,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failed attempt (1-based):
    /// `min * 2^(attempt-1)`, capped at `max`, then scaled into
    /// `[d/2, d)` by `jitter` in `[0, 1)` so that mail deferred together
    /// does not return together.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .min_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// The decision for `outcome` of attempt number `attempt` (1-based).
    pub fn decide(&self, attempt: u32, outcome: Outcome, jitter: f64) -> Decision {
        match outcome {
            Outcome::Sent { reply } => Decision::Sent { reply },
            Outcome::Transient { error } if attempt < self.max_attempts => Decision::Retry {
                after: self.delay(attempt, jitter),
                error,
            },
            Outcome::Transient { error } => Decision::Fail {
                error: format!("gave up after {attempt} attempts: {error}"),
                suppress: false,
            },
            Outcome::Permanent { code, error } => Decision::Fail {
                suppress: hard_bounce(code, &error),
                error,
            },
        }
    }
}

/// A permanent reply that says the mailbox does not exist (or may never
/// receive): 550 / 551 / 553, or an enhanced status 5.1.x. Policy and
/// content refusals (552 size, 554 spam, 5.7.x) fail the mail but keep the
/// address.
pub fn hard_bounce(code: u16, reply: &str) -> bool {
    if reply.contains(" 5.7.") || reply.contains(" 5.3.") || reply.contains(" 5.2.") {
        return false;
    }
    matches!(code, 550 | 551 | 553) || reply.contains(" 5.1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        min_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(60),
    };

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        assert_eq!(POLICY.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(POLICY.delay(2, 0.0), Duration::from_secs(10));
        assert_eq!(POLICY.delay(3, 0.999_999).as_secs(), 39);
        assert_eq!(POLICY.delay(9, 0.0), Duration::from_secs(30));
        assert!(POLICY.delay(40, 1.0) <= POLICY.max_backoff);
    }

    #[test]
    fn transient_retries_up_to_the_limit() {
        let t = || Outcome::Transient {
            error: "451 4.7.1 try later".into(),
        };
        assert!(matches!(POLICY.decide(3, t(), 0.5), Decision::Retry { .. }));
        match POLICY.decide(4, t(), 0.5) {
            Decision::Fail { error, suppress } => {
                assert!(error.contains("after 4 attempts"));
                assert!(!suppress);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_fails_at_once_and_hard_bounces_suppress() {
        let no_user = Outcome::Permanent {
            code: 550,
            error: "550 5.1.1 <x@example.com>: no such user".into(),
        };
        assert_eq!(
            POLICY.decide(1, no_user, 0.0),
            Decision::Fail {
                error: "550 5.1.1 <x@example.com>: no such user".into(),
                suppress: true
            }
        );
        let spam = Outcome::Permanent {
            code: 554,
            error: "554 5.7.1 rejected as spam".into(),
        };
        assert!(matches!(
            POLICY.decide(1, spam, 0.0),
            Decision::Fail {
                suppress: false,
                ..
            }
        ));
        assert!(!hard_bounce(550, "550 5.7.1 relaying denied"));
        assert!(hard_bounce(554, "554 5.1.1 unknown user"));
    }
}
