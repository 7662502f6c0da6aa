//! Where mail goes: an SMTP relay through lettre (pooled connections, or
//! one connection per mail), or `.eml` files in a folder when no server is
//! configured. Each attempt's outcome is classified for the retry rules.

use std::{path::PathBuf, time::Duration};

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
    transport::smtp::{
        AsyncSmtpTransportBuilder, PoolConfig,
        authentication::Credentials,
        client::{Tls, TlsParameters},
        extension::ClientId,
    },
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{NotificationsConfig, domain::retry::Outcome};

/// `notifications.smtp.tls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on loopback or a test sink only.
    None,
}

/// `[notifications.smtp]`: the names the Helm chart writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    /// Unset: no SMTP server; mail is written as `.eml` files.
    pub host: Option<String>,
    pub port: u16,
    pub tls: TlsMode,
    /// The From header, e.g. `Steward <noreply@example.com>`.
    pub from: String,
    /// `STEWARD_NOTIFICATIONS__SMTP__USERNAME`.
    pub username: Option<String>,
    /// `STEWARD_NOTIFICATIONS__SMTP__PASSWORD`.
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// Reuse connections (a pool); false opens one connection per mail.
    pub pool: bool,
    /// Connections the pool keeps open at most.
    pub pool_size: u32,
    /// The EHLO name; unset: this host's name.
    pub hello_name: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            tls: TlsMode::Starttls,
            from: "Steward <noreply@localhost>".into(),
            username: None,
            password: None,
            pool: true,
            pool_size: 16,
            hello_name: None,
        }
    }
}

/// A rendered mail to hand to a transport.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub mail_id: uuid::Uuid,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

/// The configured transport.
pub struct Mailer {
    from: Mailbox,
    kind: Kind,
}

enum Kind {
    Pooled(AsyncSmtpTransport<Tokio1Executor>),
    /// A fresh transport (so a fresh connection) per mail, closed after it.
    PerMail(AsyncSmtpTransportBuilder),
    File {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
}

fn builder(
    smtp: &SmtpConfig,
    host: &str,
    timeout: Duration,
) -> Result<AsyncSmtpTransportBuilder, String> {
    let tls = match smtp.tls {
        TlsMode::None => Tls::None,
        mode => {
            let params = TlsParameters::new(host.to_owned())
                .map_err(|e| format!("notifications.smtp.tls: {e}"))?;
            if mode == TlsMode::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(name) = &smtp.hello_name {
        b = b.hello_name(ClientId::Domain(name.clone()));
    }
    match (&smtp.username, &smtp.password) {
        (Some(user), Some(password)) => {
            b = b.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        (None, None) => {}
        _ => {
            return Err(
                "notifications.smtp: username and password are set together or not at all".into(),
            );
        }
    }
    Ok(b)
}

impl Mailer {
    /// The transport `config` describes; a bad value is refused naming its
    /// key.
    pub fn from_config(config: &NotificationsConfig) -> Result<Self, String> {
        let from: Mailbox = config
            .smtp
            .from
            .parse()
            .map_err(|e| format!("notifications.smtp.from {:?}: {e}", config.smtp.from))?;
        let timeout = config.delivery.message_timeout;
        let kind = match &config.smtp.host {
            Some(host) if host.trim().is_empty() => {
                return Err("notifications.smtp.host: empty".into());
            }
            Some(host) => {
                let b = builder(&config.smtp, host, timeout)?;
                if config.smtp.pool {
                    Kind::Pooled(
                        b.pool_config(
                            PoolConfig::new()
                                .max_size(config.smtp.pool_size.max(1))
                                .idle_timeout(Duration::from_secs(60)),
                        )
                        .build(),
                    )
                } else {
                    Kind::PerMail(b)
                }
            }
            None => {
                let dir = config
                    .mail_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("mail"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("notifications.mail_dir {}: {e}", dir.display()))?;
                Kind::File {
                    transport: AsyncFileTransport::new(&dir),
                    dir,
                }
            }
        };
        Ok(Self { from, kind })
    }

    /// "smtp" or "file": recorded on each mail.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::File { .. } => "file",
            _ => "smtp",
        }
    }

    /// The `.eml` folder, for the file transport.
    pub fn mail_dir(&self) -> Option<&std::path::Path> {
        match &self.kind {
            Kind::File { dir, .. } => Some(dir),
            _ => None,
        }
    }

    fn message(&self, out: &Outgoing) -> Result<Message, String> {
        let to: Mailbox = out
            .recipient
            .parse()
            .map_err(|e| format!("recipient: {e}"))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(out.subject.clone())
            .message_id(Some(format!("<{}@steward>", out.mail_id)));
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(out.text_body.clone());
        let built = if out.html_body.is_empty() {
            builder.singlepart(text)
        } else {
            builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(out.html_body.clone()),
                ),
            )
        };
        built.map_err(|e| format!("building the message: {e}"))
    }

    /// One attempt, classified. Timeouts are the caller's (the dispatcher
    /// bounds the whole attempt).
    pub async fn send(&self, out: &Outgoing) -> Outcome {
        let message = match self.message(out) {
            Ok(m) => m,
            // Our own message cannot be built: retrying will not help.
            Err(error) => return Outcome::Permanent { code: 0, error },
        };
        match &self.kind {
            Kind::Pooled(transport) => smtp_outcome(transport.send(message).await),
            Kind::PerMail(builder) => {
                let transport = builder
                    .clone()
                    .pool_config(PoolConfig::new().max_size(1).min_idle(0))
                    .build::<Tokio1Executor>();
                let result = transport.send(message).await;
                // QUIT and close now, not at the pool's idle timeout.
                transport.shutdown().await;
                smtp_outcome(result)
            }
            Kind::File { transport, dir } => match transport.send(message).await {
                Ok(id) => Outcome::Sent {
                    reply: format!("written to {}", dir.join(format!("{id}.eml")).display()),
                },
                Err(e) => Outcome::Transient {
                    error: format!("writing the .eml file: {e}"),
                },
            },
        }
    }
}

fn smtp_outcome(
    result: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> Outcome {
    match result {
        Ok(response) => Outcome::Sent {
            reply: format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            ),
        },
        Err(e) => {
            let error = describe(&e);
            match e.status() {
                Some(code) if e.is_permanent() => Outcome::Permanent {
                    code: u16::from(code),
                    error,
                },
                _ => Outcome::Transient { error },
            }
        }
    }
}

/// The error and its causes on one line (the server's reply included).
fn describe(e: &lettre::transport::smtp::Error) -> String {
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
