//! Audit of what the gateway refuses (unauthenticated, permission denied,
//! rate limited): FAILURE events, written first to a durable local spool
//! ([`crate::spool`]) and shipped from there to the audit ingest.
//!
//! * [`RefusalAudit::record`] never blocks the edge: the event is queued in
//!   memory (bounded by `gateway.audit_buffer`); when the queue is full the
//!   refusal is counted and summarised instead.
//! * The writer ([`ship::Writer`]) applies the flood rule ([`flood`]): per
//!   window and per (method, reason, client address) the first
//!   `gateway.refusal_flood_sample` refusals are spooled one by one, the
//!   rest are counted and spooled as ONE summary event (comments `summary`,
//!   `count`, `window_seconds`) when the window closes. Batches are fsynced
//!   before they count as spooled.
//! * The spool is bounded (`gateway.refusal_spool_max_bytes`); beyond it
//!   refusals are counted and summarised once there is room again.
//! * The shipper ([`ship::Shipper`]) sends sealed segments to
//!   `AuditIngestService/IngestEvents` (idempotent by event id) and retries
//!   unavailability forever with capped exponential backoff; a segment is
//!   deleted once acknowledged. After a restart the segments left are
//!   shipped again. Only an event the audit service refuses for good
//!   (INVALID_ARGUMENT, alone in its call) is dropped, loudly.
//!
//! Metrics: `steward_gateway_refusals_spooled_total`,
//! `..._refusals_shipped_total`, `..._refusals_summarised_total`,
//! `steward_gateway_audit_dropped_total` (not in the trail at all) and
//! `steward_gateway_refusal_spool_bytes`.

mod flood;
mod record;
mod ship;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use steward_kit::{
    RequestContext,
    auth::{Claims, TokenSigner},
};
use steward_proto::{
    audit::{AuditEvent, Category},
    common::Result as Outcome,
};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use crate::{metrics::Metrics, spool::Spool};

pub const PRODUCT: &str = "gateway";
pub const ACTION: &str = "gateway.request.refused";

/// What is known about a refused call.
pub struct Refusal<'a> {
    pub method: &'a str,
    pub code: tonic::Code,
    pub reason: &'a str,
    pub message: &'a str,
    pub context: &'a RequestContext,
    /// The token's claims when it was valid (a permission refusal).
    pub claims: Option<&'a Claims>,
    pub elapsed: Duration,
}

/// How refusals are aggregated and shipped.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Refusals queued in memory before the writer spools them.
    pub queue: usize,
    pub flood_window: Duration,
    pub flood_sample: u64,
    /// The longest wait between two delivery attempts.
    pub max_backoff: Duration,
}

/// Refusals counted rather than recorded one by one, as one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub method: String,
    pub code: String,
    pub reason: String,
    pub client_ip: String,
    pub count: u64,
    /// The window the count covers, when it is a flood's.
    pub window: Option<Duration>,
    pub message: String,
}

fn timestamp_now() -> prost_types::Timestamp {
    let now = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: now.timestamp_subsec_nanos() as i32,
    }
}

/// A FAILURE event of the gateway's, without the caller yet.
fn event(comments: HashMap<String, String>, client_ip: String, message: String) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(timestamp_now()),
        product: PRODUCT.into(),
        action: ACTION.into(),
        category: Category::Public as i32,
        comments,
        client_ip,
        result: Outcome::Failure as i32,
        error_message: message,
        source: PRODUCT.into(),
        ..AuditEvent::default()
    }
}

fn comments<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> HashMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

impl Summary {
    pub fn event(&self) -> AuditEvent {
        let mut pairs = vec![
            ("method", self.method.clone()),
            ("code", self.code.clone()),
            ("reason", self.reason.clone()),
            ("summary", "true".to_owned()),
            ("count", self.count.to_string()),
        ];
        if let Some(window) = self.window {
            pairs.push(("window_seconds", window.as_secs().to_string()));
        }
        event(
            comments(pairs),
            self.client_ip.clone(),
            self.message.clone(),
        )
    }
}

