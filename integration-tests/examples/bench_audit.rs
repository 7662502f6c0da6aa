//! Audit benchmarks (not tests): ingest throughput batched and unary next
//! to raw COPY of the same rows; ListEvents p50/p99 over N events; activity
//! history over 30 days; export rows/s and peak memory.
//!
//!     cargo run --release -p steward-integration-tests --example bench_audit -- 10000000 [rounds]
//!
//! The first argument is how many events to seed for the query figures
//! (default 10,000,000; seeded with SQL, not through ingest, to save time);
//! 0 stops after the ingest figures. The second is how many rounds of the
//! ingest figures to run (default 3): each side next to its baseline in the
//! same round, the machine's drift between rounds shown, medians printed.

use std::{collections::HashMap, sync::Arc, time::Instant};

use chrono::{Duration, Utc};
use futures_util::{SinkExt, StreamExt};
use steward_integration_tests::{Options, TestApp, exec, stats::median};
use steward_proto::{audit as pb, common};
use tokio::sync::Mutex;

fn event(i: usize, now: chrono::DateTime<Utc>) -> pb::AuditEvent {
    let at = now - Duration::milliseconds(i as i64);
    pb::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_micros() as i32 * 1000,
        }),
        product: "common".into(),
        action: ["user.signed_in", "user.signed_out", "user.profile.updated"][i % 3].into(),
        category: pb::Category::Public as i32,
        actor_user_id: format!("user-{}", i % 5000),
        subject_user_id: format!("user-{}", i % 5000),
        client_ip: "203.0.113.7".into(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) bench".into(),
        result: common::Result::Success as i32,
        comments: HashMap::from([("method".to_string(), "password".to_string())]),
        request_id: format!("req-{i}"),
        source: "bench".into(),
        ..Default::default()
    }
}

/// Builds the i-th call's filter of a scenario.
type FilterFor = Box<dyn Fn(usize) -> pb::EventFilter>;

fn pct(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn ingest_rate(app: &TestApp, total: usize, per_call: usize, clients: usize) -> f64 {
    let now = Utc::now();
    let batches: Vec<Vec<pb::AuditEvent>> = (0..total)
        .map(|i| event(i, now))
        .collect::<Vec<_>>()
        .chunks(per_call)
        .map(|c| c.to_vec())
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let queue = queue.clone();
        let mut client = app.ingest_own_connection();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().await.pop() else {
                    break;
                };
                client
                    .ingest_events(pb::IngestEventsRequest { events: batch })
                    .await
                    .expect("ingest");
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// A plain tokio-postgres connection in audit's schema (diesel cannot COPY).
async fn audit_connection(app: &TestApp) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("SET search_path TO audit, public")
        .await
        .unwrap();
    client
}

/// COPY of `total` rows shaped like the ingested ones, into the same table.
async fn copy_rate(app: &TestApp, total: usize) -> f64 {
    let client = audit_connection(app).await;
    let now = Utc::now();
    let mut text = String::with_capacity(total * 400);
    for i in 0..total {
        let at = (now - Duration::milliseconds(i as i64)).format("%Y-%m-%d %H:%M:%S%.6f+00");
        let user = format!("user-{}", i % 5000);
        let hash = format!("\\\\x{}", "ab".repeat(32));
        text.push_str(&format!(
            "{seq}\t{id}\t{at}\tcommon\tuser.signed_in\t1\t{user}\t{user}\t{{\"method\": \"password\"}}\t203.0.113.7\tMozilla/5.0 (X11; Linux x86_64) bench\t1\treq-{i}\tbench\t{hash}\t{hash}\t{hash}\n",
            seq = 1_000_000_000 + i,
            id = uuid::Uuid::now_v7(),
        ));
    }
    let started = Instant::now();
    let sink = client
        .copy_in("COPY events (seq, event_id, occurred_at, product, action, category, actor_user_id, subject_user_id, comments, client_ip, user_agent, result, request_id, source, pii_digest, prev_hash, hash) FROM STDIN")
        .await
        .expect("copy");
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(text))
        .await
        .expect("copy data");
    sink.as_mut().finish().await.expect("copy finish");
    let rate = total as f64 / started.elapsed().as_secs_f64();
    client
        .batch_execute("DELETE FROM events WHERE seq >= 1000000000")
        .await
        .unwrap();
    rate
}

