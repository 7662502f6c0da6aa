//! Our own SMTP connections: opened with TCP_NODELAY, kept open between
//! mails (pooled) or closed after each.
//!
//! lettre's pool is not used: its sockets keep Nagle's algorithm, and it
//! writes a message's body and the final "." separately, so on a reused
//! connection the "." waited for the server's delayed ACK (about 40 ms a
//! mail on Linux); it also sent a NOOP before every reuse. The SMTP dialogue
//! itself (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA) is still lettre's; TLS
//! from the first byte is ours (`implicit_tls.rs`) for the same reason.

use std::{
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use lettre::{
    address::Envelope,
    transport::smtp::{
        Error,
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters},
        extension::ClientId,
        response::Response,
    },
};

use rustls::pki_types::{CertificateDer, pem::PemObject};
use secrecy::ExposeSecret;

use super::{
    implicit_tls,
    transport::{SmtpConfig, TlsMode},
};

/// A connection idle longer than this is closed rather than reused: servers
/// drop idle clients after minutes (RFC 5321 suggests 5), and a reuse that
/// finds its connection gone costs a retry.
const REUSE_WITHIN: Duration = Duration::from_secs(30);

pub struct SmtpConnections {
    host: String,
    port: u16,
    tls: Tls,
    hello: ClientId,
    credentials: Option<Credentials>,
    timeout: Duration,
    /// Connections kept open at most; 0: one connection per mail.
    keep: usize,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpConnections {
    /// The connections `[notifications.smtp]` describes, to `host`; a bad
    /// value is refused naming its key.
    pub fn from_config(smtp: &SmtpConfig, host: &str, timeout: Duration) -> Result<Self, String> {
        let extra_roots = match (&smtp.ca_file, smtp.tls) {
            (Some(_), TlsMode::None) => {
                return Err("notifications.smtp.ca_file: set, but tls is none".into());
            }
            (Some(path), _) => ca_certificates(path)?,
            (None, _) => Vec::new(),
        };
        let tls = match smtp.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => {
                let mut builder = TlsParameters::builder(host.to_owned());
                for cert in &extra_roots {
                    builder = builder.add_root_certificate(
                        Certificate::from_der(cert.to_vec())
                            .map_err(|e| format!("notifications.smtp.ca_file: {e}"))?,
                    );
                }
                Tls::Starttls(
                    builder
                        .build()
                        .map_err(|e| format!("notifications.smtp.tls: {e}"))?,
                )
            }
            TlsMode::Tls => Tls::Implicit(implicit_tls::Connector::new(host, &extra_roots)?),
        };
        let hello = match &smtp.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        let credentials = match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            (None, None) => None,
            _ => {
                return Err(
                    "notifications.smtp: username and password are set together or not at all"
                        .into(),
                );
            }
        };
        // Without the pool, every mail opens its own connection and closes it.
        let keep = if smtp.pool {
            smtp.pool_size.max(1) as usize
        } else {
            0
        };
        Ok(Self {
            host: host.to_owned(),
            port: smtp.port,
            tls,
            hello,
            credentials,
            timeout,
            keep,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A new connection, through STARTTLS and AUTH when configured. Any
    /// failure here is the relay's or our configuration's, not the message's
    /// (Postfix defers on a refused AUTH too): it is a `Connect` error and the
    /// mail waits for a retry rather than failing.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| network("connection timed out"))?
        .map_err(|e| network(&e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| network(&e.to_string()))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            Tls::Implicit(connector) => Box::new(
                tokio::time::timeout(self.timeout, connector.connect(tcp))
                    .await
                    .map_err(|_| network("TLS: timed out"))?
                    .map_err(|e| network(&format!("TLS: {e}")))?,
            ),
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(setup)?;
        if let Tls::Starttls(params) = &self.tls {
            // Required: a server without STARTTLS gets no mail. A failed
            // upgrade leaves lettre's stream empty: the connection is
            // dropped, never written to (abort would panic inside lettre).
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| network(&format!("STARTTLS: {}", describe(&e))))?;
        }
        if let Some(credentials) = &self.credentials
            && let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
        {
            conn.abort().await;
            return Err(network(&format!("AUTH: {}", describe(&e))));
        }
        Ok(conn)
    }

    /// The most recently used open connection, if it is fresh enough.
    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().expect("not poisoned");
        // Older ones first in the list: drop those too old to trust.
        idle.retain(|(_, at)| at.elapsed() < REUSE_WITHIN);
        idle.pop().map(|(conn, _)| conn)
    }

