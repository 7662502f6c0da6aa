//! Request context: who is on the other end of the wire, per request.
//!
//! Read from metadata by [`ContextLayer`] and stored in the request's
//! extensions, where handlers and the audit writer find it.

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use ipnet::IpNet;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};

/// Metadata keys Steward reads and forwards.
pub mod keys {
    pub const REQUEST_ID: &str = "x-request-id";
    /// Set by the gateway (a trusted proxy) to the end client's address.
    pub const CLIENT_IP: &str = "x-steward-client-ip";
    pub const FORWARDED_FOR: &str = "x-forwarded-for";
    pub const USER_AGENT: &str = "user-agent";
    /// Set by the gateway to the end client's user agent (a proxy's HTTP
    /// client appends its own to `user-agent`).
    pub const CLIENT_USER_AGENT: &str = "x-steward-client-user-agent";
    pub const TRACEPARENT: &str = "traceparent";
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: String,
    pub user_agent: String,
    pub traceparent: String,
}

impl RequestContext {
    /// The W3C trace id: from the recorded span when tracing exports, else
    /// from the incoming `traceparent`.
    pub fn trace_id(&self) -> String {
        crate::telemetry::current_trace_id().unwrap_or_else(|| {
            self.traceparent
                .split('-')
                .nth(1)
                .filter(|id| id.len() == 32)
                .unwrap_or_default()
                .to_owned()
        })
    }

    /// Reads the context of a request from its headers and peer address.
    pub fn from_http(
        headers: &http::HeaderMap,
        peer: Option<IpAddr>,
        trusted_proxies: &[IpNet],
    ) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let peer_trusted = peer.is_some_and(|ip| trusted_proxies.iter().any(|n| n.contains(&ip)));
        // Only a trusted proxy may tell us who the client is; anyone else
        // could forge the header.
        let forwarded = peer_trusted
            .then(|| {
                header(keys::CLIENT_IP).or_else(|| {
                    header(keys::FORWARDED_FOR)
                        .and_then(|v| v.split(',').next().map(|s| s.trim().to_owned()))
                })
            })
            .flatten()
            .filter(|ip| ip.parse::<IpAddr>().is_ok());
        let request_id = header(keys::REQUEST_ID)
            .filter(|id| id.len() <= 128)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Self {
            request_id,
            client_ip: forwarded
                .or_else(|| peer.map(|ip| ip.to_string()))
                .unwrap_or_default(),
            user_agent: peer_trusted
                .then(|| header(keys::CLIENT_USER_AGENT))
                .flatten()
                .or_else(|| header(keys::USER_AGENT))
                .map(|ua| ua.chars().take(512).collect())
                .unwrap_or_default(),
            traceparent: header(keys::TRACEPARENT).unwrap_or_default(),
        }
    }

    /// The context of a request, or an empty one (in-process calls).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_default()
    }
}

/// Tower layer that attaches a [`RequestContext`] to every request.
#[derive(Clone)]
pub struct ContextLayer {
    trusted_proxies: Arc<[IpNet]>,
}

impl ContextLayer {
    pub fn new(trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            trusted_proxies: trusted_proxies.into(),
        }
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ContextService {
            inner,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ContextService<S> {
    inner: S,
    trusted_proxies: Arc<[IpNet]>,
}

impl<S, B> Service<http::Request<B>> for ContextService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip());
        let context = RequestContext::from_http(req.headers(), peer, &self.trusted_proxies);
        tracing::Span::current().record("request_id", context.request_id.as_str());
        req.extensions_mut().insert(context);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_ip_only_from_trusted_proxy() {
        let h = headers(&[(keys::CLIENT_IP, "203.0.113.9"), (keys::REQUEST_ID, "r-1")]);
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let from_proxy = RequestContext::from_http(&h, Some("10.1.2.3".parse().unwrap()), &trusted);
        assert_eq!(from_proxy.client_ip, "203.0.113.9");
        assert_eq!(from_proxy.request_id, "r-1");
        let from_stranger =
            RequestContext::from_http(&h, Some("198.51.100.7".parse().unwrap()), &trusted);
        assert_eq!(from_stranger.client_ip, "198.51.100.7");
    }

    #[test]
    fn request_id_generated_and_trace_id_from_traceparent() {
        let h = headers(&[(
            keys::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        let ctx = RequestContext::from_http(&h, None, &[]);
        assert!(uuid::Uuid::parse_str(&ctx.request_id).is_ok());
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