/// The unary baseline: `clients` connections, each inserting one row per
/// transaction (the same columns as the COPY), `total` rows in all.
async fn insert_per_transaction_rate(app: &TestApp, total: usize, clients: usize) -> f64 {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(audit_connection(app).await);
    }
    let now = Utc::now();
    let hash = vec![0xabu8; 32];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in conns.into_iter().enumerate() {
        let hash = hash.clone();
        tasks.push(tokio::spawn(async move {
            let insert = client
                .prepare(
                    "INSERT INTO events (seq, event_id, occurred_at, product, action, category, \
                     actor_user_id, subject_user_id, comments, client_ip, user_agent, result, \
                     request_id, source, pii_digest, prev_hash, hash) \
                     VALUES ($1, $2::text::uuid, $3, 'common', 'user.signed_in', 1, $4, $4, \
                     '{\"method\": \"password\"}', '203.0.113.7', \
                     'Mozilla/5.0 (X11; Linux x86_64) bench', 1, $5, 'bench', $6, $6, $6)",
                )
                .await
                .expect("prepare");
            for i in (c..total).step_by(clients) {
                let at: std::time::SystemTime = (now - Duration::milliseconds(i as i64)).into();
                let user = format!("user-{}", i % 5000);
                client
                    .execute(
                        &insert,
                        &[
                            &(1_500_000_000i64 + i as i64),
                            &uuid::Uuid::now_v7().to_string(),
                            &at,
                            &user,
                            &format!("req-{i}"),
                            &hash,
                        ],
                    )
                    .await
                    .expect("insert");
            }
            client
        }));
    }
    let mut last = None;
    for t in tasks {
        last = Some(t.await.expect("client"));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    last.expect("a client")
        .batch_execute("DELETE FROM events WHERE seq >= 1500000000 AND seq < 2000000000")
        .await
        .unwrap();
    rate
}

async fn timed<F, Fut>(n: usize, mut call: F) -> (std::time::Duration, std::time::Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        call(i).await;
        times.push(t.elapsed());
    }
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99))
}

