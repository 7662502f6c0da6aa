//! Renews subscriptions at the end of each period (invoice + charge) and
//! expires cancelled ones. Safe in every replica: SKIP LOCKED.

use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use steward_kit::{RequestContext, auth::Caller, db::Pool, outbox::AuditRecord};
use tokio::sync::watch;

use super::{commands::invoice_and_charge, store as subscriptions};
use crate::{
    SOURCE,
    domain::{
        money,
        subscription::{Renewal, Status, renewal},
    },
    error::{self, Error},
};

const BATCH: i64 = 100;

/// One pass; returns how many subscriptions moved on.
pub async fn run_once(pool: &Pool) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let mut conn = pool.get().await?;
        let handled = conn
            .transaction::<_, Error, _>(async |conn| {
                let due = subscriptions::due(conn, Utc::now(), BATCH).await?;
                for s in &due {
                    let (action, amount) = match renewal(s.status) {
                        Some(Renewal::Renew) => {
                            let start = s.current_period_end;
                            // A savepoint: a renewal the user cannot pay for
                            // leaves no invoice, and the subscription ends.
                            let renewed = conn
                                .transaction::<_, Error, _>(async |conn| {
                                    invoice_and_charge(conn, s, start).await
                                })
                                .await;
                            match renewed {
                                Ok(issued) => {
                                    let end = start + s.plan.period();
                                    subscriptions::advance(conn, s.id, start, end).await?;
                                    ("billing.subscription.renewed", issued.map(|i| i.amount))
                                }
                                Err(e) if error::is_insufficient_funds(&e) => {
                                    subscriptions::set_status(conn, s.id, Status::Expired).await?;
                                    ("billing.subscription.expired", None)
                                }
                                Err(other) => return Err(other),
                            }
                        }
                        Some(Renewal::Expire) => {
                            subscriptions::set_status(conn, s.id, Status::Expired).await?;
                            ("billing.subscription.expired", None)
                        }
                        None => continue,
                    };
                    let mut record = AuditRecord::new(
                        SOURCE,
                        action,
                        &Caller::system(),
                        &RequestContext::default(),
                        &s.user_id.to_string(),
                    )
                    .comment("subscription_id", s.id.to_string());
                    if let Some(amount) = amount {
                        record = record.comment("amount", money::text(amount));
                    }
                    record.write(conn).await?;
                }
                Ok(due.len())
            })
            .await?;
        total += handled;
        if (handled as i64) < BATCH {
            return Ok(total);
        }
    }
}

pub async fn run(pool: Pool, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        match run_once(&pool).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "subscriptions renewed or expired"),
            Err(error) => tracing::warn!(%error, "subscription renewal pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}
