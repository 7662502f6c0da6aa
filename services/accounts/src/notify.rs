//! Notifications accounts sends through its outbox (they commit with the
//! change that causes them), and the one thing it asks the notifications
//! service directly: whether a mail template an administrator picked
//! exists, before the change that mails with it commits (else
//! notifications' ingest would refuse the request after the commit and the
//! mail would wait, parked, in the outbox).

use std::{collections::HashMap, time::Duration};

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use steward_kit::{
    Error, Kind,
    auth::{ServiceCredentials, TokenSigner, service},
    outbox,
};
use steward_proto::notifications::{
    GetTemplateRequest, Notification, notifications_service_client::NotificationsServiceClient,
};
use tonic::{Code, transport::Channel};
use uuid::Uuid;

use crate::{SOURCE, domain::User};

/// Queues `template_id` for `recipients` about `subject`.
pub async fn send(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    recipients: Vec<String>,
    subject: &User,
    params: HashMap<String, String>,
) -> QueryResult<()> {
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    let message = Notification {
        event_id: id.to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        template_id: template_id.to_owned(),
        recipients,
        subject_user_id: subject.id.to_string(),
        params,
        source: SOURCE.to_owned(),
    };
    outbox::enqueue(conn, outbox::NOTIFICATIONS, id, &message).await
}

/// A client of notifications' templates.
#[derive(Clone)]
pub struct Templates {
    client: Option<NotificationsServiceClient<Channel>>,
    credentials: ServiceCredentials,
}

impl Templates {
    /// `endpoint`: notifications (`outbox.notifications_endpoint`); none:
    /// nothing to check (mail requests wait in the outbox for a relay).
    pub fn new(endpoint: Option<&str>, signer: TokenSigner) -> Self {
        let client = endpoint
            .and_then(|e| service::channel(e, Duration::from_secs(5)).ok())
            .map(NotificationsServiceClient::new);
        Self {
            client,
            credentials: ServiceCredentials::new(signer, "service:accounts"),
        }
    }

    /// `field` names a template notifications has. NOT_FOUND becomes a field
    /// violation; notifications being unreachable refuses the change as
    /// UNAVAILABLE (retry), since its mail could not be checked.
    pub async fn check(&self, field: &str, template_id: &str) -> Result<(), Error> {
        let Some(mut client) = self.client.clone() else {
            return Ok(());
        };
        let request = self.credentials.authorize(GetTemplateRequest {
            template_id: template_id.to_owned(),
            version: 0,
        });
        match client.get_template(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => {
                Err(Error::invalid(field, "no such mail template"))
            }
            Err(status) if status.code() == Code::InvalidArgument => {
                Err(Error::invalid(field, status.message()))
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot check a mail template");
                Err(Error::refused(
                    Kind::Unavailable,
                    "NOTIFICATIONS_UNAVAILABLE",
                    "the notifications service cannot confirm the mail template now; retry later",
                ))
            }
        }
    }
}
