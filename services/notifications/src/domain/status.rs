//! The status of a mail. A status only moves forward:
//!
//! ```text
//! QUEUED ──→ SENDING ──→ SENT
//!   │          │  ↑ ╲──→ FAILED
//!   │          ↓  │  ╲─→ SUPPRESSED
//!   │        DEFERRED ──→ SUPPRESSED / FAILED
//!   └──────────────────→ SUPPRESSED
//! ```
//!
//! SENDING ⇄ DEFERRED is the retry loop (each turn is a new attempt, counted);
//! SENT, FAILED and SUPPRESSED are final.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Sending,
    Sent,
    Deferred,
    Failed,
    Suppressed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Deferred,
        Status::Failed,
        Status::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Sending => "SENDING",
            Status::Sent => "SENT",
            Status::Deferred => "DEFERRED",
            Status::Failed => "FAILED",
            Status::Suppressed => "SUPPRESSED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// No change follows.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Sent | Status::Failed | Status::Suppressed)
    }

    /// Whether a mail in `self` may move to `to`.
    pub fn may_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Queued, Sending | Suppressed)
                | (Sending, Sent | Deferred | Failed | Suppressed)
                | (Deferred, Sending | Failed | Suppressed)
        )
    }

    /// The statuses a mail may be in to move to `to` (the guard of the
    /// store's update).
    pub fn sources_of(to: Status) -> Vec<Status> {
        Self::ALL
            .into_iter()
            .filter(|from| from.may_move_to(to))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_never_move() {
        for from in Status::ALL.into_iter().filter(|s| s.is_final()) {
            for to in Status::ALL {
                assert!(!from.may_move_to(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn nothing_moves_back_to_queued_and_retries_loop() {
        for from in Status::ALL {
            assert!(!from.may_move_to(Status::Queued));
            assert!(!from.may_move_to(from));
        }
        assert!(Status::Sending.may_move_to(Status::Deferred));
        assert!(Status::Deferred.may_move_to(Status::Sending));
        assert!(!Status::Queued.may_move_to(Status::Sent));
        assert_eq!(
            Status::sources_of(Status::Sending),
            [Status::Queued, Status::Deferred]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("sent"), None);
    }
}
