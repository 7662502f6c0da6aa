//! Connections to a backend: a few long-lived HTTP/2 connections, each call
//! handed straight to one of them in turn.
//!
//! tonic's balanced `Channel` put every call through a buffer task and a
//! power-of-two-choices balancer before the connection: two more task hops
//! and their wake-ups per call, the largest part of what the gateway added
//! to a call's latency (`bench_gateway`, README). A gateway connection is
//! opened lazily, replaced when it closes, and a call that never left a
//! closed connection is sent once more on a new one. Calls that waited for
//! a connection attempt share its failure instead of each trying again in
//! turn: against a backend that drops packets, the tenth queued call would
//! otherwise wait ten connect timeouts.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http::{
    Request, Response, Uri,
    uri::{Authority, Scheme},
};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::body::Body;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Why a call could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("connecting to {authority}: {message}")]
    Connect { authority: String, message: String },
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("the request's URI: {0}")]
    Uri(String),
}

/// One backend (`http://host[:port]`): `connections` HTTP/2 connections.
pub struct Backend {
    scheme: Scheme,
    authority: Authority,
    /// `host:port` to connect to (port 80 when the URL names none).
    address: String,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    connect_timeout: Duration,
    /// Connection attempts made (tests count them).
    attempts: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    /// The open connection's sender; cloned per call (cheap: shared handles).
    sender: Mutex<Option<SendRequest<Body>>>,
    /// Held while this slot connects, so a burst of calls after a
    /// disconnection opens one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
    /// When the last attempt failed, and why: the answer for every call
    /// that was already waiting when it was made.
    failed: Mutex<Option<(Instant, String)>>,
}

impl Slot {
    fn open(&self) -> Option<SendRequest<Body>> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().filter(|s| !s.is_closed()).cloned()
    }
}

impl Backend {
    /// A backend at `url` (plain `http://host:port`; TLS between the
    /// gateway and the services is the mesh's or the network's concern).
    pub fn new(url: &str, connections: usize) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let scheme = uri.scheme().cloned().ok_or("the URL has no scheme")?;
        if scheme != Scheme::HTTP {
            return Err(format!(
                "{scheme}: only http:// backends are served (TLS is not built in)"
            ));
        }
        let authority = uri.authority().cloned().ok_or("the URL has no host")?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(Self {
            scheme,
            authority,
            address,
            slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            connect_timeout: CONNECT_TIMEOUT,
            attempts: AtomicUsize::new(0),
        })
    }

    /// Sends `request` (its path kept, its origin set to this backend) and
    /// returns the backend's response as it streams.
    pub async fn call(&self, request: Request<Body>) -> Result<Response<Body>, ForwardError> {
        let (mut parts, body) = request.into_parts();
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query
            .get_or_insert_with(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from_parts(uri).map_err(|e| ForwardError::Uri(e.to_string()))?;
        let mut request = Request::from_parts(parts, body);
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        // At most twice: once more only when the connection closed before
        // the call was written to it (the backend never saw it).
        for _ in 0..2 {
            let mut sender = self.sender(slot).await?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(Body::new)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(failed.into_error().into()),
                },
            }
        }
        Err(ForwardError::Connect {
            authority: self.authority.to_string(),
            message: "the connection closed twice before the call was sent".into(),
        })
    }

    async fn sender(&self, slot: &Slot) -> Result<SendRequest<Body>, ForwardError> {
        if let Some(sender) = slot.open() {
            return Ok(sender);
        }
        let waiting_since = Instant::now();
        let _connecting = slot.connecting.lock().await;
        if let Some(sender) = slot.open() {
            return Ok(sender);
        }
        let error = |message| ForwardError::Connect {
            authority: self.authority.to_string(),
            message,
        };
        let failed = || slot.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, message)) = failed().as_ref()
            && *at >= waiting_since
        {
            return Err(error(message.clone()));
        }
        match self.connect().await {
            Ok(sender) => {
                *failed() = None;
                *slot.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
                Ok(sender)
            }
            Err(message) => {
                *failed() = Some((Instant::now(), message.clone()));
                Err(error(message))
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, String> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let timeout = self.connect_timeout;
        let handshake = async {
            let stream = tokio::net::TcpStream::connect(self.address.as_str())
                .await
                .map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_while_idle(true)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())
        };
        let (sender, connection) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| format!("no connection within {timeout:?}"))??;
        let authority = self.authority.to_string();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, backend = %authority, "backend connection ended");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_plain_http_with_a_port() {
        assert!(Backend::new("http://127.0.0.1:50051", 2).is_ok());
        assert!(Backend::new("http://accounts.steward.svc:50051", 1).is_ok());
        assert!(Backend::new("https://127.0.0.1:50051", 1).is_err());
        assert_eq!(
            Backend::new("http://accounts", 1).unwrap().address,
            "accounts:80"
        );
        assert!(Backend::new("127.0.0.1:50051", 1).is_err());
        assert!(Backend::new("not a url", 1).is_err());
    }

    /// A listener whose accept queue is full: the kernel drops further
    /// SYNs, so a connect hangs as towards a host that drops packets.
    fn black_hole() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Never accepted: they fill the queue (a backlog of 0 holds one),
        // until a connect times out.
        let mut held = Vec::new();
        for _ in 0..64 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => held.push(s),
                Err(_) => return (listener, held),
            }
        }
        panic!("the accept queue did not fill");
    }

    #[tokio::test]
    async fn calls_waiting_for_a_failing_connect_share_its_failure() {
        let (listener, _held) = black_hole();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut backend = Backend::new(&url, 1).unwrap();
        backend.connect_timeout = Duration::from_millis(300);
        let call = || {
            let request = Request::builder()
                .uri("/steward.audit.v1.AuditService/ListEvents")
                .body(Body::empty())
                .unwrap();
            backend.call(request)
        };
        let all = futures_util::future::join_all((0..8).map(|_| call()));
        let results = tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("the calls end");
        for result in &results {
            assert!(
                matches!(result, Err(ForwardError::Connect { .. })),
                "{result:?}"
            );
        }
        assert_eq!(
            backend.attempts.load(Ordering::Relaxed),
            1,
            "eight calls waited for one attempt"
        );
        // A later call tries again.
        assert!(call().await.is_err());
        assert_eq!(backend.attempts.load(Ordering::Relaxed), 2);
    }
}
