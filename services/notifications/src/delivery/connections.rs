//! Our own SMTP connections: opened with TCP_NODELAY, kept open between
//! mails (pooled) or closed after each.
//!
//! lettre's pool is not used: its sockets keep Nagle's algorithm, and it
//! writes a message's body and the final "." separately, so on a reused
//! connection the "." waited for the server's delayed ACK (about 40 ms a
//! mail on Linux); it also sent a NOOP before every reuse. The SMTP dialogue
//! itself (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA) is still lettre's.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use lettre::{
    address::Envelope,
    transport::smtp::{
        Error,
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, TlsParameters},
        extension::ClientId,
        response::Response,
    },
};

use secrecy::ExposeSecret;

use super::transport::{SmtpConfig, TlsMode};

/// A connection idle longer than this is closed rather than reused: servers
/// drop idle clients after minutes (RFC 5321 suggests 5), and a reuse that
/// finds its connection gone costs a retry.
const REUSE_WITHIN: Duration = Duration::from_secs(30);

pub struct SmtpConnections {
    host: String,
    port: u16,
    tls: TlsMode,
    tls_parameters: Option<TlsParameters>,
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
        let tls_parameters = match smtp.tls {
            TlsMode::None => None,
            _ => Some(
                TlsParameters::new(host.to_owned())
                    .map_err(|e| format!("notifications.smtp.tls: {e}"))?,
            ),
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
            tls: smtp.tls,
            tls_parameters,
            hello,
            credentials,
            timeout,
            keep,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let mut conn = match (self.tls, &self.tls_parameters) {
            // TLS from the first byte: lettre wraps its own socket, which
            // keeps Nagle's algorithm (a reused connection can wait for the
            // server's delayed ACK once per mail).
            (TlsMode::Tls, Some(params)) => {
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(params.clone()),
                    None,
                )
                .await?
            }
            _ => {
                let tcp = tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| network("connection timed out"))?
                .map_err(|e| network(&e.to_string()))?;
                tcp.set_nodelay(true).map_err(|e| network(&e.to_string()))?;
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?;
                if let (TlsMode::Starttls, Some(params)) = (self.tls, &self.tls_parameters) {
                    // Required: a server without STARTTLS gets no mail.
                    conn.starttls(params.clone(), &self.hello).await?;
                }
                conn
            }
        };
        if let Some(credentials) = &self.credentials
            && let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
        {
            conn.abort().await;
            return Err(e.into());
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

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// What lettre said: the server's reply, or the dialogue broke.
    Smtp(Error),
    /// No connection could be opened (refused, timed out, unreachable).
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
