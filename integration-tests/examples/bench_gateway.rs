//! Gateway benchmark (not a test): the same unary call (GetUser, by a
//! USER_ADMIN token) made directly to accounts and through the gateway with
//! authentication, policy, rate limits and metrics on; requests/s and
//! p50/p99 latency side by side, and their ratio.
//!
//!     cargo run --release -p steward-integration-tests --example bench_gateway [calls] [clients]

use std::time::{Duration, Instant};

use steward_gateway::GatewayConfig;
use steward_integration_tests::{ADMIN_ID, AccountsClient, Options, TestApp};
use steward_kit::auth::Role;
use steward_proto::accounts as pb;

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(
    make: impl Fn() -> AccountsClient,
    user_id: &str,
    calls: usize,
    clients: usize,
) -> Figures {
    // Warm up connections and caches.
    for _ in 0..50 {
        make()
            .get_user(pb::GetUserRequest {
                user_id: user_id.to_owned(),
            })
            .await
            .expect("warm-up call");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = make();
        let user_id = user_id.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in (c..calls).step_by(clients) {
                let t = Instant::now();
                client
                    .get_user(pb::GetUserRequest {
                        user_id: user_id.clone(),
                    })
                    .await
                    .expect("get user");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        rate: calls as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let mut gateway = GatewayConfig::default();
    // Measure the proxy, not the limiter: one principal makes every call.
    gateway.rate_limits.per_ip_per_second = 1_000_000;
    gateway.rate_limits.per_ip_burst = 1_000_000;
    gateway.rate_limits.per_principal_per_second = 1_000_000;
    gateway.rate_limits.per_principal_burst = 1_000_000;
    let app = TestApp::spawn_with(Options {
        gateway: Some(gateway),
        ..Options::default()
    })
    .await;
    let user = app.create_user("bench@example.com").await;
    let token = app.token(ADMIN_ID, &[Role::UserAdmin]);

    println!("GetUser, {calls} calls, {clients} concurrent clients, USER_ADMIN token");
    let direct = run(|| app.client(Some(token.clone())), &user.id, calls, clients).await;
    let through = run(
        || app.gw_accounts(Some(token.clone())),
        &user.id,
        calls,
        clients,
    )
    .await;
    for (name, f) in [
        ("direct to accounts", &direct),
        ("through the gateway", &through),
    ] {
        println!(
            "{name:<22} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            f.rate,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "gateway / direct       throughput {:.2}x   p50 {:.2}x   p99 {:.2}x",
        through.rate / direct.rate,
        through.p50.as_secs_f64() / direct.p50.as_secs_f64(),
        through.p99.as_secs_f64() / direct.p99.as_secs_f64()
    );
    app.stop().await;
}
