//! The two tasks behind [`super::RefusalAudit`]: the writer (queue -> flood
//! rule -> spool, fsynced per batch) and the shipper (sealed segments ->
//! audit ingest, retried forever, deleted once acknowledged).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use steward_kit::auth::{ServiceCredentials, TokenSigner};
use steward_proto::audit::{
    AuditEvent, IngestEventsRequest, audit_ingest_service_client::AuditIngestServiceClient,
};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use super::{Settings, Summary, flood::Flood, record};
use crate::{
    metrics::Metrics,
    spool::{Appender, HEADER, Segment, Spool},
};

/// Events per ingest call.
const MAX_BATCH: usize = 200;
/// Refusals taken from the queue per write (and fsync).
const WRITE_BATCH: usize = 256;
/// A segment is sealed (and shipped) when it is this large, or, when the
/// shipper has nothing else to do, once it is this old.
const SEGMENT_BYTES: u64 = 1024 * 1024;
const SEAL_AFTER: Duration = Duration::from_millis(200);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping gateway tries to ship what is spooled.
const FINAL_PASS: Duration = Duration::from_secs(2);

pub struct Writer {
    queue: mpsc::Receiver<AuditEvent>,
    overflow: Arc<AtomicU64>,
    flood: Flood,
    window: Duration,
    spool: Arc<Spool>,
    appender: Appender,
    metrics: Metrics,
    /// Refusals not spooled (the spool was full, or a write failed), to be
    /// summarised once there is room.
    unrecorded: u64,
}

impl Writer {
    pub fn new(
        queue: mpsc::Receiver<AuditEvent>,
        overflow: Arc<AtomicU64>,
        settings: &Settings,
        spool: Arc<Spool>,
        metrics: Metrics,
    ) -> Self {
        Self {
            queue,
            overflow,
            flood: Flood::new(settings.flood_sample),
            window: settings.flood_window.max(Duration::from_millis(100)),
            appender: spool.appender(),
            spool,
            metrics,
            unrecorded: 0,
        }
    }

    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut window = tokio::time::interval(self.window);
        window.tick().await;
        let mut seal = tokio::time::interval(SEAL_AFTER);
        seal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            tokio::select! {
                n = self.queue.recv_many(&mut batch, WRITE_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.write_refusals(std::mem::take(&mut batch)).await;
                }
                _ = window.tick() => self.close_window().await,
                _ = seal.tick() => self.seal_if_due(),
                _ = until_stopped(&mut stopped) => break,
            }
        }
        while let Ok(event) = self.queue.try_recv() {
            batch.push(event);
        }
        self.write_refusals(batch).await;
        self.close_window().await;
        self.appender.seal();
        if self.unrecorded > 0 {
            self.metrics.record_audit_dropped(self.unrecorded);
            tracing::error!(
                count = self.unrecorded,
                "refusals not audited: the refusal spool is full or cannot be written"
            );
        }
    }

    /// Seals the active segment when it is large, or old while the
    /// shipper is idle (a backlog grows segments instead of files).
    fn seal_if_due(&mut self) {
        if let Some((bytes, age)) = self.appender.active()
            && (bytes >= SEGMENT_BYTES || (age >= SEAL_AFTER && self.spool.pending().is_empty()))
        {
            self.appender.seal();
        }
    }

    async fn write_refusals(&mut self, events: Vec<AuditEvent>) {
        let mut records = Vec::with_capacity(events.len());
        let mut reserved = 0;
        for event in &events {
            if !self.flood.admit(event) {
                self.metrics.record_refusals_summarised(1);
                continue;
            }
            let payload = record::encode(event);
            let size = HEADER + payload.len() as u64;
            if self.spool.reserve(size, false) {
                records.push(payload);
                reserved += size;
            } else {
                if self.unrecorded == 0 {
                    tracing::warn!(
                        bytes = self.spool.bytes(),
                        "refusal spool full: refusals are counted and summarised"
                    );
                }
                self.unrecorded += 1;
                self.metrics.record_refusals_summarised(1);
            }
        }
        let count = records.len() as u64;
        self.append(records, reserved, count).await;
        if self
            .appender
            .active()
            .is_some_and(|(bytes, _)| bytes >= SEGMENT_BYTES)
        {
            self.appender.seal();
        }
    }

    /// Appends reserved records which stand for `refusals` refusals.
    async fn append(&mut self, records: Vec<Vec<u8>>, reserved: u64, refusals: u64) {
        if records.is_empty() {
            return;
        }
        match self.appender.append(&records).await {
            Ok(()) => self.metrics.record_refusals_spooled(records.len() as u64),
            Err(error) => {
                self.spool.release(reserved);
                self.unrecorded += refusals;
                tracing::error!(%error, count = records.len(), "cannot write to the refusal spool");
            }
        }
        self.metrics.set_spool_bytes(self.spool.bytes());
    }

    /// Spools the window's summaries, the queue's overflow and what the
    /// spool had no room for.
    async fn close_window(&mut self) {
        let mut summaries = self.flood.close(self.window);
        let overflow = self.overflow.swap(0, Ordering::Relaxed);
        if overflow > 0 {
            summaries.push(Summary {
                count: overflow,
                message: format!("{overflow} refusals arrived faster than they could be spooled"),
                ..Summary::default()
            });
        }
        let unrecorded = std::mem::take(&mut self.unrecorded);
        if unrecorded > 0 {
            summaries.push(Summary {
                count: unrecorded,
                message: format!(
                    "{unrecorded} refusals not recorded one by one: the refusal spool was full"
                ),
                ..Summary::default()
            });
        }
        let mut records = Vec::new();
        let mut reserved = 0;
        let mut counted = 0;
        for summary in summaries {
            let payload = record::encode(&summary.event());
            let size = HEADER + payload.len() as u64;
            if self.spool.reserve(size, true) {
                records.push(payload);
                reserved += size;
                counted += summary.count;
            } else {
                self.unrecorded += summary.count;
            }
        }
        self.append(records, reserved, counted).await;
    }
}

