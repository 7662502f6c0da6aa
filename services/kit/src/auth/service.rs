//! Calls one Steward service makes to another: a PLATFORM_SERVICE token the
//! caller mints itself for each request (with the current trace context),
//! over a lazily connected channel with the usual timeouts.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{Claims, Role, TokenSigner};

/// Who a service is when it calls another one.
#[derive(Clone)]
pub struct ServiceCredentials {
    signer: TokenSigner,
    /// `service:<name>`.
    subject: String,
}

impl ServiceCredentials {
    pub fn new(signer: TokenSigner, subject: impl Into<String>) -> Self {
        Self {
            signer,
            subject: subject.into(),
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `message` as a request carrying a fresh five-minute token and the
    /// trace context of the current span.
    pub fn authorize<T>(&self, message: T) -> tonic::Request<T> {
        let token = self.signer.sign(&Claims::new(
            self.subject.clone(),
            &[Role::PlatformService],
            Duration::from_secs(300),
        ));
        let mut request = tonic::Request::new(message);
        if let Ok(value) = format!("Bearer {token}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        crate::telemetry::inject_current(request.metadata_mut());
        request
    }
}

/// A channel to `endpoint`, connected on first use; a call fails after
/// `timeout` (connecting gives up after at most 5 s).
pub fn channel(endpoint: &str, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(endpoint.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .connect_lazy())
}
