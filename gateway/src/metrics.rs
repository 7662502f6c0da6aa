//! Prometheus metrics of the gateway (on kit's metric types): per method, calls by gRPC status
//! code and a latency histogram; plus counters of what it refuses and of
//! the refusal audit (spooled, shipped, summarised, dropped, spool size). Rendered in the text exposition format at
//! `GET /metrics` on the gateway's port.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use steward_kit::metrics::{Collect, Family, Histogram};

/// The gateway's figures, on kit's metric types; registered with kit's
/// registry, so `[metrics] listen` serves them with every other family.
struct Families {
    calls: Family,
    latency: Histogram,
    refused: Family,
    refusals_spooled: Family,
    refusals_shipped: Family,
    refusals_summarised: Family,
    audit_dropped: Family,
    audit_failed_batches: Family,
    spool_bytes: Family,
}

impl Families {
    fn new() -> Self {
        Self {
            calls: Family::counter(
                "steward_gateway_calls_total",
                "Calls by method and gRPC status code.",
            ),
            latency: Histogram::new(
                "steward_gateway_call_duration_seconds",
                "Call latency by method.",
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            refused: Family::counter(
                "steward_gateway_refused_total",
                "Calls refused at the edge, by reason.",
            ),
            refusals_spooled: Family::counter(
                "steward_gateway_refusals_spooled_total",
                "Refusal audit events written to the local spool.",
            ),
            refusals_shipped: Family::counter(
                "steward_gateway_refusals_shipped_total",
                "Refusal audit events the audit service acknowledged.",
            ),
            refusals_summarised: Family::counter(
                "steward_gateway_refusals_summarised_total",
                "Refusals counted in a summary event rather than recorded one by one (flood, full queue or spool).",
            ),
            audit_dropped: Family::counter(
                "steward_gateway_audit_dropped_total",
                "Refusal audit events lost: refused for good by the audit service, or not spooled at shutdown.",
            ),
            audit_failed_batches: Family::counter(
                "steward_gateway_audit_failed_batches_total",
                "Refusal audit batches the audit service did not take (retried).",
            ),
            spool_bytes: Family::gauge(
                "steward_gateway_refusal_spool_bytes",
                "Bytes of refusal audit events in the local spool.",
            ),
        }
    }
}

impl Collect for Families {
    fn collect(&self, out: &mut String) {
        self.calls.render(out);
        self.latency.render(out);
        for family in [
            &self.refused,
            &self.refusals_spooled,
            &self.refusals_shipped,
            &self.refusals_summarised,
            &self.audit_dropped,
            &self.audit_failed_batches,
            &self.spool_bytes,
        ] {
            family.render(out);
        }
    }
}

/// One gateway's metrics (tests read them per instance).
#[derive(Clone)]
pub struct Metrics {
    families: Arc<Families>,
    /// Keeps the registration alive as long as a clone is.
    _registered: Arc<dyn Collect>,
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Arc::new(Families::new());
        let registered: Arc<dyn Collect> = families.clone();
        steward_kit::metrics::register(&registered);
        Self {
            families,
            _registered: registered,
        }
    }
}

impl Metrics {
    pub fn record_call(&self, method: &str, code: tonic::Code, seconds: f64) {
        let f = &self.families;
        f.calls
            .inc(&format!("method=\"{method}\",code=\"{code:?}\""));
        f.latency.observe(&format!("method=\"{method}\""), seconds);
    }

    pub fn record_refusal(&self, reason: &str) {
        self.families.refused.inc(&format!("reason=\"{reason}\""));
    }

    /// Refusal events the audit trail will not get at all.
    pub fn record_audit_dropped(&self, n: u64) {
        self.families.audit_dropped.add("", n);
    }

    pub fn record_audit_batch_failed(&self) {
        self.families.audit_failed_batches.inc("");
    }

    /// Refusal events written (and synced) to the spool.
    pub fn record_refusals_spooled(&self, n: u64) {
        self.families.refusals_spooled.add("", n);
    }

    /// Refusal events the audit service acknowledged.
    pub fn record_refusals_shipped(&self, n: u64) {
        self.families.refusals_shipped.add("", n);
    }