/// Whether a delivery got through.
enum Delivery {
    Delivered,
    /// Refused for good (INVALID_ARGUMENT).
    Refused(tonic::Status),
    /// Not delivered: stopping, or a single attempt failed.
    Pending,
}

pub struct Shipper {
    spool: Arc<Spool>,
    ingest: Option<(Channel, TokenSigner)>,
    max_backoff: Duration,
    metrics: Metrics,
}

impl Shipper {
    pub fn new(
        spool: Arc<Spool>,
        ingest: Option<(Channel, TokenSigner)>,
        max_backoff: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            spool,
            ingest,
            max_backoff: max_backoff.max(FIRST_BACKOFF),
            metrics,
        }
    }

    pub async fn run(
        mut self,
        mut stopped: watch::Receiver<bool>,
        mut writer_done: watch::Receiver<bool>,
    ) {
        let Some((channel, signer)) = self.ingest.take() else {
            tracing::warn!("no audit endpoint: refusals are spooled and wait there");
            return;
        };
        let client = AuditIngestServiceClient::new(channel);
        let link = Link {
            client: &client,
            signer: &signer,
        };
        loop {
            let segment = tokio::select! {
                segment = self.spool.oldest() => segment,
                _ = until_stopped(&mut stopped) => break,
            };
            if !self.ship(&link, segment, Some(&mut stopped)).await {
                break;
            }
        }
        let _ = writer_done.wait_for(|done| *done).await;
        let _ = tokio::time::timeout(FINAL_PASS, async {
            for segment in self.spool.pending() {
                if !self.ship(&link, segment, None).await {
                    return;
                }
            }
        })
        .await;
        let left = self.spool.pending().len();
        if left > 0 {
            tracing::warn!(
                segments = left,
                "refusals left in the spool: shipped after the next start"
            );
        }
    }

    /// Ships and deletes one segment: `true` when done. With `stopped`,
    /// retries until done or stopped; without, tries once.
    async fn ship(
        &self,
        link: &Link<'_>,
        segment: Segment,
        mut stopped: Option<&mut watch::Receiver<bool>>,
    ) -> bool {
        let mut backoff = Backoff::new(self.max_backoff);
        let (records, skipped) = loop {
            match self.spool.read(segment).await {
                Ok(read) => break read,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    tracing::error!(segment = segment.id, "refusal spool segment vanished");
                    break (Vec::new(), 0);
                }
                Err(error) => {
                    tracing::error!(%error, segment = segment.id, "cannot read the refusal spool");
                    if !backoff.wait(stopped.as_deref_mut()).await {
                        return false;
                    }
                }
            }
        };
        if skipped > 0 {
            tracing::warn!(
                segment = segment.id,
                bytes = skipped,
                "refusal spool segment ends in a torn or corrupt record: skipped"
            );
        }
        let mut events = Vec::with_capacity(records.len());
        for bytes in &records {
            match record::decode(bytes) {
                Some(event) => events.push(event),
                None => {
                    self.metrics.record_audit_dropped(1);
                    tracing::error!(
                        segment = segment.id,
                        "a spooled refusal does not decode: dropped"
                    );
                }
            }
        }
        for chunk in events.chunks(MAX_BATCH) {
            match self.deliver(link, chunk, stopped.as_deref_mut()).await {
                Delivery::Delivered => {}
                Delivery::Pending => return false,
                // One bad event must not hold the others: one by one.
                Delivery::Refused(_) => {
                    for event in chunk {
                        match self
                            .deliver(link, std::slice::from_ref(event), stopped.as_deref_mut())
                            .await
                        {
                            Delivery::Delivered => {}
                            Delivery::Pending => return false,
                            Delivery::Refused(status) => {
                                self.metrics.record_audit_dropped(1);
                                tracing::error!(
                                    event_id = event.event_id,
                                    message = status.message(),
                                    "the audit service refuses a refusal event: dropped"
                                );
                            }
                        }
                    }
                }
            }
        }
        let mut backoff = Backoff::new(self.max_backoff);
        while let Err(error) = self.spool.remove(segment).await {
            tracing::error!(%error, segment = segment.id, "cannot delete a shipped refusal spool segment");
            if !backoff.wait(stopped.as_deref_mut()).await {
                return false;
            }
        }
        self.metrics.record_refusals_shipped(events.len() as u64);
        self.metrics.set_spool_bytes(self.spool.bytes());
        true
    }

    /// Sends `events`, retrying unavailability (with `stopped`: until
    /// delivered or stopped; without: once).
    async fn deliver(
        &self,
        link: &Link<'_>,
        events: &[AuditEvent],
        mut stopped: Option<&mut watch::Receiver<bool>>,
    ) -> Delivery {
        let mut backoff = Backoff::new(self.max_backoff);
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match link.send(events).await {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(attempt, "audit ingest took the spooled refusals");
                    }
                    return Delivery::Delivered;
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    return Delivery::Refused(status);
                }
                Err(status) => {
                    self.metrics.record_audit_batch_failed();
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(
                            attempt,
                            code = ?status.code(),
                            message = status.message(),
                            spooled_bytes = self.spool.bytes(),
                            "audit ingest unavailable: refusals wait in the spool"
                        );
                    }
                }
            }
            if !backoff.wait(stopped.as_deref_mut()).await {
                return Delivery::Pending;
            }
        }
    }
}

/// Where and as whom refusals are delivered.
struct Link<'a> {
    client: &'a AuditIngestServiceClient<Channel>,
    signer: &'a TokenSigner,
}

impl Link<'_> {
    async fn send(&self, events: &[AuditEvent]) -> Result<(), tonic::Status> {
        let mut request = ServiceCredentials::new(self.signer.clone(), "service:gateway")
            .authorize(IngestEventsRequest {
                events: events.to_vec(),
            });
        request.set_timeout(CALL_TIMEOUT);
        self.client.clone().ingest_events(request).await.map(|_| ())
    }
}

/// Resolves once `stopped` turns true (or its sender is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Capped exponential backoff.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: FIRST_BACKOFF,
            max,
        }
    }

    /// Waits the next delay: `false` when there is to be no retry (no
    /// `stopped` given: a single attempt; or stopped meanwhile).
    async fn wait(&mut self, stopped: Option<&mut watch::Receiver<bool>>) -> bool {
        let Some(stopped) = stopped else {
            return false;
        };
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = until_stopped(stopped) => false,
        }
    }
}
