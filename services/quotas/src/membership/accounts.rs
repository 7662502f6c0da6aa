//! accounts over gRPC: the group of a user quotas has not heard of yet
//! (asked once; the answer is stored like an event's).

use std::{sync::RwLock, time::Duration};

use steward_kit::{
    Kind,
    auth::{Claims, Role, TokenSigner},
};
use steward_proto::accounts::{GetUserRequest, accounts_service_client::AccountsServiceClient};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::error::Error;

pub struct Accounts {
    client: RwLock<Option<AccountsServiceClient<Channel>>>,
    signer: Option<TokenSigner>,
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::refused(Kind::Unavailable, "ACCOUNTS_UNAVAILABLE", message)
}

impl Accounts {
    pub fn new(endpoint: Option<&str>, signer: Option<TokenSigner>) -> Self {
        let accounts = Self {
            client: RwLock::new(None),
            signer,
        };
        if let Some(endpoint) = endpoint {
            accounts.set_endpoint(endpoint);
        }
        accounts
    }

    /// Points at accounts (the suite builds quotas before accounts).
    pub fn set_endpoint(&self, endpoint: &str) {
        match Endpoint::from_shared(endpoint.to_owned()) {
            Ok(e) => {
                let channel = e
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(5))
                    .connect_lazy();
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
        let (Some(mut client), Some(signer)) = (client, self.signer.as_ref()) else {
            return Err(unavailable(
                "the user is not known here and accounts is not configured (quotas.accounts_endpoint)",
            ));
        };
        let token = signer.sign(&Claims::new(
            "service:quotas",
            &[Role::PlatformService],
            Duration::from_secs(60),
        ));
        let mut request = tonic::Request::new(GetUserRequest {
            user_id: user.to_string(),
        });
        if let Ok(value) = format!("Bearer {token}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        steward_kit::telemetry::inject_current(request.metadata_mut());
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