    /// Refusals counted in a summary event instead of recorded one by one.
    pub fn record_refusals_summarised(&self, n: u64) {
        self.families.refusals_summarised.add("", n);
    }

    pub fn set_spool_bytes(&self, bytes: u64) {
        self.families.spool_bytes.set("", bytes as f64);
    }

    pub fn audit_dropped(&self) -> u64 {
        self.families.audit_dropped.get("") as u64
    }

    pub fn refusals_spooled(&self) -> u64 {
        self.families.refusals_spooled.get("") as u64
    }

    pub fn refusals_shipped(&self) -> u64 {
        self.families.refusals_shipped.get("") as u64
    }

    pub fn refusals_summarised(&self) -> u64 {
        self.families.refusals_summarised.get("") as u64
    }

    pub fn spool_bytes(&self) -> u64 {
        self.families.spool_bytes.get("") as u64
    }

    /// This gateway's figures in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.families.collect(&mut out);
        out
    }
}

/// The gRPC status of a response whose headers carry it (trailers-only
/// responses: errors), if any.
pub fn header_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
}

pin_project_lite::pin_project! {
    /// A response body that records the call when it ends: the status code
    /// of a streamed or unary success is only known from the trailers.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
        code: Option<tonic::Code>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                // Ended without trailers: the client went away.
                pending.finish(this.code.unwrap_or(tonic::Code::Cancelled));
            }
        }
    }
}

pub struct Pending {
    pub metrics: Metrics,
    pub method: String,
    pub started: Instant,
}

impl Pending {
    fn finish(self, code: tonic::Code) {
        self.metrics
            .record_call(&self.method, code, self.started.elapsed().as_secs_f64());
    }
}

impl<B> MeteredBody<B> {
    pub fn new(inner: B, pending: Pending, code: Option<tonic::Code>) -> Self {
        Self {
            inner,
            pending: Some(pending),
            code,
        }
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(header_code) {
                    *this.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                *this.code = Some(tonic::Code::Unavailable);
            }
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish(this.code.unwrap_or(tonic::Code::Unknown));
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.record_call("/a.B/C", tonic::Code::Ok, 0.003);
        m.record_call("/a.B/C", tonic::Code::PermissionDenied, 0.2);
        m.record_refusal("ROLE_REQUIRED");
        m.record_audit_dropped(1);
        m.record_refusals_spooled(3);
        m.set_spool_bytes(4096);
        let text = m.render();
        assert!(text.contains("steward_gateway_calls_total{method=\"/a.B/C\",code=\"Ok\"} 1"));
        assert!(text.contains(
            "steward_gateway_calls_total{method=\"/a.B/C\",code=\"PermissionDenied\"} 1"
        ));
        assert!(text.contains(
            "steward_gateway_call_duration_seconds_bucket{method=\"/a.B/C\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "steward_gateway_call_duration_seconds_bucket{method=\"/a.B/C\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("steward_gateway_refused_total{reason=\"ROLE_REQUIRED\"} 1"));
        assert!(text.contains("steward_gateway_audit_dropped_total 1"));
        assert!(text.contains("steward_gateway_refusals_spooled_total 3"));
        assert!(text.contains("# TYPE steward_gateway_refusal_spool_bytes gauge"));
        assert!(text.contains("steward_gateway_refusal_spool_bytes 4096"));
    }
}

/// Answers `GET /metrics` with [`Metrics::render`]; passes the rest on.
#[derive(Clone)]
pub struct MetricsEndpointLayer {
    metrics: Metrics,
}

impl MetricsEndpointLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsEndpointLayer {
    type Service = MetricsEndpoint<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsEndpoint {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsEndpoint<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> tower::Service<http::Request<B>> for MetricsEndpoint<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Self::Response, Self::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.method() == http::Method::GET && req.uri().path() == "/metrics" {
            let mut response = http::Response::new(tonic::body::Body::new(self.metrics.render()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return futures_util::future::Either::Left(std::future::ready(Ok(response)));
        }
        futures_util::future::Either::Right(self.inner.call(req))
    }
}
