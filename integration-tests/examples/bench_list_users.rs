//! ListUsers at scale: seeds N users (default 1,000,000) into a fresh test
//! database, then walks pages through the real gRPC API for each filter and
//! order the admin panel uses, printing latency percentiles per scenario.
//!
//!     cargo run --release -p steward-integration-tests --example bench_list_users -- 1000000

use std::time::{Duration, Instant};

use steward_integration_tests::{TestApp, exec, stats::percentile};
use steward_proto::{accounts as pb, common::PageRequest};

const PAGES: usize = 20;
const PAGE_SIZE: i32 = 50;

#[tokio::main]
async fn main() {
    let users: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let app = TestApp::spawn().await;

    let started = Instant::now();
    // The suffix index takes the bulk insert through its pending list (one
    // merge per 4 MB instead of ~20 entry insertions per row), then goes
    // back to what the migration set.
    exec(
        &app,
        &format!(
            "ALTER INDEX users_email_suffixes SET (fastupdate = on);
             INSERT INTO users (id, email, status, group_name, signup_at)
             SELECT md5(i::text)::uuid,
                    'user' || i || '@' || (ARRAY['corp.io','home.net','mail.org'])[1 + i % 3],
                    (ARRAY['ACTIVE','ACTIVE','ACTIVE','INACTIVE','SUSPENDED','DESTROYED'])[1 + i % 6],
                    (ARRAY['trial','billing','beta','post'])[1 + i % 4],
                    now() - make_interval(secs => i)
             FROM generate_series(1, {users}) AS i;
             ALTER INDEX users_email_suffixes SET (fastupdate = off);
             SELECT gin_clean_pending_list('users_email_suffixes');
             ANALYZE users;"
        ),
    )
    .await;
    println!("seeded {users} users in {:.1?}", started.elapsed());

    let probe_id = uuid::Uuid::from_slice(&md5_16(b"777")).unwrap().to_string();
    let scenarios: Vec<(&str, pb::ListUsersRequest)> = vec![
        ("all, newest first", pb::ListUsersRequest::default()),
        (
            "group=billing, newest first",
            pb::ListUsersRequest {
                group: "billing".into(),
                ..Default::default()
            },
        ),
        (
            "status=SUSPENDED, email asc",
            pb::ListUsersRequest {
                status: pb::UserStatus::Suspended as i32,
                order_by: pb::UserOrderBy::EmailAsc as i32,
                ..Default::default()
            },
        ),
        (
            "group=beta + status=ACTIVE, oldest first",
            pb::ListUsersRequest {
                group: "beta".into(),
                status: pb::UserStatus::Active as i32,
                order_by: pb::UserOrderBy::SignupTimeAsc as i32,
                ..Default::default()
            },
        ),
        (
            "email desc",
            pb::ListUsersRequest {
                order_by: pb::UserOrderBy::EmailDesc as i32,
                ..Default::default()
            },
        ),
        (
            "query email substring 'user4242'",
            pb::ListUsersRequest {
                query: "user4242".into(),
                ..Default::default()
            },
        ),
        (
            "query exact id",
            pb::ListUsersRequest {
                query: probe_id,
                ..Default::default()
            },
        ),
    ];

    let mut client = app.admin();
    // Transport floor: a call that does no database work.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let mut floor = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health");
        floor.push(t.elapsed());
    }
    floor.sort();
    println!(
        "health check p50 {:.2?} (transport floor)",
        percentile(&floor, 0.5)
    );
    println!(
        "{:<45} {:>6} {:>10} {:>10} {:>10}",
        "scenario", "pages", "p50", "p95", "max"
    );
    for (name, request) in scenarios {
        let mut timings = Vec::new();
        let mut token = String::new();
        for _ in 0..PAGES {
            let request = pb::ListUsersRequest {
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    page_token: token.clone(),
                }),
                ..request.clone()
            };
            let t = Instant::now();
            let response = client.list_users(request).await.expect("list").into_inner();
            timings.push(t.elapsed());
            token = response.page.unwrap_or_default().next_page_token;
            if token.is_empty() {
                break;
            }
        }
        timings.sort();
        println!(
            "{:<45} {:>6} {:>10.2?} {:>10.2?} {:>10.2?}",
            name,
            timings.len(),
            percentile(&timings, 0.5),
            percentile(&timings, 0.95),
            timings.last().unwrap()
        );
    }
    substring(&app, &mut client, users).await;
    app.stop().await;
}

