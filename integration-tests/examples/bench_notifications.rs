//! Notification delivery speed against a real SMTP server (aiosmtpd,
//! `python/smtp_sink.py`), printing figures:
//!
//! 1. mails per second from ingest to accepted by the server, with the
//!    connection pool and with one new SMTP connection per mail, in the
//!    same run;
//! 2. the time from an accounts change being acknowledged (a group change
//!    with a template) to its mail accepted by the server, at a paced rate
//!    (default 200 mails/s), as p50/p90/p99/max.
//!
//! `cargo run --release -p steward-integration-tests --example bench_notifications
//!  [-- MAILS RATE SECONDS]` (defaults: 400 mails per throughput run,
//! 200 mails/s for 5 s).

#[path = "../tests/notifications/sink.rs"]
mod sink;

use std::time::{Duration, Instant, SystemTime};

use sink::{Sink, smtp_config};
use steward_integration_tests::{Options, TestApp};
use steward_proto::{accounts as apb, notifications as pb};

async fn spawn(pool: bool, port: u16) -> TestApp {
    let mut config = smtp_config(port);
    config.smtp.pool = pool;
    config.smtp.pool_size = 16;
    config.delivery.max_in_flight = 32;
    TestApp::spawn_with(Options {
        with_notifications: Some(config),
        ..Options::default()
    })
    .await
}

/// Ingest `n` mails in batches of 100, then waits until the server
/// accepted them; mails per second.
async fn throughput(app: &TestApp, sink: &Sink, n: usize, tag: &str) -> f64 {
    let before = sink.count();
    let start = Instant::now();
    let mut ingest = app.notification_ingest();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let notifications = chunk
            .iter()
            .map(|i| pb::Notification {
                event_id: uuid::Uuid::now_v7().to_string(),
                template_id: "user.status.activated".into(),
                recipients: vec![format!("{tag}-{i}@bench.test")],
                subject_user_id: format!("bench-{tag}"),
                source: "bench".into(),
                ..Default::default()
            })
            .collect();
        ingest
            .enqueue_notifications(pb::EnqueueNotificationsRequest { notifications })
            .await
            .expect("enqueue");
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while sink.count() < before + n {
        assert!(Instant::now() < deadline, "{tag}: mail did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mails: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(400);
    let rate: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let sink = Sink::start().await;

    // 1. Pooled vs one connection per mail.
    let pooled = spawn(true, sink.port).await;
    throughput(&pooled, &sink, 50, "warm-pooled").await;
    let pooled_rate = throughput(&pooled, &sink, mails, "pooled").await;
    pooled.stop().await;
    let single = spawn(false, sink.port).await;
    throughput(&single, &sink, 50, "warm-single").await;
    let single_rate = throughput(&single, &sink, mails, "single").await;
    single.stop().await;
    println!("ingest -> accepted by the SMTP server, {mails} mails, 32 sends in flight");
    println!("  pooled (16 connections)       {pooled_rate:>8.1} mails/s");
    println!("  one connection per mail       {single_rate:>8.1} mails/s");
    println!(
        "  pooled / per-mail             {:>8.1}x",
        pooled_rate / single_rate
    );

    // 2. End to end at a paced rate: accounts change acked -> mail accepted.
    let app = spawn(true, sink.port).await;
    let total = rate * seconds;
    let mut users = Vec::with_capacity(total);
    let mut pending = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    for i in 0..total {
        let admin = app.admin();
        pending.push(async move {
            let mut admin = admin;
            admin
                .create_user(apb::CreateUserRequest {
                    email: format!("e2e-{i}@bench.test"),
                    ..Default::default()
                })
                .await
                .expect("create user")
                .into_inner()
                .user
                .expect("user")
        });
        if pending.len() >= 16
            && let Some(u) = pending.next().await
        {
            users.push(u);
        }
    }
    while let Some(u) = pending.next().await {
        users.push(u);
    }
    let before = sink.count();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut acks = futures_util::stream::FuturesUnordered::new();
    for (i, user) in users.iter().enumerate() {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let mut admin = app.admin();
        let id = user.id.clone();
        let email = user.email.clone();
        acks.push(tokio::spawn(async move {
            // A retry (same request id) replays; the ack is the first success.
            let request = apb::BatchChangeGroupRequest {
                request_id: format!("e2e-{id}"),
                user_ids: vec![id],
                group: "billing".into(),
                notify: true,
                mail_template_id: "group.billing.welcome".into(),
            };
            let mut tries = 0;
            loop {
                match admin.batch_change_group(request.clone()).await {
                    Ok(_) => break,
                    Err(e) if e.code() == tonic::Code::Unavailable && tries < 10 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("change group: {e}"),
                }
            }
            (email, SystemTime::now(), tries)
        }));
    }
    let offered = start.elapsed();
    let mut acked = std::collections::HashMap::new();
    let mut retried = 0;
    while let Some(done) = acks.next().await {
        let (email, at, tries) = done.expect("task");
        retried += usize::from(tries > 0);
        acked.insert(email, at);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.count() < before + total {
        assert!(Instant::now() < deadline, "end-to-end mail did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies: Vec<Duration> = sink
        .messages()
        .into_iter()
        .filter_map(|m| {
            let at = acked.get(m.to.first()?)?;
            Some(m.received_at.duration_since(*at).unwrap_or(Duration::ZERO))
        })
        .collect();
    latencies.sort();
    assert_eq!(latencies.len(), total, "every change's mail arrived once");
    println!(
        "accounts change acknowledged -> mail accepted by the SMTP server, {total} group changes offered at {rate}/s (in {:.1} s)",
        offered.as_secs_f64()
    );
    println!("  changes retried after UNAVAILABLE: {retried}");
    for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)] {
        println!(
            "  {name:<4} {:>8.1} ms",
            percentile(&latencies, p).as_secs_f64() * 1000.0
        );
    }
    app.stop().await;
}
