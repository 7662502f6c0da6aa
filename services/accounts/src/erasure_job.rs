//! The background job that erases destroyed accounts once the configured
//! delay has passed (when automatic erasure is enabled). Safe to run in
//! every replica: rows are taken with SKIP LOCKED.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use steward_kit::{RequestContext, auth::Caller, db::Pool, outbox::AuditRecord};
use tokio::sync::watch;

use crate::{
    commands,
    error::Error,
    grpc::SOURCE,
    store::{settings, users},
};

/// Users erased per transaction.
const BATCH: i64 = 100;

/// Runs one pass; returns how many accounts were erased.
pub async fn run_once(conn: &mut AsyncPgConnection) -> Result<usize, Error> {
    let (current, _) = settings::get(conn).await?;
    if !current.auto_erase_enabled {
        return Ok(0);
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::days(current.auto_erase_delay_days.into());
    let mut total = 0;
    loop {
        let erased = conn
            .transaction::<_, Error, _>(async |conn| {
                let (current, platform_salt) = settings::get(conn).await?;
                let due = users::lock_due_for_erasure(conn, cutoff, BATCH).await?;
                let system = Caller::system();
                for user in &due {
                    let record = AuditRecord::new(
                        SOURCE,
                        "user.personal_data.deleted",
                        &system,
                        &RequestContext::default(),
                        "",
                    )
                    .comment("trigger", "automatic erasure")
                    .comment("delay_days", current.auto_erase_delay_days.to_string());
                    commands::erase_personal_data(
                        conn,
                        user,
                        current.erasure_mode,
                        &platform_salt,
                        record,
                    )
                    .await?;
                }
                Ok(due.len())
            })
            .await?;
        total += erased;
        if (erased as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Runs a pass every `interval` until `shutdown` turns true.
pub async fn run(pool: Pool, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        let pass = async {
            let mut conn = pool.get().await?;
            run_once(&mut conn).await
        };
        match pass.await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "erased personal data of destroyed accounts"),
            Err(error) => tracing::warn!(%error, "erasure job pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}
