//! One trace across gateway -> service -> outbox relay -> audit, received
//! by a real OTLP collector endpoint (the opentelemetry-proto
//! TraceService, served here) from the suite's own exporter.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use steward_gateway::GatewayConfig;
use steward_integration_tests::{ADMIN_ID, Options, TestApp};
use steward_kit::{
    auth::Role,
    telemetry::{self, TelemetryConfig},
};
use steward_proto::accounts as pb;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test]
async fn a_change_through_the_gateway_is_one_trace_to_the_audit_service() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    // This test binary's one subscriber: the suite's own telemetry.
    let guard = telemetry::init(&TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        ..TelemetryConfig::default()
    })
    .expect("telemetry");
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        gateway: Some(GatewayConfig::default()),
        ..Options::default()
    })
    .await;
    let token = app.token(ADMIN_ID, &[Role::UserAdmin]);
    let created = app
        .gw_accounts(Some(token))
        .create_user(pb::CreateUserRequest {
            email: "traced@traces.io".into(),
            ..Default::default()
        })
        .await
        .expect("created")
        .into_inner()
        .user
        .unwrap();
    // Wait for the relay to deliver the event to audit, then for the spans.
    let mut found = None;
    for _ in 0..100 {
        guard.flush();
        let spans = collector.spans.lock().unwrap().clone();
        let root = spans.iter().find(|s| {
            attribute(s, "steward.component").as_deref() == Some("steward-gateway")
                && attribute(s, "rpc.method").is_some_and(|m| m.ends_with("/CreateUser"))
        });
        if let Some(root) = root {
            let trace: Vec<&Span> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id)
                .collect();
            let ingest = trace.iter().any(|s| {
                attribute(s, "steward.component").as_deref() == Some("steward-audit")
                    && attribute(s, "rpc.method").is_some_and(|m| m.ends_with("/IngestEvents"))
            });
            // The relay's span ends after the ingest call it made returns,
            // so it can be exported a flush later than the ingest span.
            let relayed = trace.iter().any(|s| s.name == "outbox.deliver");
            if ingest && relayed {
                found = Some(trace.into_iter().cloned().collect::<Vec<_>>());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trace = found.expect("one trace reaches the audit service's ingest through the relay");
    let components: HashSet<String> = trace
        .iter()
        .filter_map(|s| attribute(s, "steward.component"))
        .collect();
    for component in ["steward-gateway", "steward-accounts", "steward-audit"] {
        assert!(
            components.contains(component),
            "{component} in {components:?}"
        );
    }
    assert!(
        trace.iter().any(|s| s.name == "outbox.deliver"),
        "the relay's hop is in the trace"
    );
    assert!(!created.id.is_empty());
}
