//! Tracing set-up and W3C trace-context propagation through tonic metadata.
//!
//! Logs go to stderr as JSON (production) or pretty text (a terminal); spans
//! are exported over OTLP when an endpoint is configured. The filter comes
//! from `STEWARD_LOG` (or `RUST_LOG`), default `info`.
//!
//! Components name themselves: the root span of every call carries
//! `steward.component` (`steward-accounts`, `steward-gateway`, ...), and a
//! process running one component (`steward serve <component>`) exports under
//! `service.name` = that name. `steward up` runs every component in one
//! process with one tracer provider, so its resource is `steward` and the
//! `steward.component` attribute of the root spans tells the components
//! apart. `OTEL_SERVICE_NAME`, when set, wins over both.

use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Pretty,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// OTLP/gRPC collector, e.g. `http://localhost:4317`; none = no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans: [`component_service_name`] of the
    /// component a process runs; default [`DEFAULT_SERVICE_NAME`].
    pub service_name: Option<String>,
}

/// `service.name` of a process running several components (`steward up`).
pub const DEFAULT_SERVICE_NAME: &str = "steward";

/// How a component names itself in traces: `accounts` -> `steward-accounts`.
pub fn component_service_name(component: &str) -> String {
    format!("{DEFAULT_SERVICE_NAME}-{component}")
}

/// The `service.name` to export under: `OTEL_SERVICE_NAME` (the OpenTelemetry
/// convention), else the configured name, else [`DEFAULT_SERVICE_NAME`].
fn resolved_service_name(configured: Option<&str>, env: Option<String>) -> String {
    env.filter(|name| !name.trim().is_empty())
        .or_else(|| configured.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
}

/// Flushes exported spans when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans ended so far (tests, before reading a collector).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(err) = provider.force_flush()
        {
            eprintln!("telemetry flush failed: {err}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry shutdown failed: {err}");
        }
    }
}

/// Installs the global subscriber and propagator. Call once per process.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_env("STEWARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));

    let (otel_layer, provider) = match &config.otlp_endpoint {
        Some(endpoint) if !endpoint.is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| TelemetryError(format!("otlp exporter: {e}")))?;
            let name = resolved_service_name(
                config.service_name.as_deref(),
                std::env::var("OTEL_SERVICE_NAME").ok(),
            );
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(name.clone()).build())
                .build();
            let tracer = provider.tracer(name);
            global::set_tracer_provider(provider.clone());
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        _ => (None, None),
    };

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| TelemetryError(format!("tracing subscriber: {e}")))?;
    Ok(TelemetryGuard { provider })
}

#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Makes `span` a child of the trace context carried in the request headers.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    // A span that is already closed or disabled cannot take a parent; that is
    // harmless, the request is still served.
    let _ = span.set_parent(parent);
}

/// The current span's W3C `traceparent`, when it belongs to a trace (the
/// OpenTelemetry layer is installed and the span is sampled).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` continue the trace of `traceparent` (an outbox row's).
pub fn set_parent_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}

/// Adds a link from `span` to the trace of `traceparent` (the other rows of
/// a batch delivered under the first row's trace).
pub fn link_traceparent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = global::get_text_map_propagator(|p| p.extract(&carrier));
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Writes the current span's trace context into outgoing metadata.
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

/// The current trace id as 32 hex digits, when a real trace is recorded.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Writes the current span's trace context into outgoing HTTP headers when
/// a trace is recorded; otherwise leaves an incoming `traceparent` as it is,
/// so the trace still crosses a hop that does not export.
pub fn inject_current_headers(headers: &mut http::HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    let mut metadata = tonic::metadata::MetadataMap::from_headers(std::mem::take(headers));
    global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(&mut metadata))
    });
    *headers = metadata.into_headers();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_component_names_itself() {
        assert_eq!(component_service_name("gateway"), "steward-gateway");
        assert_eq!(
            resolved_service_name(Some("steward-billing"), None),
            "steward-billing"
        );
        assert_eq!(resolved_service_name(None, None), "steward");
        assert_eq!(
            resolved_service_name(Some("steward-billing"), Some("custom".into())),
            "custom"
        );
        assert_eq!(
            resolved_service_name(Some("steward-audit"), Some(" ".into())),
            "steward-audit"
        );
    }
}