    async fn release(&self, mut conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        if self.keep > 0 {
            let mut idle = self.idle.lock().expect("not poisoned");
            if idle.len() < self.keep {
                idle.push((conn, Instant::now()));
                return;
            }
        }
        let _ = conn.quit().await;
    }

    /// Sends one message: on a kept connection when there is one, else on
    /// a new one. A kept connection the server closed in the meantime fails
    /// without a reply, or with 421 (closing): nothing was accepted, so the
    /// message then goes on a new connection.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        if let Some(mut conn) = self.take_idle() {
            match conn.send(envelope, message).await {
                Ok(response) => {
                    self.release(conn).await;
                    return Ok(response);
                }
                // Any other reply (4xx/5xx) is the outcome.
                Err(e) if e.status().is_some_and(|code| u16::from(code) != 421) => {
                    conn.abort().await;
                    return Err(e.into());
                }
                Err(_) => conn.abort().await,
            }
        }
        let mut conn = self.connect().await?;
        let result = conn.send(envelope, message).await;
        match &result {
            Ok(_) => self.release(conn).await,
            Err(_) => conn.abort().await,
        }
        Ok(result?)
    }
}

/// How connections are encrypted.
enum Tls {
    None,
    /// Upgraded with STARTTLS by lettre.
    Starttls(TlsParameters),
    /// TLS from the first byte.
    Implicit(implicit_tls::Connector),
}

/// The CA certificates in `notifications.smtp.ca_file`, refused when the
/// file holds none (a key or a typo would otherwise pass silently and every
/// send would fail later on an unknown issuer).
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let key = format!("notifications.smtp.ca_file {}", path.display());
    let pem = std::fs::read(path).map_err(|e| format!("{key}: {e}"))?;
    // Sections other than certificates (a key, say) are skipped; a file
    // that is not PEM at all holds no certificate either.
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(format!("{key}: no PEM certificate in it")),
    }
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// What lettre said about the message: the server's reply, or the
    /// dialogue broke.
    Smtp(Error),
    /// No usable connection: refused, timed out, unreachable, or the
    /// relay's greeting, STARTTLS or AUTH failed.
    Connect(String),
}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        SendError::Smtp(e)
    }
}

fn network(reason: &str) -> SendError {
    SendError::Connect(reason.to_owned())
}

fn setup(e: Error) -> SendError {
    SendError::Connect(describe(&e))
}

/// The error and its causes on one line (the server's reply included).
pub fn describe(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: TlsMode, ca_file: &Path) -> SmtpConfig {
        SmtpConfig {
            host: Some("relay.example.com".into()),
            tls,
            ca_file: Some(ca_file.to_owned()),
            ..SmtpConfig::default()
        }
    }

    fn refusal(smtp: &SmtpConfig) -> String {
        match SmtpConnections::from_config(smtp, "relay.example.com", Duration::from_secs(1)) {
            Ok(_) => panic!("{smtp:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_ca_file_is_refused_at_start_unless_it_holds_a_certificate() {
        let dir = std::env::temp_dir().join(format!("steward-ca-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let a_key = dir.join("key.pem");
        std::fs::write(
            &a_key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();

        for file in [&not_pem, &a_key] {
            let error = refusal(&config(TlsMode::Starttls, file));
            assert!(error.starts_with("notifications.smtp.ca_file"), "{error}");
            assert!(error.contains("no PEM certificate"), "{error}");
        }
        let error = refusal(&config(TlsMode::Tls, &dir.join("absent.pem")));
        assert!(error.contains("absent.pem"), "{error}");
        let error = refusal(&config(TlsMode::None, &not_pem));
        assert!(error.contains("tls is none"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
