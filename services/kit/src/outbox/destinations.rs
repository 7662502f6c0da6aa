//! Where outbox rows go: gRPC clients of the receiving services.

use std::time::Duration;

use prost::Message;
use steward_proto::common::{
    ErasePersonalDataRequest, personal_data_service_client::PersonalDataServiceClient,
};
use steward_proto::{
    audit::{
        AuditEvent, IngestEventsRequest, audit_ingest_service_client::AuditIngestServiceClient,
    },
    notifications::{
        EnqueueNotificationsRequest, Notification,
        notification_ingest_service_client::NotificationIngestServiceClient,
    },
    quotas::{
        ApplyMembershipEventsRequest, MembershipEvent,
        quotas_sync_service_client::QuotasSyncServiceClient,
    },
};
use tonic::transport::Channel;

use crate::auth::{ServiceCredentials, TokenSigner};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The content itself is refused (bad payload, INVALID_ARGUMENT): a
    /// retry of the same rows cannot succeed.
    #[error("destination rejected the content: {0}")]
    Rejected(String),
    /// Unreachable, overloaded, refused for now: retry later.
    #[error("destination unavailable: {0}")]
    Unavailable(String),
}

impl DeliveryError {
    fn from_status(status: tonic::Status) -> Self {
        let text = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => Self::Rejected(text),
            _ => Self::Unavailable(text),
        }
    }
}

/// A receiver of outbox messages. Must be idempotent per event id: the relay
/// may deliver a batch again after a crash or timeout.
#[async_trait::async_trait]
pub trait Destination: Send + Sync + 'static {
    async fn deliver(&self, payloads: Vec<Vec<u8>>) -> Result<(), DeliveryError>;
}

/// The channel of a destination (relays authenticate with
/// [`ServiceCredentials`]).
fn channel(endpoint: &str) -> Result<Channel, DeliveryError> {
    crate::auth::service::channel(endpoint, Duration::from_secs(30))
        .map_err(|e| DeliveryError::Unavailable(e.to_string()))
}

fn decode_all<M: Message + Default>(payloads: Vec<Vec<u8>>) -> Result<Vec<M>, DeliveryError> {
    payloads
        .into_iter()
        .map(|p| {
            M::decode(p.as_slice())
                .map_err(|e| DeliveryError::Rejected(format!("payload does not decode: {e}")))
        })
        .collect()
}

/// `steward.audit.v1.AuditIngestService/IngestEvents`.
pub struct AuditIngestDestination {
    client: AuditIngestServiceClient<Channel>,
    credentials: ServiceCredentials,
}

impl AuditIngestDestination {
    pub fn new(endpoint: &str, signer: TokenSigner, service: &str) -> Result<Self, DeliveryError> {
        Ok(Self {
            client: AuditIngestServiceClient::new(channel(endpoint)?),
            credentials: ServiceCredentials::new(signer, format!("service:{service}")),
        })
    }
}

#[async_trait::async_trait]
impl Destination for AuditIngestDestination {
    async fn deliver(&self, payloads: Vec<Vec<u8>>) -> Result<(), DeliveryError> {
        let events = decode_all::<AuditEvent>(payloads)?;
        self.client
            .clone()
            .ingest_events(self.credentials.authorize(IngestEventsRequest { events }))
            .await
            .map(|_| ())
            .map_err(DeliveryError::from_status)
    }
}

/// `steward.notifications.v1.NotificationIngestService/EnqueueNotifications`.
pub struct NotificationDestination {
    client: NotificationIngestServiceClient<Channel>,
    credentials: ServiceCredentials,
}

impl NotificationDestination {
    pub fn new(endpoint: &str, signer: TokenSigner, service: &str) -> Result<Self, DeliveryError> {
        Ok(Self {
            client: NotificationIngestServiceClient::new(channel(endpoint)?),
            credentials: ServiceCredentials::new(signer, format!("service:{service}")),
        })
    }
}

#[async_trait::async_trait]
impl Destination for NotificationDestination {
    async fn deliver(&self, payloads: Vec<Vec<u8>>) -> Result<(), DeliveryError> {
        let notifications = decode_all::<Notification>(payloads)?;
        self.client
            .clone()
            .enqueue_notifications(
                self.credentials
                    .authorize(EnqueueNotificationsRequest { notifications }),
            )
            .await
            .map(|_| ())
            .map_err(DeliveryError::from_status)
    }
}

/// `steward.quotas.v1.QuotasSyncService/ApplyMembershipEvents`.
pub struct QuotasSyncDestination {
    client: QuotasSyncServiceClient<Channel>,
    credentials: ServiceCredentials,
}

impl QuotasSyncDestination {
    pub fn new(endpoint: &str, signer: TokenSigner, service: &str) -> Result<Self, DeliveryError> {
        Ok(Self {
            client: QuotasSyncServiceClient::new(channel(endpoint)?),
            credentials: ServiceCredentials::new(signer, format!("service:{service}")),
        })
    }
}

#[async_trait::async_trait]
impl Destination for QuotasSyncDestination {
    async fn deliver(&self, payloads: Vec<Vec<u8>>) -> Result<(), DeliveryError> {
        let events = decode_all::<MembershipEvent>(payloads)?;
        self.client
            .clone()
            .apply_membership_events(
                self.credentials
                    .authorize(ApplyMembershipEventsRequest { events }),
            )
            .await
            .map(|_| ())
            .map_err(DeliveryError::from_status)
    }
}

/// `steward.common.v1.PersonalDataService/ErasePersonalData` on every
/// service that keeps free text about users: a row is delivered when all of
/// them acknowledged (each is idempotent by the erasure's event id, so a
/// retry after a partial failure is harmless).
pub struct ErasureDestination {
    clients: Vec<PersonalDataServiceClient<Channel>>,
    credentials: ServiceCredentials,
}

impl ErasureDestination {
    pub fn new(
        endpoints: &[String],
        signer: TokenSigner,
        service: &str,
    ) -> Result<Self, DeliveryError> {
        Ok(Self {
            clients: endpoints
                .iter()
                .map(|e| channel(e).map(PersonalDataServiceClient::new))
                .collect::<Result<_, _>>()?,
            credentials: ServiceCredentials::new(signer, format!("service:{service}")),
        })
    }
}

#[async_trait::async_trait]
impl Destination for ErasureDestination {
    async fn deliver(&self, payloads: Vec<Vec<u8>>) -> Result<(), DeliveryError> {
        let requests = decode_all::<ErasePersonalDataRequest>(payloads)?;
        for client in &self.clients {
            for request in &requests {
                client
                    .clone()
                    .erase_personal_data(self.credentials.authorize(request.clone()))
                    .await
                    .map_err(DeliveryError::from_status)?;
            }
        }
        Ok(())
    }
}
