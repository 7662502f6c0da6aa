//! Notification delivery speed against a real SMTP server, printing
//! figures. The server is Postfix's `smtp-sink` (C, from Debian's postfix
//! package) when it is installed, else aiosmtpd (`python/smtp_sink.py`),
//! which decodes and stores each message in Python and caps both sides of
//! the comparison at about 200 mails/s on this machine. `BENCH_SINK=aiosmtpd`
//! forces the latter.
//!
//! 1. mails per second from ingest to accepted by the server, with kept
//!    connections and with one new SMTP connection per mail, in alternating
//!    rounds of the same run, twice: on plain SMTP, and over TLS with AUTH as
//!    a submission relay requires them. The latter is TLS from the first byte
//!    (port 465 style) by stunnel (Debian's stunnel4) in front of smtp-sink,
//!    with a certificate from a private CA made for the run, trusted through
//!    `notifications.smtp.ca_file`; without stunnel, aiosmtpd with the same
//!    certificate and AUTH. Not STARTTLS: stunnel's SMTP mode waits 200 ms on
//!    each new connection to see whether the client starts TLS at once, a
//!    cost no relay has; and STARTTLS costs a new connection two more
//!    exchanges than this, so this side is the one less kind to the pool;
//! 2. the time from an accounts change being acknowledged (a group change
//!    with a template) to its mail accepted by the server, at a paced rate
//!    (default 200 mails/s), as p50/p90/p99/max.
//!
//! `cargo run --release -p steward-integration-tests --example bench_notifications
//!  [-- MAILS RATE SECONDS ROUNDS]` (defaults: 400 mails per throughput run,
//! 200 mails/s for 5 s, 3 rounds).

#[path = "../tests/notifications/sink.rs"]
mod sink;

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use sink::{Security, Sink, TestPki, smtp_config};
use steward_integration_tests::{
    Options, TestApp,
    stats::{median, percentile},
};
use steward_proto::{accounts as apb, notifications as pb};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The relay credentials of the STARTTLS side (smtp-sink takes any; the
/// aiosmtpd fallback requires these).
const LOGIN: (&str, &str) = ("bench", "bench-secret");

async fn spawn(pool: bool, port: u16, tls: Option<&TestPki>) -> TestApp {
    let mut config = smtp_config(port);
    if let Some(pki) = tls {
        config.smtp.tls = steward::config::TlsMode::Tls;
        config.smtp.ca_file = Some(pki.ca_file.clone());
        config.smtp.username = Some(LOGIN.0.into());
        config.smtp.password = Some(LOGIN.1.to_owned().into());
    }
    config.smtp.pool = pool;
    config.smtp.pool_size = knob("BENCH_POOL", 16) as u32;
    config.delivery.max_in_flight = knob("BENCH_IN_FLIGHT", 32);
    TestApp::spawn_with(Options {
        with_notifications: Some(config),
        ..Options::default()
    })
    .await
}

/// Ingest `n` mails in batches of 100, then waits until the server
/// accepted them; mails per second.
async fn throughput(app: &TestApp, sink: &Server, n: usize, tag: &str) -> f64 {
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

/// Postfix's smtp-sink, dumping each message to a file of its own (whose
/// modification time is when the server took the final ".").
struct PostfixSink {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

impl PostfixSink {
    const BINARY: &str = "/usr/sbin/smtp-sink";

    async fn start() -> Self {
        let port = sink::free_port();
        let dir = sink::temp_dir("steward-smtp-sink");
        let mut command = tokio::process::Command::new(Self::BINARY);
        // As root it must drop privileges, so its dump folder is open to all.
        if nix_is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .expect("open the dump folder");
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg("-d")
            .arg(dir.join("%H%M%S."))
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .kill_on_drop(true)
            .spawn()
            .expect("start smtp-sink");
        listening(port, "smtp-sink").await;
        Self { child, port, dir }
    }

    fn count(&self) -> usize {
        std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0)
    }

    /// (recipient, accepted at) of every message.
    fn received(&self) -> Vec<(String, SystemTime)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let at = e.metadata().ok()?.modified().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                let to = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Rcpt-Args: <"))?
                    .split('>')
                    .next()?
                    .to_owned();
                Some((to, at))
            })
            .collect()
    }
}

/// stunnel in front of smtp-sink: TLS from the first byte, the session's
/// plaintext passed on to smtp-sink (a new connection of its own per
/// client connection). Both its sockets set TCP_NODELAY, as a relay's do.
struct Stunnel {
    _child: tokio::process::Child,
    port: u16,
}

impl Stunnel {
    const BINARY: &str = "/usr/bin/stunnel4";

