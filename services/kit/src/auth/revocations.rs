//! Revoked tokens: the list accounts publishes
//! (`steward.accounts.v1.AuthService/WatchRevocations`), held in memory by
//! every process that checks tokens and consulted after each signature
//! check, so that a suspended user, a stopped impersonation session or a
//! deleted API token stops working within the time the list takes to
//! arrive (milliseconds), not when the token expires.
//!
//! An entry says: tokens of this user (`sub`), impersonation session (`sid`)
//! or API token (`tid`) issued before `not_before` are refused, until
//! `expires_at`, after which no such token can still be valid. Issue times
//! are read to the millisecond from the token's UUIDv7 `jti` (see
//! [`Claims::issued_at_millis`]).
//!
//! [`Feed`] keeps the list current: it subscribes, replaces the list with
//! the snapshot each subscription starts with, then adds each new entry.
//! When the stream breaks it keeps the last list and subscribes again with
//! backoff (100 ms doubling to 5 s). That is the fail-safe chosen: refusing
//! every token while accounts is unreachable would turn an accounts outage
//! into an outage of every service, while keeping the list only misses
//! revocations made during the break, and those are few, since the changes
//! that cause them are made in accounts, which is then down or cut off
//! too. The gap closes with the next snapshot. A process that has not yet
//! received a first snapshot checks against an empty list
//! ([`Revocations::is_synced`] says which).

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use steward_proto::accounts::{
    Revocation, WatchRevocationsRequest, auth_service_client::AuthServiceClient, revocation::Kind,
};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::token::{Claims, TokenError, TokenSigner};

/// What an entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevokedKind {
    /// Every token whose `sub` is the user.
    User,
    /// Tokens carrying the impersonation session id (`sid`).
    Session,
    /// Tokens minted from the API token (`tid`).
    ApiToken,
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: RevokedKind,
    pub subject: String,
    /// Tokens issued before this (Unix milliseconds) are refused.
    pub not_before_ms: i64,
    /// The entry matters until then (Unix seconds).
    pub expires_at: i64,
}

