//! What accounts tells the quotas service and asks it.
//!
//! * Group membership (user created, group changed, user erased) goes
//!   through the outbox, in the transaction of the change; quotas
//!   deduplicates by event id and ignores events older than the last one
//!   applied for the user.
//! * The automatic erasure's delay is each user's effective
//!   `account.personal.data.removal.delay` quota, asked over gRPC; when
//!   quotas cannot answer, accounts' own setting is used (the audit event
//!   says which).

use std::{collections::HashMap, time::Duration};

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use steward_kit::{
    auth::{ServiceCredentials, TokenSigner, service},
    outbox,
};
use steward_proto::quotas::{
    BatchGetEffectiveQuotasRequest, MembershipEvent, MembershipEventType, quota_value,
    quotas_service_client::QuotasServiceClient,
};
use tonic::transport::Channel;
use uuid::Uuid;

pub use steward_proto::quotas::MembershipEventType as MembershipKind;

/// The quota the erasure delay comes from.
pub const ERASURE_DELAY_KEY: &str = "account.personal.data.removal.delay";

/// Queues a membership event for quotas; call inside the change's
/// transaction.
pub async fn membership(
    conn: &mut AsyncPgConnection,
    kind: MembershipEventType,
    user_id: Uuid,
    group: &str,
) -> QueryResult<()> {
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    let event = MembershipEvent {
        event_id: id.to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        r#type: kind as i32,
        user_id: user_id.to_string(),
        group: group.to_owned(),
    };
    outbox::enqueue(conn, outbox::QUOTAS, id, &event).await
}

/// A client of quotas' effective values (the erasure job's delays).
#[derive(Clone)]
pub struct Delays {
    client: Option<QuotasServiceClient<Channel>>,
    credentials: ServiceCredentials,
}

impl Delays {
    /// `endpoint`: quotas (`outbox.quotas_endpoint`); none: every lookup
    /// falls back.
    pub fn new(endpoint: Option<&str>, signer: TokenSigner) -> Self {
        let client = endpoint
            .and_then(|e| service::channel(e, Duration::from_secs(5)).ok())
            .map(QuotasServiceClient::new);
        Self {
            client,
            credentials: ServiceCredentials::new(signer, "service:accounts"),
        }
    }

    /// Each user's delay in days, or why quotas could not say.
    pub async fn days(&self, users: &[Uuid]) -> Result<HashMap<Uuid, i64>, String> {
        let Some(mut client) = self.client.clone() else {
            return Err("quotas is not configured".into());
        };
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let request = self.credentials.authorize(BatchGetEffectiveQuotasRequest {
            user_ids: users.iter().map(Uuid::to_string).collect(),
            keys: vec![ERASURE_DELAY_KEY.to_owned()],
        });
        let response = client
            .batch_get_effective_quotas(request)
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let mut out = HashMap::new();
        for user in response.users {
            let Ok(id) = Uuid::parse_str(&user.user_id) else {
                continue;
            };
            let value = user
                .quotas
                .iter()
                .find(|q| q.key == ERASURE_DELAY_KEY)
                .and_then(|q| q.value.as_ref())
                .and_then(|v| v.kind.as_ref());
            let days = match value {
                Some(quota_value::Kind::Value(text)) => text.parse::<i64>().ok(),
                // Unlimited: never erased automatically.
                Some(quota_value::Kind::Unlimited(true)) => Some(i64::MAX),
                _ => None,
            };
            if let Some(days) = days {
                out.insert(id, days);
            }
        }
        Ok(out)
    }
}
