//! Fault benchmark (not a test): what the audit trail keeps through faults.
//!
//!     cargo run --release -p steward-integration-tests --example bench_faults
//!
//! 1. An audit outage of two hours, simulated with a fast clock: the relay's
//!    backoff runs 1000x faster (1 ms doubling to 60 ms instead of 1 s to
//!    60 s), so 7.2 s of wall time are 7,200 retry-clock seconds, more than
//!    the ~42 minutes after which the old relay parked every row for good.
//!    Printed: events acknowledged, delivered, duplicated, parked.
//! 2. Refusals through the gateway during an audit outage of ten minutes
//!    (the same fast clock for the gateway's retries) with a gateway restart
//!    in the middle: refusals made, recorded (one by one or counted in a
//!    summary), duplicated.
//! 3. The tampering cases of issue 10, each on a fresh database: detected by
//!    `VerifyChain`, by the offline check against a kept checkpoint, or not.

use std::time::{Duration, Instant};

use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::RunQueryDsl;
use steward_integration_tests::{Options, TempDir, TestApp, tamper};
use steward_kit::outbox::RelayConfig;
use steward_proto::accounts as pb;

const SPEEDUP: u32 = 1000;
const OUTAGE: Duration = Duration::from_secs(2 * 3600);
const USERS: usize = 400;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(app: &TestApp, schema: &str, sql: &str) -> i64 {
    let mut conn = steward_kit::db::connect(&app.db.url, schema)
        .await
        .expect("connect");
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .expect("count")
        .n
}

async fn audit_outage() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let audit_addr = listener.local_addr().unwrap();
    drop(listener);
    let mut app = TestApp::spawn_with(Options {
        audit_listen: Some(audit_addr),
        relay: Some(RelayConfig {
            min_backoff: Duration::from_secs(1) / SPEEDUP,
            max_backoff: Duration::from_secs(60) / SPEEDUP,
            poll_interval: Duration::from_secs(5) / SPEEDUP * 100,
            ..RelayConfig::default()
        }),
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let mut acknowledged = 0;
    for i in 0..USERS {
        let created = app
            .admin()
            .create_user(pb::CreateUserRequest {
                email: format!("outage-{i}@faults.io"),
                ..Default::default()
            })
            .await;
        if created.is_ok() {
            acknowledged += 1;
        }
    }
    let outage = OUTAGE / SPEEDUP;
    tokio::time::sleep(outage.saturating_sub(started.elapsed())).await;
    let parked_during = count(
        &app,
        steward_accounts::SCHEMA,
        "SELECT count(*) AS n FROM outbox WHERE parked_at IS NOT NULL",
    )
    .await;
    app.start_audit(audit_addr).await;
    let drained = Instant::now();
    while count(
        &app,
        steward_accounts::SCHEMA,
        "SELECT count(*) AS n FROM outbox WHERE destination = 'audit'",
    )
    .await
        > 0
        && drained.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = count(
        &app,
        steward_audit::SCHEMA,
        "SELECT count(DISTINCT event_id) AS n FROM events WHERE action = 'user.created'",
    )
    .await;
    let stored = count(
        &app,
        steward_audit::SCHEMA,
        "SELECT count(*) AS n FROM events WHERE action = 'user.created'",
    )
    .await;
    let parked = count(
        &app,
        steward_accounts::SCHEMA,
        "SELECT count(*) AS n FROM outbox WHERE parked_at IS NOT NULL",
    )
    .await;
    println!(
        "audit outage of {} min (x{SPEEDUP} clock, {:.1} s wall): acknowledged {acknowledged}, delivered {delivered}, duplicated {}, parked {parked} (during the outage {parked_during}); drained {:.2} s after audit came back",
        OUTAGE.as_secs() / 60,
        outage.as_secs_f64(),
        stored - delivered,
        drained.elapsed().as_secs_f64(),
    );
    app.stop().await;
}

const REFUSALS: usize = 300;

async fn refusals_through_an_outage_and_a_restart() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let audit_addr = listener.local_addr().unwrap();
    drop(listener);
    let spool = TempDir::new("steward-bench-spool");
    let mut gateway = steward_gateway::GatewayConfig {
        refusal_spool_dir: Some(spool.0.clone()),
        refusal_retry_max_backoff: Duration::from_secs(30) / SPEEDUP,
        ..Default::default()
    };
    gateway.rate_limits.per_ip_burst = 100_000;
    gateway.rate_limits.per_ip_per_second = 100_000;
    let mut app = TestApp::spawn_with(Options {
        audit_listen: Some(audit_addr),
        gateway: Some(gateway),
        ..Options::default()
    })
    .await;
    let refuse = async |app: &TestApp| {
        app.gw_accounts(None)
            .list_users(pb::ListUsersRequest::default())
            .await
            .expect_err("no token: refused at the edge");
    };
    const REFUSAL_OUTAGE: Duration = Duration::from_secs(600);
    let outage = REFUSAL_OUTAGE / SPEEDUP;
    let started = Instant::now();
    for _ in 0..REFUSALS / 2 {
        refuse(&app).await;
    }
    app.restart_gateway(|_| {}).await;
    for _ in 0..REFUSALS / 2 {
        refuse(&app).await;
    }
    tokio::time::sleep(outage.saturating_sub(started.elapsed())).await;
    app.start_audit(audit_addr).await;
    // One by one up to the flood sample, then counted in summaries.
    let recorded = async |app: &TestApp| -> (i64, i64) {
        let single = count(
            app,
            steward_audit::SCHEMA,
            "SELECT count(*) AS n FROM events WHERE action = 'gateway.request.refused' AND NOT comments ? 'summary'",
        )
        .await;
        let summarised = count(
            app,
            steward_audit::SCHEMA,
            "SELECT COALESCE(sum((comments->>'count')::bigint), 0)::bigint AS n FROM events
             WHERE action = 'gateway.request.refused' AND comments ? 'summary'",
        )
        .await;
        (single, summarised)
    };
    let waited = Instant::now();
    let (mut single, mut summarised) = recorded(&app).await;
    while (single + summarised) < REFUSALS as i64 && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (single, summarised) = recorded(&app).await;
    }
    let distinct = count(
        &app,
        steward_audit::SCHEMA,
        "SELECT count(DISTINCT event_id) AS n FROM events WHERE action = 'gateway.request.refused'",
    )
    .await;
    let stored = count(
        &app,
        steward_audit::SCHEMA,
        "SELECT count(*) AS n FROM events WHERE action = 'gateway.request.refused'",
    )
    .await;
    println!(
        "refusals during a {} min audit outage with a gateway restart: made {REFUSALS}, recorded {} ({single} one by one, {summarised} counted in summaries), duplicated {}",
        REFUSAL_OUTAGE.as_secs() / 60,
        single + summarised,
        stored - distinct,
    );
    app.stop().await;
}

async fn tampering() {
    let cases = tamper::all_cases().await;
    for c in &cases {
        println!(
            "  tamper: {:<55} VerifyChain {:<8} offline check {}",
            c.case,
            if c.by_service { "detects" } else { "misses" },
            if c.offline { "detects" } else { "misses" },
        );
    }
    println!(
        "tamper cases detected: {} of {}",
        cases.iter().filter(|c| c.detected()).count(),
        cases.len()
    );
}

#[tokio::main]
async fn main() {
    audit_outage().await;
    refusals_through_an_outage_and_a_restart().await;
    tampering().await;
}