#[tokio::main]
async fn main() {
    let seeded: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        ..Options::default()
    })
    .await;

    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!("== ingest (events through the gRPC API, committed, chained), {rounds} rounds");
    println!("   each round: 100,000 events batched next to raw COPY of 100,000 such rows, then");
    println!("   10,000 unary next to one INSERT per transaction; ratios per round, then medians");
    let (mut batched_ratio, mut unary_ratio, mut unary_copy) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let batched = ingest_rate(&app, 100_000, 500, 8).await;
        let copy = copy_rate(&app, 100_000).await;
        let unary = ingest_rate(&app, 10_000, 1, 32).await;
        let single = insert_per_transaction_rate(&app, 10_000, 32).await;
        println!(
            "round {round}: batched 500/call, 8 clients {batched:>7.0} ev/s | raw COPY {copy:>7.0} rows/s | {:.2}x",
            batched / copy
        );
        println!(
            "         unary 1/call, 32 clients {unary:>7.0} ev/s | one INSERT per transaction, 32 clients {single:>6.0} rows/s | {:.2}x",
            unary / single
        );
        batched_ratio.push(batched / copy);
        unary_ratio.push(unary / single);
        unary_copy.push(unary / copy);
    }
    println!(
        "median ratio batched/COPY {:.2}, unary/one-INSERT-per-transaction {:.2}, unary/COPY {:.3}",
        median(&mut batched_ratio),
        median(&mut unary_ratio),
        median(&mut unary_copy)
    );
    if seeded == 0 {
        // `-- 0`: the ingest figures only.
        app.stop().await;
        return;
    }

    println!("\n== seeding {seeded} events over 90 days (SQL), rollup, ANALYZE");
    let started = Instant::now();
    exec(
        &app,
        &format!(
            "SET search_path TO audit, public;
             DO $$ DECLARE m date; BEGIN
               FOR m IN SELECT generate_series(date_trunc('month', now() - interval '100 days'),
                                               date_trunc('month', now()), interval '1 month')::date LOOP
                 EXECUTE format('CREATE TABLE IF NOT EXISTS events_y%sm%s PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                                to_char(m, 'YYYY'), to_char(m, 'MM'), m, (m + interval '1 month')::date);
               END LOOP;
             END $$;
             INSERT INTO events (seq, event_id, occurred_at, product, action, category,
                 actor_user_id, subject_user_id, modified_user_id, impersonator_user_id,
                 impersonation_session_id, token_id, client_ip, result, pii_digest, prev_hash, hash)
             SELECT 2000000000 + i, gen_random_uuid(),
                 now() - make_interval(secs => i * (90 * 86400.0 / {seeded})),
                 CASE WHEN i % 1000 = 0 THEN 'billing' ELSE 'common' END,
                 (ARRAY['user.signed_in','user.signed_out','user.profile.updated','api_token.created','user.roles.updated'])[1 + i % 5],
                 1 + (i % 3)::int2,
                 'user-' || (i % 100000), 'user-' || (i % 100000),
                 CASE WHEN i % 10 = 0 THEN 'user-' || (i % 977) ELSE '' END,
                 CASE WHEN i % 50 = 0 THEN 'admin-' || (i % 20) ELSE '' END,
                 CASE WHEN i % 50 = 0 THEN 'sess-' || (i % 2000) ELSE '' END,
                 CASE WHEN i % 40 = 0 THEN 'tok-' || (i % 500) ELSE '' END,
                 '198.51.100.' || (i % 250), 1 + (i % 20 = 0)::int::int2,
                 '\\x00', '\\x00', '\\x00'
             FROM generate_series(1, {seeded}) AS i;
             INSERT INTO activity_daily (subject_user_id, day, action, count)
             SELECT subject_user_id, (occurred_at AT TIME ZONE 'UTC')::date, action, count(*)
             FROM events WHERE seq >= 2000000000 GROUP BY 1, 2, 3
             ON CONFLICT (day, subject_user_id, action) DO UPDATE SET count = activity_daily.count + EXCLUDED.count;
             -- The seed bypasses ingest, which keeps the ranked window: rebuild it.
             SELECT activity_window_rebuild((now() AT TIME ZONE 'UTC')::date);
             ANALYZE events; ANALYZE activity_daily; ANALYZE activity_window;"
        ),
    )
    .await;
    println!("seeded in {:.1?}", started.elapsed());

    println!("\n== ListEvents, page of 50, default 30-day window (200 calls each)");
    let mut audit = app.audit();
    let scenarios: Vec<(&str, FilterFor)> = vec![
        (
            "subject user (user history)",
            Box::new(|i| pb::EventFilter {
                subject_user_id: format!("user-{}", i * 37 % 100000),
                ..Default::default()
            }),
        ),
        (
            "actor",
            Box::new(|i| pb::EventFilter {
                actor_user_id: format!("user-{}", i * 53 % 100000),
                ..Default::default()
            }),
        ),
        (
            "action",
            Box::new(|i| pb::EventFilter {
                actions: vec![["user.signed_in", "api_token.created"][i % 2].into()],
                ..Default::default()
            }),
        ),
        (
            "impersonator",
            Box::new(|i| pb::EventFilter {
                impersonator_user_id: format!("admin-{}", i % 20),
                ..Default::default()
            }),
        ),
        (
            "token id",
            Box::new(|i| pb::EventFilter {
                token_id: format!("tok-{}", i % 500),
                ..Default::default()
            }),
        ),
        (
            "product (1 in 1000 events)",
            Box::new(|_| pb::EventFilter {
                product: "billing".into(),
                ..Default::default()
            }),
        ),
        (
            "client ip",
            Box::new(|i| pb::EventFilter {
                client_ip: format!("198.51.100.{}", i % 250),
                ..Default::default()
            }),
        ),
        (
            "no filter (newest)",
            Box::new(|_| pb::EventFilter::default()),
        ),
    ];
    for (name, filter) in &scenarios {
        let (p50, p99) = timed(200, |i| {
            let request = pb::ListEventsRequest {
                filter: Some(filter(i)),
                page: None,
            };
            let mut audit = audit.clone();
            async move {
                audit.list_events(request).await.expect("list");
            }
        })
        .await;
        println!("{name:<30} p50 {p50:>9.2?}  p99 {p99:>9.2?}");
    }

    println!("\n== GetActivityHistory, all users, first page of 50 (50 calls)");
    let today = Utc::now().date_naive();
    for (name, days, ago, order) in [
        ("30 days, by user id", 30, 0, pb::ActivityOrder::UserId),
        ("90 days, by user id", 90, 0, pb::ActivityOrder::UserId),
        (
            "30 days, most active first",
            30,
            0,
            pb::ActivityOrder::ActionsDesc,
        ),
        // The same span ending yesterday is not the ranked window: the
        // aggregation every most-active query did before, as the baseline.
        (
            "30 days to yesterday, most active",
            30,
            1,
            pb::ActivityOrder::ActionsDesc,
        ),
    ] {
        let end = today - Duration::days(ago);
        let start = end - Duration::days(days);
        let (p50, p99) = timed(50, |_| {
            let mut audit = audit.clone();
            async move {
                audit
                    .get_activity_history(pb::GetActivityHistoryRequest {
                        start_date: start.to_string(),
                        end_date: end.to_string(),
                        user_ids: vec![],
                        page: None,
                        order_by: order as i32,
                    })
                    .await
                    .expect("history");
            }
        })
        .await;
        println!("{name:<30} p50 {p50:>9.2?}  p99 {p99:>9.2?}");
    }

    println!("\n== ExportEvents");
    // About a million rows: the newest slice of the seeded range.
    let window = Duration::seconds(
        ((90.0 * 86400.0 * 1_000_000.0 / seeded.max(1) as f64) as i64).min(89 * 86400),
    );
    for format in [pb::ExportFormat::Csv, pb::ExportFormat::Xlsx] {
        let rss_before = current_rss_kib();
        let started = Instant::now();
        let mut stream = audit
            .export_events(pb::ExportEventsRequest {
                filter: Some(pb::EventFilter {
                    start_time: Some(prost_types::Timestamp {
                        seconds: (Utc::now() - window).timestamp(),
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                format: format as i32,
            })
            .await
            .expect("export")
            .into_inner();
        let mut bytes = 0usize;
        while let Some(chunk) = stream.next().await {
            bytes += chunk.expect("chunk").chunk.len();
        }
        let elapsed = started.elapsed();
        let rows = app
            .audit()
            .list_events(pb::ListEventsRequest {
                filter: Some(pb::EventFilter {
                    actions: vec!["audit.events.exported".into()],
                    ..Default::default()
                }),
                page: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events[0]
            .event
            .as_ref()
            .unwrap()
            .comments["rows"]
            .parse::<f64>()
            .unwrap();
        println!(
            "{:<5} {rows:>9} rows {:>8.1} MB in {elapsed:>8.2?}: {:>8.0} rows/s; process RSS before {} MiB, peak so far {} MiB",
            format!("{format:?}"),
            bytes as f64 / 1e6,
            rows / elapsed.as_secs_f64(),
            rss_before / 1024,
            peak_rss_kib() / 1024,
        );
    }
    app.stop().await;
}
