//! Gateway benchmark (not a test): the same unary call (GetUser, by a
//! USER_ADMIN token) made directly to accounts and through the gateway with
//! authentication, policy, rate limits and metrics on; requests/s and
//! p50/p99 latency side by side, and their ratio. A third side, a bare
//! proxy (the gateway's server and backend connections forwarding every
//! call with nothing else), shows what the HTTP/2 hop itself costs: the
//! floor under the gateway's figures.
//!
//!     cargo run --release -p steward-integration-tests --example bench_gateway [calls] [clients] [rounds]
//!
//! The three sides alternate over `rounds` rounds (default 5) of `calls`
//! calls each, so drift of the machine (on this shared 2-core host the
//! direct p50 moved 0.34-0.49 ms between runs minutes apart) falls on
//! both: rates are the median round's, latencies pooled over the rounds.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use steward_gateway::{GatewayConfig, backends::Backend};
use steward_integration_tests::{ADMIN_ID, AccountsClient, Options, TestApp, stats::median};
use steward_kit::auth::Role;
use steward_proto::accounts as pb;

/// One side's rounds: the rate of each, every call's latency.
#[derive(Default)]
struct Side {
    rates: Vec<f64>,
    latencies: Vec<Duration>,
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

impl Side {
    fn figures(mut self) -> Figures {
        self.latencies.sort();
        let at = |q: f64| {
            self.latencies
                [((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1)]
        };
        Figures {
            rate: median(&mut self.rates),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

async fn warm_up(make: &impl Fn() -> AccountsClient, user_id: &str) {
    for _ in 0..50 {
        make()
            .get_user(pb::GetUserRequest {
                user_id: user_id.to_owned(),
            })
            .await
            .expect("warm-up call");
    }
}

/// A proxy forwarding every call to `backend_url` as it came: the
/// gateway's server stack and backend connections, no checks.
async fn bare_proxy(backend_url: &str) -> SocketAddr {
    let backend = Arc::new(Backend::new(backend_url, 2).expect("backend URL"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let forward =
        tower::service_fn(move |req: http::Request<tonic::body::Body>| {
            let backend = backend.clone();
            async move {
                Ok::<_, Infallible>(backend.call(req).await.unwrap_or_else(|error| {
                    tonic::Status::unavailable(error.to_string()).into_http()
                }))
            }
        });
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(true)
            .serve_with_incoming(forward, incoming),
    );
    addr
}

/// One round of `calls` calls by `clients` clients, added to `side`.
async fn round(
    side: &mut Side,
    make: &impl Fn() -> AccountsClient,
    user_id: &str,
    calls: usize,
    clients: usize,
) {
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
    for t in tasks {
        side.latencies.extend(t.await.unwrap());
    }
    side.rates
        .push(calls as f64 / started.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
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

    println!(
        "GetUser, {rounds} rounds of {calls} calls per side, {clients} concurrent clients, USER_ADMIN token"
    );
    let bare = tonic::transport::Channel::from_shared(format!(
        "http://{}",
        bare_proxy(&app.endpoint).await
    ))
    .unwrap()
    .connect_lazy();
    let direct_client = || app.client(Some(token.clone()));
    let bare_client = || {
        pb::accounts_service_client::AccountsServiceClient::with_interceptor(
            bare.clone(),
            steward_integration_tests::Bearer::new(Some(token.clone())),
        )
    };
    let gateway_client = || app.gw_accounts(Some(token.clone()));
    warm_up(&direct_client, &user.id).await;
    warm_up(&bare_client, &user.id).await;
    warm_up(&gateway_client, &user.id).await;
    let (mut direct, mut floor, mut through) = (Side::default(), Side::default(), Side::default());
    for _ in 0..rounds {
        round(&mut direct, &direct_client, &user.id, calls, clients).await;
        round(&mut floor, &bare_client, &user.id, calls, clients).await;
        round(&mut through, &gateway_client, &user.id, calls, clients).await;
    }
    let (direct, floor, through) = (direct.figures(), floor.figures(), through.figures());
    for (name, f) in [
        ("direct to accounts", &direct),
        ("through a bare proxy", &floor),
        ("through the gateway", &through),
    ] {
        println!(
            "{name:<22} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            f.rate,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3
        );
    }
    for (name, f) in [
        ("bare proxy / direct", &floor),
        ("gateway / direct", &through),
    ] {
        println!(
            "{name:<22} throughput {:.2}x   p50 {:.2}x (+{:.0} µs)   p99 {:.2}x",
            f.rate / direct.rate,
            f.p50.as_secs_f64() / direct.p50.as_secs_f64(),
            (f.p50.as_secs_f64() - direct.p50.as_secs_f64()) * 1e6,
            f.p99.as_secs_f64() / direct.p99.as_secs_f64()
        );
    }
    app.stop().await;
}