/// The event recording one refusal.
fn refusal_event(refusal: &Refusal<'_>) -> AuditEvent {
    let claims = refusal.claims;
    let actor = claims.map(|c| c.sub.clone()).unwrap_or_default();
    AuditEvent {
        actor_user_id: actor.clone(),
        // A refusal belongs to the log of whoever presented the token.
        subject_user_id: actor,
        impersonator_user_id: claims
            .and_then(|c| c.act.as_ref().map(|a| a.sub.clone()))
            .unwrap_or_default(),
        impersonation_session_id: claims.and_then(|c| c.sid.clone()).unwrap_or_default(),
        token_id: claims.and_then(|c| c.tid.clone()).unwrap_or_default(),
        user_agent: refusal.context.user_agent.clone(),
        duration: Some(prost_types::Duration {
            seconds: refusal.elapsed.as_secs() as i64,
            nanos: refusal.elapsed.subsec_nanos() as i32,
        }),
        request_id: refusal.context.request_id.clone(),
        trace_id: refusal.context.trace_id(),
        ..event(
            HashMap::from([
                ("method".to_owned(), refusal.method.to_owned()),
                ("code".to_owned(), format!("{:?}", refusal.code)),
                ("reason".to_owned(), refusal.reason.to_owned()),
            ]),
            refusal.context.client_ip.clone(),
            refusal.message.to_owned(),
        )
    }
}

/// The handle the edge records refusals through; cheap to clone.
#[derive(Clone)]
pub struct RefusalAudit {
    sender: mpsc::Sender<AuditEvent>,
    /// Refusals that found the queue full, for the next summary.
    overflow: Arc<AtomicU64>,
    metrics: Metrics,
}

impl RefusalAudit {
    /// The recorder, and the tasks (writer and shipper) to run until
    /// `stopped`: refusals are spooled in `spool`, and shipped through
    /// `ingest` when it is set (else they wait in the spool).
    pub fn new(
        settings: &Settings,
        spool: Arc<Spool>,
        ingest: Option<(Channel, TokenSigner)>,
        metrics: Metrics,
    ) -> (Self, Shipper) {
        let (sender, receiver) = mpsc::channel(settings.queue.max(1));
        let overflow = Arc::new(AtomicU64::new(0));
        metrics.set_spool_bytes(spool.bytes());
        let writer = ship::Writer::new(
            receiver,
            overflow.clone(),
            settings,
            spool.clone(),
            metrics.clone(),
        );
        let shipper = ship::Shipper::new(spool, ingest, settings.max_backoff, metrics.clone());
        (
            Self {
                sender,
                overflow,
                metrics,
            },
            Shipper { writer, shipper },
        )
    }

    pub fn record(&self, refusal: Refusal<'_>) {
        self.metrics.record_refusal(refusal.reason);
        if self.sender.try_send(refusal_event(&refusal)).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            self.metrics.record_refusals_summarised(1);
        }
    }
}

/// The refusal audit's background work: spooling and shipping.
pub struct Shipper {
    writer: ship::Writer,
    shipper: ship::Shipper,
}

impl Shipper {
    /// Runs until `stopped` turns true; then spools what is queued (the
    /// window's summaries too), and makes one short attempt to ship what
    /// is spooled. What is not shipped waits in the spool for the next
    /// start.
    pub async fn run(self, stopped: watch::Receiver<bool>) {
        let (done, writer_done) = watch::channel(false);
        let writer = self.writer;
        let writing = {
            let stopped = stopped.clone();
            async move {
                writer.run(stopped).await;
                let _ = done.send(true);
            }
        };
        tokio::join!(writing, self.shipper.run(stopped, writer_done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_says_what_it_counts() {
        let event = Summary {
            method: "/a.B/C".into(),
            code: "Unauthenticated".into(),
            reason: "TOKEN_MISSING".into(),
            client_ip: "192.0.2.1".into(),
            count: 280,
            window: Some(Duration::from_secs(10)),
            message: "280 more refusals not recorded one by one".into(),
        }
        .event();
        assert_eq!(event.action, ACTION);
        assert_eq!(event.result, Outcome::Failure as i32);
        assert_eq!(event.client_ip, "192.0.2.1");
        for (key, value) in [
            ("method", "/a.B/C"),
            ("reason", "TOKEN_MISSING"),
            ("summary", "true"),
            ("count", "280"),
            ("window_seconds", "10"),
        ] {
            assert_eq!(event.comments.get(key).map(String::as_str), Some(value));
        }
        let unkeyed = Summary {
            count: 3,
            message: "3".into(),
            ..Summary::default()
        }
        .event();
        assert!(!unkeyed.comments.contains_key("method"));
        assert!(!unkeyed.comments.contains_key("window_seconds"));
    }
}
