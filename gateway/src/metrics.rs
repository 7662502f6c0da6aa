//! Prometheus-style metrics of the gateway: per method, calls by gRPC status
//! code and a latency histogram; plus counters of what it refuses and of
//! the refusal audit (spooled, shipped, summarised, dropped, spool size). Rendered in the text exposition format at
//! `GET /metrics` on the gateway's port.

use std::{
    collections::BTreeMap,
    fmt::Write,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct State {
    /// (method, grpc code name) -> calls.
    calls: BTreeMap<(String, String), u64>,
    latency: BTreeMap<String, Histogram>,
    /// reason -> refusals.
    refused: BTreeMap<String, u64>,
    audit_dropped: u64,
    audit_failed_batches: u64,
    refusals_spooled: u64,
    refusals_shipped: u64,
    refusals_summarised: u64,
    spool_bytes: u64,
}

#[derive(Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl Metrics {
    pub fn record_call(&self, method: &str, code: tonic::Code, seconds: f64) {
        let mut state = self.state.lock().expect("metrics lock");
        *state
            .calls
            .entry((method.to_owned(), format!("{code:?}")))
            .or_default() += 1;
        let histogram = state.latency.entry(method.to_owned()).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[i] += 1;
            }
        }
    }

    pub fn record_refusal(&self, reason: &str) {
        *self
            .state
            .lock()
            .expect("metrics lock")
            .refused
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Refusal events the audit trail will not get at all.
    pub fn record_audit_dropped(&self, n: u64) {
        self.state().audit_dropped += n;
    }

    pub fn record_audit_batch_failed(&self) {
        self.state().audit_failed_batches += 1;
    }

    /// Refusal events written (and synced) to the spool.
    pub fn record_refusals_spooled(&self, n: u64) {
        self.state().refusals_spooled += n;
    }

    /// Refusal events the audit service acknowledged.
    pub fn record_refusals_shipped(&self, n: u64) {
        self.state().refusals_shipped += n;
    }

    /// Refusals counted in a summary event instead of recorded one by one.
    pub fn record_refusals_summarised(&self, n: u64) {
        self.state().refusals_summarised += n;
    }

    pub fn set_spool_bytes(&self, bytes: u64) {
        self.state().spool_bytes = bytes;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("metrics lock")
    }

    pub fn audit_dropped(&self) -> u64 {
        self.state().audit_dropped
    }

    pub fn refusals_spooled(&self) -> u64 {
        self.state().refusals_spooled
    }

    pub fn refusals_shipped(&self) -> u64 {
        self.state().refusals_shipped
    }

    pub fn refusals_summarised(&self) -> u64 {
        self.state().refusals_summarised
    }

    pub fn spool_bytes(&self) -> u64 {
        self.state().spool_bytes
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let state = self.state.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP steward_gateway_calls_total Calls by method and gRPC status code.\n");
        out.push_str("# TYPE steward_gateway_calls_total counter\n");
        for ((method, code), n) in &state.calls {
            let _ = writeln!(
                out,
                "steward_gateway_calls_total{{method=\"{method}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP steward_gateway_call_duration_seconds Call latency by method.\n");
        out.push_str("# TYPE steward_gateway_call_duration_seconds histogram\n");
        for (method, h) in &state.latency {
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "steward_gateway_call_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "steward_gateway_call_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "steward_gateway_call_duration_seconds_sum{{method=\"{method}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "steward_gateway_call_duration_seconds_count{{method=\"{method}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP steward_gateway_refused_total Calls refused at the edge, by reason.\n",
        );
        out.push_str("# TYPE steward_gateway_refused_total counter\n");
        for (reason, n) in &state.refused {
            let _ = writeln!(
                out,
                "steward_gateway_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        for (name, kind, help, value) in [
            (
                "steward_gateway_refusals_spooled_total",
                "counter",
                "Refusal audit events written to the local spool.",
                state.refusals_spooled,
            ),
            (
                "steward_gateway_refusals_shipped_total",
                "counter",
                "Refusal audit events the audit service acknowledged.",
                state.refusals_shipped,
            ),
            (
                "steward_gateway_refusals_summarised_total",
                "counter",
                "Refusals counted in a summary event rather than recorded one by one (flood, full queue or spool).",
                state.refusals_summarised,
            ),
            (
                "steward_gateway_audit_dropped_total",
                "counter",
                "Refusal audit events lost: refused for good by the audit service, or not spooled at shutdown.",
                state.audit_dropped,
            ),
            (
                "steward_gateway_audit_failed_batches_total",
                "counter",
                "Refusal audit batches the audit service did not take (retried).",
                state.audit_failed_batches,
            ),
            (
                "steward_gateway_refusal_spool_bytes",
                "gauge",
                "Bytes of refusal audit events in the local spool.",
                state.spool_bytes,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
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
