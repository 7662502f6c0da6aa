//! accounts over gRPC: the group of a user quotas has not heard of yet
//! (asked once; the answer is stored like an event's).

use std::{sync::RwLock, time::Duration};

use steward_kit::{
    Kind,
    auth::{ServiceCredentials, TokenSigner, service},
};
use steward_proto::accounts::{GetUserRequest, accounts_service_client::AccountsServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::error::Error;

pub struct Accounts {
    client: RwLock<Option<AccountsServiceClient<Channel>>>,
    credentials: Option<ServiceCredentials>,
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::refused(Kind::Unavailable, "ACCOUNTS_UNAVAILABLE", message)
}

impl Accounts {
    pub fn new(endpoint: Option<&str>, signer: Option<TokenSigner>) -> Self {
        let accounts = Self {
            client: RwLock::new(None),
            credentials: signer.map(|s| ServiceCredentials::new(s, "service:quotas")),
        };
        if let Some(endpoint) = endpoint {
            accounts.set_endpoint(endpoint);
        }
        accounts
    }

    /// Points at accounts (the suite builds quotas before accounts).
    pub fn set_endpoint(&self, endpoint: &str) {
        match service::channel(endpoint, Duration::from_secs(5)) {
            Ok(channel) => {
                *self.client.write().expect("client lock") =
                    Some(AccountsServiceClient::new(channel));
            }
            Err(error) => {
                tracing::error!(%error, endpoint, "quotas.accounts_endpoint is not a URL")
            }
        }
    }

    /// The user's group; `None` when accounts does not know the user.
    pub async fn group_of(&self, user: Uuid) -> Result<Option<String>, Error> {
        let client = self.client.read().expect("client lock").clone();
        let (Some(mut client), Some(credentials)) = (client, self.credentials.as_ref()) else {
            return Err(unavailable(
                "the user is not known here and accounts is not configured (quotas.accounts_endpoint)",
            ));
        };
        let request = credentials.authorize(GetUserRequest {
            user_id: user.to_string(),
        });
        match client.get_user(request).await {
            Ok(response) => Ok(response.into_inner().user.map(|u| u.group)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "accounts did not answer a user's group");
                Err(unavailable(
                    "accounts cannot tell the user's group now, retry",
                ))
            }
        }
    }
}
