//! Refusals a service decides itself (a missing or invalid token, a role the
//! caller lacks, another user's resource), recorded in the service's own
//! outbox as `<product>.request.refused` FAILURE events.
//!
//! Commands audit their refusals in the command runner; whatever access
//! refusal leaves a handler without having been audited there is recorded
//! here, once. A flood is not recorded one by one: per window and per
//! (method, reason, client address), the first [`SAMPLE`] refusals are
//! recorded, the rest counted and summarised in one event when the window
//! closes. Nothing is dropped silently: when even the queue is full, the
//! count of what could not be queued goes into the next summary.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;

use super::Caller;
use crate::{RequestContext, db::Pool, outbox::AuditRecord};

/// Refusals recorded individually per key and window.
pub const SAMPLE: u64 = 20;
const WINDOW: Duration = Duration::from_secs(10);
const QUEUE: usize = 10_000;

tokio::task_local! {
    /// Set when the command runner audited the request's refusal itself.
    static AUDITED: Cell<bool>;
}

/// Runs `f` in a scope in which [`mark_audited`] is remembered, and says
/// whether it was called.
pub async fn scope<F: Future>(f: F) -> (F::Output, bool) {
    AUDITED
        .scope(Cell::new(false), async move {
            let out = f.await;
            (out, AUDITED.with(Cell::get))
        })
        .await
}

/// The refusal of this request is in the audit trail already.
pub fn mark_audited() {
    let _ = AUDITED.try_with(|a| a.set(true));
}

/// One refusal to record.
pub struct Refusal {
    pub method: String,
    pub code: tonic::Code,
    pub message: String,
    pub caller: Option<Caller>,
    pub context: RequestContext,
}

/// The handle the auth layer records through; cheap to clone.
#[derive(Clone)]
pub struct RefusalAudit {
    tx: mpsc::Sender<Refusal>,
    overflow: Arc<AtomicU64>,
}

impl RefusalAudit {
    /// Starts the writer for `source`'s outbox; it ends when every handle
    /// is dropped, after writing what is pending.
    pub fn spawn(pool: Pool, source: &'static str) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let overflow = Arc::new(AtomicU64::new(0));
        tokio::spawn(write(pool, source, rx, overflow.clone()));
        Self { tx, overflow }
    }

    pub fn record(&self, refusal: Refusal) {
        if self.tx.try_send(refusal).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Window {
    seen: HashMap<(String, String, String), u64>,
}

fn record_of(source: &str, r: &Refusal) -> AuditRecord {
    let caller = r.caller.clone().unwrap_or_else(Caller::anonymous);
    let subject = caller.user_id.clone();
    AuditRecord::new(
        source,
        &format!("{source}.request.refused"),
        &caller,
        &r.context,
        &subject,
    )
    .comment("method", r.method.clone())
    .comment("code", format!("{:?}", r.code))
    .failed(r.message.clone())
}

async fn write(
    pool: Pool,
    source: &'static str,
    mut rx: mpsc::Receiver<Refusal>,
    overflow: Arc<AtomicU64>,
) {
    let mut window = Window::default();
    let mut ticker = tokio::time::interval(WINDOW);
    ticker.tick().await;
    loop {
        let mut batch = Vec::new();
        let closed = tokio::select! {
            n = rx.recv_many(&mut batch, 256) => n == 0,
            _ = ticker.tick() => {
                summarise(&pool, source, std::mem::take(&mut window), &overflow).await;
                continue;
            }
        };
        if closed {
            summarise(&pool, source, window, &overflow).await;
            return;
        }
        let mut records = Vec::new();
        for r in &batch {
            let key = (
                r.method.clone(),
                format!("{:?}", r.code),
                r.context.client_ip.clone(),
            );
            let n = window.seen.entry(key).or_default();
            *n += 1;
            if *n <= SAMPLE {
                records.push(record_of(source, r));
            }
        }
        write_records(&pool, records).await;
    }
}

/// One event per key that went past [`SAMPLE`], and one for the queue's
/// overflow.
async fn summarise(pool: &Pool, source: &str, window: Window, overflow: &AtomicU64) {
    let mut records = Vec::new();
    for ((method, code, ip), n) in window.seen {
        if n > SAMPLE {
            let context = RequestContext {
                client_ip: ip,
                ..RequestContext::default()
            };
            records.push(
                AuditRecord::new(
                    source,
                    &format!("{source}.request.refused"),
                    &Caller::anonymous(),
                    &context,
                    "",
                )
                .comment("method", method)
                .comment("code", code)
                .comment("summary", "true")
                .comment("count", (n - SAMPLE).to_string())
                .comment("window_seconds", WINDOW.as_secs().to_string())
                .failed(format!(
                    "{} more refusals not recorded one by one",
                    n - SAMPLE
                )),
            );
        }
    }
    let lost = overflow.swap(0, Ordering::Relaxed);
    if lost > 0 {
        records.push(
            AuditRecord::new(
                source,
                &format!("{source}.request.refused"),
                &Caller::anonymous(),
                &RequestContext::default(),
                "",
            )
            .comment("summary", "true")
            .comment("count", lost.to_string())
            .failed(format!(
                "{lost} refusals arrived faster than they could be queued"
            )),
        );
    }
    write_records(pool, records).await;
}

async fn write_records(pool: &Pool, records: Vec<AuditRecord>) {
    if records.is_empty() {
        return;
    }
    let written = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        for record in &records {
            record.write(&mut conn).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    };
    if let Err(error) = written.await {
        tracing::error!(%error, count = records.len(), "cannot record refusals");
    }
}