impl Entry {
    /// The wire form's entry; `None` for a kind this build does not know.
    pub fn from_proto(r: &Revocation) -> Option<Self> {
        let kind = match r.kind() {
            Kind::User => RevokedKind::User,
            Kind::ImpersonationSession => RevokedKind::Session,
            Kind::ApiToken => RevokedKind::ApiToken,
            Kind::Unspecified => return None,
        };
        let millis = |t: &prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos / 1_000_000);
        Some(Self {
            kind,
            subject: r.subject.clone(),
            not_before_ms: millis(r.not_before.as_ref()?),
            expires_at: r.expire_time.as_ref()?.seconds,
        })
    }

    pub fn to_proto(&self) -> Revocation {
        let kind = match self.kind {
            RevokedKind::User => Kind::User,
            RevokedKind::Session => Kind::ImpersonationSession,
            RevokedKind::ApiToken => Kind::ApiToken,
        };
        Revocation {
            kind: kind.into(),
            subject: self.subject.clone(),
            not_before: Some(prost_types::Timestamp {
                seconds: self.not_before_ms.div_euclid(1000),
                nanos: (self.not_before_ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
            expire_time: Some(prost_types::Timestamp {
                seconds: self.expires_at,
                nanos: 0,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    not_before_ms: i64,
    expires_at: i64,
}

type Marks = HashMap<(RevokedKind, String), Mark>;

#[derive(Default)]
struct Inner {
    marks: RwLock<Marks>,
    synced: AtomicBool,
}

/// The in-memory revocation list; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Revocations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.inner.marks.read().map(|m| m.len()).unwrap_or(0);
        write!(
            f,
            "Revocations({entries} entries, synced={})",
            self.is_synced()
        )
    }
}

fn merge(marks: &mut Marks, entry: Entry) {
    let mark = marks.entry((entry.kind, entry.subject)).or_insert(Mark {
        not_before_ms: entry.not_before_ms,
        expires_at: entry.expires_at,
    });
    mark.not_before_ms = mark.not_before_ms.max(entry.not_before_ms);
    mark.expires_at = mark.expires_at.max(entry.expires_at);
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(TokenError::Revoked)` when an entry matches the token.
    pub fn check(&self, claims: &Claims) -> Result<(), TokenError> {
        let issued = claims.issued_at_millis();
        let now = chrono::Utc::now().timestamp();
        let marks = self.inner.marks.read().expect("revocations lock");
        if marks.is_empty() {
            return Ok(());
        }
        let revoked = |kind: RevokedKind, subject: &str| {
            marks
                .get(&(kind, subject.to_owned()))
                .is_some_and(|m| m.expires_at >= now && issued < m.not_before_ms)
        };
        let hit = revoked(RevokedKind::User, &claims.sub)
            || claims
                .sid
                .as_deref()
                .is_some_and(|s| revoked(RevokedKind::Session, s))
            || claims
                .tid
                .as_deref()
                .is_some_and(|t| revoked(RevokedKind::ApiToken, t));
        if hit {
            Err(TokenError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Replaces the list with a snapshot (and marks it synced).
    pub fn replace(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut fresh = Marks::new();
        for entry in entries {
            merge(&mut fresh, entry);
        }
        *self.inner.marks.write().expect("revocations lock") = fresh;
        self.inner.synced.store(true, Ordering::Release);
    }

    /// Adds entries (and drops the expired ones).
    pub fn add(&self, entries: impl IntoIterator<Item = Entry>) {
        let now = chrono::Utc::now().timestamp();
        let mut marks = self.inner.marks.write().expect("revocations lock");
        for entry in entries {
            merge(&mut marks, entry);
        }
        marks.retain(|_, m| m.expires_at >= now);
    }

    /// Whether the list is being kept current (a stream is up and its
    /// snapshot arrived).
    pub fn is_synced(&self) -> bool {
        self.inner.synced.load(Ordering::Acquire)
    }

    fn disconnected(&self) {
        self.inner.synced.store(false, Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.inner.marks.read().expect("revocations lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Subscribes to accounts' revocation stream and keeps a [`Revocations`]
/// current (see the module documentation for what happens when it breaks).
pub struct Feed {
    client: AuthServiceClient<Channel>,
    credentials: super::ServiceCredentials,
}

/// Resolves when `stopped` turns true (or its sender is gone).
async fn stop_signal(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A channel for the long-lived stream: no per-call timeout, and HTTP/2
/// keep-alives so a dead peer is noticed within seconds.
pub fn stream_channel(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(endpoint.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

impl Feed {
    /// `subject` names the subscriber in its PLATFORM_SERVICE token
    /// (`service:<name>`).
    pub fn new(accounts: Channel, signer: TokenSigner, subject: impl Into<String>) -> Self {
        Self {
            client: AuthServiceClient::new(accounts),
            credentials: super::ServiceCredentials::new(signer, subject),
        }
    }

    /// Follows the stream until `stopped` turns true, subscribing again
    /// whenever it breaks.
    pub async fn run(self, revocations: Revocations, mut stopped: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            if *stopped.borrow() {
                return;
            }
            let outcome = tokio::select! {
                outcome = self.follow(&revocations, &mut failures) => outcome,
                _ = stop_signal(&mut stopped) => return,
            };
            revocations.disconnected();
            failures = failures.saturating_add(1);
            let wait = MIN_BACKOFF
                .saturating_mul(1 << (failures - 1).min(6))
                .min(MAX_BACKOFF);
            tracing::warn!(
                subscriber = self.credentials.subject(),
                error = outcome,
                retry_in_ms = wait.as_millis() as u64,
                entries = revocations.len(),
                "revocation stream down; keeping the last list"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop_signal(&mut stopped) => return,
            }
        }
    }

    /// One subscription: returns why it ended.
    async fn follow(&self, revocations: &Revocations, failures: &mut u32) -> String {
        let mut stream = match self
            .client
            .clone()
            .watch_revocations(self.credentials.authorize(WatchRevocationsRequest {}))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return format!("{:?}: {}", status.code(), status.message()),
        };
        loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    let entries = message.revocations.iter().filter_map(Entry::from_proto);
                    if message.snapshot {
                        revocations.replace(entries);
                        *failures = 0;
                        tracing::debug!(
                            subscriber = self.credentials.subject(),
                            entries = revocations.len(),
                            "revocation list synced"
                        );
                    } else {
                        revocations.add(entries);
                    }
                }
                Ok(None) => return "the stream ended".to_owned(),
                Err(status) => return format!("{:?}: {}", status.code(), status.message()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn claims(sub: &str) -> Claims {
        Claims::new(sub, &[Role::User], Duration::from_secs(60))
    }

    fn entry(kind: RevokedKind, subject: &str, not_before_ms: i64) -> Entry {
        Entry {
            kind,
            subject: subject.into(),
            not_before_ms,
            expires_at: chrono::Utc::now().timestamp() + 60,
        }
    }

    #[test]
    fn refuses_tokens_issued_before_the_entry_only() {
        let list = Revocations::new();
        let old = claims("u1");
        let cut = old.issued_at_millis() + 1;
        list.add([entry(RevokedKind::User, "u1", cut)]);
        assert_eq!(list.check(&old), Err(TokenError::Revoked));
        assert_eq!(list.check(&claims("u2")), Ok(()));
        let mut later = claims("u1");
        later.jti = None;
        later.iat = cut / 1000 + 1;
        assert_eq!(list.check(&later), Ok(()), "issued after the cut");
    }

    #[test]
    fn sessions_and_api_tokens_match_their_claims() {
        let list = Revocations::new();
        let mut impersonation = claims("u1");
        impersonation.sid = Some("s1".into());
        let mut minted = claims("u1");
        minted.tid = Some("t1".into());
        let now_ms = chrono::Utc::now().timestamp_millis() + 1000;
        list.add([entry(RevokedKind::Session, "s1", now_ms)]);
        assert_eq!(list.check(&impersonation), Err(TokenError::Revoked));
        assert_eq!(list.check(&minted), Ok(()));
        list.add([entry(RevokedKind::ApiToken, "t1", now_ms)]);
        assert_eq!(list.check(&minted), Err(TokenError::Revoked));
        assert_eq!(list.check(&claims("u1")), Ok(()), "the user is not revoked");
    }

    #[test]
    fn expired_entries_and_replaced_snapshots_stop_refusing() {
        let list = Revocations::new();
        let token = claims("u1");
        let mut stale = entry(RevokedKind::User, "u1", i64::MAX);
        stale.expires_at = chrono::Utc::now().timestamp() - 1;
        list.add([stale]);
        assert_eq!(list.check(&token), Ok(()));
        assert!(list.is_empty(), "expired entries are dropped");
        list.add([entry(RevokedKind::User, "u1", i64::MAX)]);
        assert_eq!(list.check(&token), Err(TokenError::Revoked));
        assert!(!list.is_synced());
        list.replace([]);
        assert!(list.is_synced());
        assert_eq!(list.check(&token), Ok(()));
    }

    #[test]
    fn wire_round_trip_keeps_milliseconds() {
        let e = entry(RevokedKind::ApiToken, "t", 1_700_000_000_123);
        assert_eq!(Entry::from_proto(&e.to_proto()), Some(e));
    }
}