/// Email substring over many different needles (each `user<n>`, ~111
/// matches at 1M users), first page each: through the API (the suffix
/// index), then at the SQL level the query before (LIKE answered by the
/// trigram index the email_substring migration dropped, rebuilt here) next
/// to the query now.
async fn substring(
    app: &TestApp,
    client: &mut steward_integration_tests::AccountsClient,
    users: u64,
) {
    use diesel_async::RunQueryDsl;

    const CALLS: usize = 200;
    let span = 9000.min(users as usize).max(1);
    let needle = |i: usize| format!("user{}", 1000 + (i * 7919) % span);
    let mut api = Vec::new();
    for i in 0..CALLS {
        let t = Instant::now();
        client
            .list_users(pb::ListUsersRequest {
                query: needle(i),
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    page_token: String::new(),
                }),
                ..Default::default()
            })
            .await
            .expect("list");
        api.push(t.elapsed());
    }
    api.sort();

    // The query now first: with the trigram index present too, the planner
    // would AND both indexes and pay for the trigram one.
    let mut conn = app.db.accounts().await;
    let now = sql_pages(&mut conn, CALLS, &needle, true).await;
    let started = Instant::now();
    diesel::sql_query(
        "CREATE INDEX users_email_trgm ON users USING gin (email public.gin_trgm_ops)",
    )
    .execute(&mut conn)
    .await
    .expect("trigram index");
    diesel::sql_query("ANALYZE users")
        .execute(&mut conn)
        .await
        .unwrap();
    let built = started.elapsed();
    let before = sql_pages(&mut conn, CALLS, &needle, false).await;
    println!(
        "\n== email substring, {CALLS} different needles, first page of {PAGE_SIZE} (baseline's trigram index rebuilt in {built:.1?})"
    );
    println!("{:<45} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
    for (name, t) in [
        ("gRPC ListUsers (suffix index)", &api),
        ("SQL before: LIKE via trigram GIN", &before),
        ("SQL now: suffix GIN prefix match + LIKE", &now),
    ] {
        println!(
            "{:<45} {:>10.2?} {:>10.2?} {:>10.2?}",
            name,
            percentile(t, 0.5),
            percentile(t, 0.99),
            t.last().unwrap()
        );
    }
}

/// PostgreSQL's md5(text)::uuid of the seed, to find one seeded id.
fn md5_16(input: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(input).into()
}

/// First pages of the substring query for each needle, at the SQL level:
/// the predicate the store writes now (`suffixes`) or the LIKE alone.
async fn sql_pages(
    conn: &mut diesel_async::AsyncPgConnection,
    calls: usize,
    needle: &dyn Fn(usize) -> String,
    suffixes: bool,
) -> Vec<Duration> {
    use diesel_async::RunQueryDsl;

    let mut times = Vec::new();
    for i in 0..calls {
        let n = needle(i);
        let query = if suffixes {
            format!(
                "SELECT id FROM users WHERE email_suffixes(email) @@ '''{n}'':*'::tsquery
                   AND email LIKE '%{n}%' ORDER BY signup_at DESC, id DESC LIMIT {PAGE_SIZE}"
            )
        } else {
            format!(
                "SELECT id FROM users WHERE email LIKE '%{n}%'
                 ORDER BY signup_at DESC, id DESC LIMIT {PAGE_SIZE}"
            )
        };
        let t = Instant::now();
        diesel::sql_query(query).execute(conn).await.expect("query");
        times.push(t.elapsed());
    }
    times.sort();
    times
}
