//! A real SMTP server for the notification tests and benchmark: Python's
//! aiosmtpd running `integration-tests/python/smtp_sink.py`, which stores
//! each accepted message decoded by Python's email package and answers
//! 4xx/5xx on demand (see the script).

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime},
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub received_at: SystemTime,
    /// The TLS version the session ran ("" without TLS).
    pub tls: String,
    /// Who the session authenticated as ("" without AUTH).
    pub login: String,
}

/// A certificate authority and a server certificate it signed for
/// 127.0.0.1 and localhost, as PEM files in a fresh folder: what a relay
/// with a private CA presents (`notifications.smtp.ca_file` = `ca_file`).
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestPki {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Steward test relay CA");
        let ca = ca.self_signed(&ca_key).expect("the CA certificate");
        let key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params")
            .signed_by(&key, &ca, &ca_key)
            .expect("the server certificate");
        let dir = temp_dir("steward-smtp-pki");
        let pki = Self {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            dir,
        };
        std::fs::write(&pki.ca_file, ca.pem()).expect("write ca.pem");
        std::fs::write(&pki.cert_file, server.pem()).expect("write server.pem");
        std::fs::write(&pki.key_file, key.serialize_pem()).expect("write server.key");
        pki
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the sink requires besides plain SMTP.
#[derive(Default)]
pub struct Security<'a> {
    /// STARTTLS with this server certificate before MAIL.
    pub tls: Option<&'a TestPki>,
    /// With `tls`: TLS from the first byte instead of STARTTLS.
    pub implicit_tls: bool,
    /// AUTH with these credentials (user, password).
    pub auth: Option<(&'a str, &'a str)>,
}

pub struct Sink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/smtp_sink.py")
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

impl Sink {
    /// Starts the sink on a free loopback port. Greylisted addresses are
    /// refused with 451 on their first two attempts.
    pub async fn start() -> Self {
        Self::start_with(2).await
    }

    pub async fn start_with(greylist: u32) -> Self {
        Self::start_on(free_port(), greylist).await
    }

    /// Starts the sink on `port` (another sink's, once that one stopped).
    pub async fn start_on(port: u16, greylist: u32) -> Self {
        Self::start_secured(port, greylist, Security::default()).await
    }

    /// Starts the sink on a free port requiring STARTTLS and/or AUTH.
    pub async fn start_secure(security: Security<'_>) -> Self {
        Self::start_secured(free_port(), 2, security).await
    }

    async fn start_secured(port: u16, greylist: u32, security: Security<'_>) -> Self {
        let probe = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(_) => panic!(
                "the SMTP sink needs the Python package aiosmtpd: python3 -m pip install aiosmtpd \
                 (.ci/run installs it)"
            ),
            Err(e) => {
                panic!("the SMTP sink needs python3 with aiosmtpd (pip install aiosmtpd): {e}")
            }
        }
        let dir = temp_dir("steward-smtp-sink");
        let mut command = Command::new("python3");
        command
            .arg(script())
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args(["--greylist", &greylist.to_string()]);
        if let Some(pki) = security.tls {
            command
                .arg("--tls-cert")
                .arg(&pki.cert_file)
                .arg("--tls-key")
                .arg(&pki.key_file);
            if security.implicit_tls {
                command.arg("--implicit-tls");
            }
        }
        if let Some((user, password)) = security.auth {
            command.arg("--auth").arg(format!("{user}:{password}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3 smtp_sink.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP sink starts within 20 s")
            .expect("read the SMTP sink's output");
        assert_eq!(ready, Some(format!("ready {port}")), "the SMTP sink said");
        Self { child, port, dir }
    }

    /// Stops the server process (its connections close with it) and waits
    /// until it is gone, so its port is free again.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Every complete message so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        read_all(&self.dir)
    }

    /// Waits until at least `n` messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "expected {n} messages in the SMTP sink, got {}: {got:#?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// How many complete messages arrived (cheap: counts folders).
    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("done").exists())
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn read_all(dir: &Path) -> Vec<Received> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    folders.sort();
    folders
        .into_iter()
        .filter(|f| f.join("done").exists())
        .map(|f| {
            let nanos: u64 = read(&f, "received_at").trim().parse().unwrap_or(0);
            Received {
                to: read(&f, "to").lines().map(str::to_owned).collect(),
                from: read(&f, "from"),
                subject: read(&f, "subject"),
                text: read(&f, "text"),
                html: read(&f, "html"),
                received_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
                tls: read(&f, "tls"),
                login: read(&f, "login"),
            }
        })
        .collect()
}

/// `[notifications]` delivering to `port` on loopback without TLS, with
/// fast retries.
pub fn smtp_config(port: u16) -> steward::config::NotificationsConfig {
    let mut c = steward::config::NotificationsConfig::default();
    c.smtp.host = Some("127.0.0.1".into());
    c.smtp.port = port;
    c.smtp.tls = steward::config::TlsMode::None;
    c.smtp.from = "Steward <noreply@steward.test>".into();
    c.dashboard_url = "https://dashboard.steward.test/".into();
    c.delivery.min_backoff = Duration::from_millis(100);
    c.delivery.max_backoff = Duration::from_millis(400);
    c.delivery.max_attempts = 5;
    c.delivery.message_timeout = Duration::from_secs(10);
    c.delivery.poll_interval = Duration::from_millis(200);
    c
}