    async fn start(pki: &TestPki, backend: u16) -> Self {
        let port = sink::free_port();
        let conf = pki.dir.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\ndebug = 3\n\
                 socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n[smtp]\n\
                 accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\n\
                 cert = {}\nkey = {}\n",
                pki.cert_file.display(),
                pki.key_file.display()
            ),
        )
        .expect("write stunnel.conf");
        let child = tokio::process::Command::new(Self::BINARY)
            .arg(&conf)
            .kill_on_drop(true)
            .spawn()
            .expect("start stunnel4");
        listening(port, "stunnel").await;
        Self {
            _child: child,
            port,
        }
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits up to 2 s for `port` on loopback to accept connections.
async fn listening(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not listen on {port}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// Whichever real SMTP server the run uses.
enum Server {
    Postfix(PostfixSink),
    Aiosmtpd(Sink),
}

impl Server {
    async fn start() -> Self {
        let forced = std::env::var("BENCH_SINK").is_ok_and(|v| v == "aiosmtpd");
        if !forced && std::path::Path::new(PostfixSink::BINARY).exists() {
            Self::Postfix(PostfixSink::start().await)
        } else {
            Self::Aiosmtpd(Sink::start().await)
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Postfix(_) => "Postfix smtp-sink",
            Self::Aiosmtpd(_) => "aiosmtpd (python/smtp_sink.py)",
        }
    }

    fn port(&self) -> u16 {
        match self {
            Self::Postfix(s) => s.port,
            Self::Aiosmtpd(s) => s.port,
        }
    }

    fn count(&self) -> usize {
        match self {
            Self::Postfix(s) => s.count(),
            Self::Aiosmtpd(s) => s.count(),
        }
    }

    fn received(&self) -> Vec<(String, SystemTime)> {
        match self {
            Self::Postfix(s) => s.received(),
            Self::Aiosmtpd(s) => s
                .messages()
                .into_iter()
                .filter_map(|m| Some((m.to.first()?.clone(), m.received_at)))
                .collect(),
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mails: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(400);
    let rate: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let sink = Server::start().await;
    println!("SMTP server: {}", sink.name());
    let (pool, in_flight) = (knob("BENCH_POOL", 16), knob("BENCH_IN_FLIGHT", 32));

    // 1. Kept connections vs one per mail, plain and over TLS + AUTH.
    let pki = TestPki::generate();
    let stunnel = match &sink {
        Server::Postfix(p) if std::path::Path::new(Stunnel::BINARY).exists() => {
            Some(Stunnel::start(&pki, p.port).await)
        }
        _ => None,
    };
    let fallback = match stunnel {
        Some(_) => None,
        None => Some(Server::Aiosmtpd(
            Sink::start_secure(Security {
                tls: Some(&pki),
                implicit_tls: true,
                auth: Some(LOGIN),
            })
            .await,
        )),
    };
    let (secure, secure_port, secure_name) = match (&stunnel, &fallback) {
        (Some(s), _) => (&sink, s.port, "stunnel (TLS) -> Postfix smtp-sink"),
        (None, Some(f)) => (f, f.port(), "aiosmtpd (TLS, AUTH)"),
        (None, None) => unreachable!("one of the two is started"),
    };
    for (label, server, port, tls) in [
        ("plain SMTP", &sink, sink.port(), None),
        ("TLS + AUTH", secure, secure_port, Some(&pki)),
    ] {
        let pooled = spawn(true, port, tls).await;
        let single = spawn(false, port, tls).await;
        throughput(&pooled, server, 50, "warm-pooled").await;
        throughput(&single, server, 50, "warm-single").await;
        let name = if tls.is_some() {
            secure_name
        } else {
            sink.name()
        };
        println!(
            "ingest -> accepted, {label} ({name}), {mails} mails a side, {in_flight} sends in flight"
        );
        let (mut kept, mut fresh, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let k = throughput(&pooled, server, mails, &format!("pooled-{round}")).await;
            let f = throughput(&single, server, mails, &format!("single-{round}")).await;
            println!(
                "  round {round}: kept ({pool}) {k:>8.1} mails/s   one per mail {f:>8.1} mails/s   {:>5.2}x",
                k / f
            );
            kept.push(k);
            fresh.push(f);
            ratios.push(k / f);
        }
        println!(
            "  median: kept {:>8.1} mails/s   one per mail {:>8.1} mails/s   kept / per-mail {:.2}x",
            median(&mut kept),
            median(&mut fresh),
            median(&mut ratios)
        );
        pooled.stop().await;
        single.stop().await;
    }
    drop(fallback);

    // 2. End to end at a paced rate: accounts change acked -> mail accepted.
    let app = spawn(true, sink.port(), None).await;
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
    // A message the server is still writing is not readable yet.
    let latencies_now = || -> Vec<Duration> {
        sink.received()
            .into_iter()
            .filter_map(|(to, received_at)| {
                let at = acked.get(&to)?;
                Some(received_at.duration_since(*at).unwrap_or(Duration::ZERO))
            })
            .collect()
    };
    let mut latencies = latencies_now();
    while latencies.len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        latencies = latencies_now();
    }
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
