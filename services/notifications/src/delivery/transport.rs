//! Where mail goes: an SMTP relay over our own connections (kept, or one
//! per mail: `connections.rs`), or `.eml` files in a folder when no server
//! is configured. Each attempt's outcome is classified for the retry rules.

use std::path::PathBuf;

use lettre::{
    AsyncFileTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
};

use super::connections::{SendError, SmtpConnections, describe};
use secrecy::SecretString;
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
    /// A PEM file of CA certificates trusted for the relay besides the
    /// public roots (a relay whose certificate a private CA signed).
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
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
    /// Kept connections (`notifications.smtp.pool`), or one per mail.
    Smtp(SmtpConnections),
    File {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
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
            Some(host) => Kind::Smtp(SmtpConnections::from_config(&config.smtp, host, timeout)?),
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
            Kind::Smtp(connections) => smtp_outcome(
                connections
                    .send(message.envelope(), &message.formatted())
                    .await,
            ),
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

fn smtp_outcome(result: Result<lettre::transport::smtp::response::Response, SendError>) -> Outcome {
    let result = match result {
        Err(SendError::Connect(error)) => return Outcome::Transient { error },
        Err(SendError::Smtp(e)) => Err(e),
        Ok(response) => Ok(response),
    };
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
