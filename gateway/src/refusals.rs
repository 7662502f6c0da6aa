//! Audit of what the gateway refuses (unauthenticated, permission denied,
//! rate limited): FAILURE events shipped to the audit ingest in batches.
//!
//! The buffer is bounded: when audit is down long enough to fill it, new
//! refusals are dropped and counted in `steward_gateway_audit_dropped_total`
//! (and logged) rather than growing memory without limit or slowing the edge.

use std::{collections::HashMap, time::Duration};

use steward_kit::{
    RequestContext,
    auth::{Claims, Role, TokenSigner},
};
use steward_proto::{
    audit::{
        AuditEvent, Category, IngestEventsRequest,
        audit_ingest_service_client::AuditIngestServiceClient,
    },
    common::Result as Outcome,
};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use crate::metrics::Metrics;

pub const PRODUCT: &str = "gateway";
pub const ACTION: &str = "gateway.request.refused";
const MAX_BATCH: usize = 200;

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

#[derive(Clone)]
pub struct RefusalAudit {
    sender: mpsc::Sender<AuditEvent>,
    metrics: Metrics,
}

fn timestamp_now() -> prost_types::Timestamp {
    let now = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: now.timestamp_subsec_nanos() as i32,
    }
}

impl RefusalAudit {
    /// The recorder, and the shipper to run until `stopped` (then it sends
    /// what it holds).
    pub fn new(
        capacity: usize,
        ingest: Option<(Channel, TokenSigner)>,
        metrics: Metrics,
    ) -> (Self, Shipper) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (
            Self {
                sender,
                metrics: metrics.clone(),
            },
            Shipper {
                receiver,
                ingest,
                metrics,
            },
        )
    }

    pub fn record(&self, refusal: Refusal<'_>) {
        self.metrics.record_refusal(refusal.reason);
        let actor = refusal.claims.map(|c| c.sub.clone()).unwrap_or_default();
        let event = AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp_now()),
            product: PRODUCT.into(),
            action: ACTION.into(),
            category: Category::Public as i32,
            actor_user_id: actor.clone(),
            // A refusal belongs to the log of whoever presented the token.
            subject_user_id: actor,
            modified_user_id: String::new(),
            impersonator_user_id: refusal
                .claims
                .and_then(|c| c.act.as_ref().map(|a| a.sub.clone()))
                .unwrap_or_default(),
            impersonation_session_id: refusal
                .claims
                .and_then(|c| c.sid.clone())
                .unwrap_or_default(),
            token_id: refusal
                .claims
                .and_then(|c| c.tid.clone())
                .unwrap_or_default(),
            project: String::new(),
            comments: HashMap::from([
                ("method".to_owned(), refusal.method.to_owned()),
                ("code".to_owned(), format!("{:?}", refusal.code)),
                ("reason".to_owned(), refusal.reason.to_owned()),
            ]),
            client_ip: refusal.context.client_ip.clone(),
            user_agent: refusal.context.user_agent.clone(),
            result: Outcome::Failure as i32,
            error_message: refusal.message.to_owned(),
            duration: Some(prost_types::Duration {
                seconds: refusal.elapsed.as_secs() as i64,
                nanos: refusal.elapsed.subsec_nanos() as i32,
            }),
            request_id: refusal.context.request_id.clone(),
            trace_id: refusal.context.trace_id(),
            source: PRODUCT.into(),
        };
        if self.sender.try_send(event).is_err() {
            self.metrics.record_audit_dropped();
            tracing::warn!(
                method = refusal.method,
                "refusal audit buffer full: event dropped"
            );
        }
    }
}

pub struct Shipper {
    receiver: mpsc::Receiver<AuditEvent>,
    ingest: Option<(Channel, TokenSigner)>,
    metrics: Metrics,
}

impl Shipper {
    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let Some((channel, signer)) = self.ingest.take() else {
            tracing::warn!("no audit endpoint: refusals are counted but not audited");
            // Keep draining so the buffer never blocks; every event is a drop.
            loop {
                tokio::select! {
                    received = self.receiver.recv() => match received {
                        Some(_) => self.metrics.record_audit_dropped(),
                        None => return,
                    },
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        };
        let client = AuditIngestServiceClient::new(channel);
        let mut batch = Vec::new();
        loop {
            let stopping = tokio::select! {
                n = self.receiver.recv_many(&mut batch, MAX_BATCH) => n == 0,
                _ = stopped.wait_for(|s| *s) => true,
            };
            if stopping {
                while let Ok(event) = self.receiver.try_recv() {
                    batch.push(event);
                }
            }
            if !batch.is_empty() {
                self.ship(&client, &signer, std::mem::take(&mut batch), stopping)
                    .await;
            }
            if stopping {
                return;
            }
        }
    }

    /// Sends one batch, retrying with backoff; ingest is idempotent by event
    /// id, so a retry after a lost answer stores nothing twice.
    async fn ship(
        &self,
        client: &AuditIngestServiceClient<Channel>,
        signer: &TokenSigner,
        events: Vec<AuditEvent>,
        stopping: bool,
    ) {
        let mut delay = Duration::from_millis(100);
        let attempts = if stopping { 2 } else { 8 };
        for attempt in 1..=attempts {
            let token = signer.sign(&Claims::new(
                "service:gateway",
                &[Role::PlatformService],
                Duration::from_secs(300),
            ));
            let mut request = tonic::Request::new(IngestEventsRequest {
                events: events.clone(),
            });
            if let Ok(value) = format!("Bearer {token}").parse() {
                request.metadata_mut().insert("authorization", value);
            }
            match client.clone().ingest_events(request).await {
                Ok(_) => return,
                Err(status) => {
                    self.metrics.record_audit_batch_failed();
                    tracing::warn!(attempt, code = ?status.code(), message = status.message(), "audit ingest refused a refusal batch");
                    if status.code() == tonic::Code::InvalidArgument {
                        break;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        for _ in &events {
            self.metrics.record_audit_dropped();
        }
        tracing::error!(
            events = events.len(),
            "refusal audit events dropped after retries"
        );
    }
}
