//! Delivery: the dispatcher claims due mail (SKIP LOCKED, so replicas
//! share the queue), sends each with at most `max_in_flight` in flight and a
//! per-message timeout, and records the outcome through kit's command
//! runner (status + suppression + audit record in one transaction).
//!
//! It is woken by ingest (same process), by its poll interval, and when a
//! deferred mail falls due; mail left SENDING by a crash is deferred again
//! after the lease.

pub mod commands;
pub mod connections;
pub mod implicit_tls;
pub mod store;
pub mod transport;

use std::{collections::HashSet, sync::Arc, time::Duration};

use rand::Rng;
use steward_kit::{Commands, RequestContext, auth::Caller, db::Pool, outbox::AuditRecord};
use steward_proto::audit::Category;
use tokio::{
    sync::{Notify, Semaphore, watch},
    task::JoinSet,
    time::Instant,
};

use crate::{
    NotificationsConfig, SOURCE,
    domain::{
        address,
        retry::{Outcome, RetryPolicy},
    },
    error::CONSTRAINTS,
    suppressions,
};
use store::Claimed;
use transport::{Mailer, Outgoing};

/// How often the queue gauges are refreshed (at most; the loop also wakes
/// for work).
const QUEUE_EXPORT: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    commands: Commands,
    mailer: Arc<Mailer>,
    config: NotificationsConfig,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        pool: Pool,
        mailer: Arc<Mailer>,
        config: NotificationsConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            commands: Commands::new(pool, CONSTRAINTS),
            mailer,
            config,
            wake,
        }
    }

    /// Runs until `shutdown`; then stops claiming and lets the sends in
    /// flight finish (each bounded by the message timeout).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let d = &self.config.delivery;
        let slots = Arc::new(Semaphore::new(d.max_in_flight.max(1)));
        let mut in_flight = JoinSet::new();
        let this = Arc::new(self);
        let lease = this.config.delivery.sending_lease;
        let mut last_recovery: Option<Instant> = None;
        let mut last_export: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            while in_flight.try_join_next().is_some() {}
            if last_recovery.is_none_or(|t| t.elapsed() >= lease / 4) {
                last_recovery = Some(Instant::now());
                this.recover(lease).await;
            }
            if last_export.is_none_or(|t| t.elapsed() >= QUEUE_EXPORT) {
                last_export = Some(Instant::now());
                this.export_queue().await;
            }
            let free = slots.available_permits();
            let claimed = if free > 0 {
                this.claim(free).await
            } else {
                Vec::new()
            };
            let full_batch = free > 0 && claimed.len() == free;
            let suppressed = this.suppressed_among(&claimed).await;
            for mail in claimed {
                let suppressed = suppressed.contains(&address::normalize(&mail.recipient));
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let this = this.clone();
                in_flight.spawn(async move {
                    this.deliver(mail, suppressed).await;
                    drop(permit);
                });
            }
            if full_batch {
                continue;
            }
            let wait = this.until_next_due().await;
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(_) = in_flight.join_next(), if slots.available_permits() == 0 => {}
                _ = shutdown.changed() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    async fn claim(&self, n: usize) -> Vec<Claimed> {
        let result = self
            .commands
            .read(async |conn| Ok(store::claim(conn, n as i64).await?))
            .await;
        result.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot claim mail; retrying");
            Vec::new()
        })
    }

    /// The claimed mails' suppressed recipients: one query for the batch, a
    /// moment before the sends (it was one query per mail). Empty when the
    /// lookup fails: the mail is sent, as if checked a moment earlier.
    async fn suppressed_among(&self, claimed: &[Claimed]) -> HashSet<String> {
        if claimed.is_empty() {
            return HashSet::new();
        }
        let addresses: Vec<String> = claimed
            .iter()
            .map(|m| address::normalize(&m.recipient))
            .collect();
        self.commands
            .read(async |conn| Ok(suppressions::store::suppressed(conn, &addresses).await?))
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the suppression list; sending");
                HashSet::new()
            })
    }

    async fn recover(&self, lease: Duration) {
        let secs = lease.as_secs().max(1) as i64;
        match self
            .commands
            .read(async |conn| Ok(store::recover(conn, secs).await?))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(mails = n, "interrupted sends deferred for another attempt"),
            Err(error) => tracing::warn!(%error, "cannot recover interrupted sends"),
        }
    }

    /// The queue gauges (every status a mail waits in, 0 when none does).
    async fn export_queue(&self) {
        use steward_kit::metrics::{MAIL_OLDEST_QUEUED_AGE, MAIL_QUEUE};
        let Ok(rows) = self
            .commands
            .read(async |conn| Ok(store::queue_depth(conn).await?))
            .await
        else {
            return;
        };
        let mut oldest = 0f64;
        for status in ["QUEUED", "SENDING", "DEFERRED"] {
            let row = rows.iter().find(|(s, _, _)| s == status);
            let labels = format!("status=\"{status}\"");
            MAIL_QUEUE.set(&labels, row.map_or(0.0, |(_, n, _)| *n as f64));
            oldest = oldest.max(row.map_or(0.0, |(_, _, age)| *age));
        }
        MAIL_OLDEST_QUEUED_AGE.set("", oldest);
    }

    /// The poll interval, or less when a deferred mail falls due sooner.
    async fn until_next_due(&self) -> Duration {
        let poll = self.config.delivery.poll_interval;
        let due = self
            .commands
            .read(async |conn| Ok(store::next_due(conn).await?))
            .await
            .ok()
            .flatten();
        match due {
            Some(at) => (at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            None => poll,
        }
    }

    fn policy(&self) -> RetryPolicy {
        self.config.delivery.retry()
    }

    /// One attempt for one mail (or its suppression), recorded.
    async fn deliver(&self, mail: Claimed, suppressed: bool) {
        let record = AuditRecord::new(
            SOURCE,
            "notifications.mail.sent",
            &Caller::system(),
            &RequestContext::default(),
            &mail.subject_user_id,
        )
        .category(Category::System)
        .comment("mail_id", mail.id.to_string())
        .comment("template_id", mail.template_id.clone())
        .comment("email", mail.recipient.clone())
        .comment("attempt", mail.attempts.to_string());
        let result = if suppressed {
            self.commands
                .run(record, None, Ok(()), async |tx, ()| {
                    commands::suppress(tx, &mail).await
                })
                .await
        } else {
            let outcome = self.attempt(&mail).await;
            let jitter: f64 = rand::thread_rng().r#gen();
            let decision = self
                .policy()
                .decide(mail.attempts.max(1) as u32, outcome, jitter);
            let transport = self.mailer.name();
            self.commands
                .run(record, None, Ok(()), async |tx, ()| {
                    commands::record(tx, &mail, &decision, transport).await
                })
                .await
        };
        // The mail stays SENDING and is deferred again after the lease.
        if let Err(error) = result {
            tracing::error!(%error, mail_id = %mail.id, "cannot record a delivery attempt");
        }
    }

    async fn attempt(&self, mail: &Claimed) -> Outcome {
        let out = Outgoing {
            mail_id: mail.id,
            recipient: mail.recipient.clone(),
            subject: mail.subject.clone(),
            text_body: mail.text_body.clone(),
            html_body: mail.html_body.clone(),
        };
        let timeout = self.config.delivery.message_timeout;
        match tokio::time::timeout(timeout, self.mailer.send(&out)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Transient {
                error: format!("timed out after {}s", timeout.as_secs_f64()),
            },
        }
    }
}
