//! Issue 10, audit side, through the public gRPC API: ingest never refuses
//! an event of a committed change for its content, deduplicates on the
//! event id alone, the action catalog lists each action once, free-text
//! comments are erased, and a database administrator cannot rewrite the
//! trail unnoticed (keyed chain, signed checkpoints exported outside the
//! database, offline verification).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use steward_integration_tests::{Options, TestApp, violated_fields};
use steward_proto::{
    audit::{self as pb, Category},
    common::{self, PageRequest},
};
use tonic::Code;

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        with_audit: true,
        ..Options::default()
    })
    .await
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn event(action: &str, subject: &str, at: DateTime<Utc>) -> pb::AuditEvent {
    let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap();
    pb::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(ts(at)),
        product: "accounts".into(),
        action: action.into(),
        category: Category::Public as i32,
        actor_user_id: subject.into(),
        subject_user_id: subject.into(),
        client_ip: "203.0.113.7".into(),
        user_agent: "curl/8".into(),
        result: common::Result::Success as i32,
        comments: HashMap::from([("method".to_string(), "password".to_string())]),
        source: "test".into(),
        ..Default::default()
    }
}

async fn ingest(app: &TestApp, events: Vec<pb::AuditEvent>) -> pb::IngestEventsResponse {
    app.ingest()
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .unwrap()
        .into_inner()
}

async fn list(app: &TestApp, filter: pb::EventFilter) -> Vec<pb::StoredEvent> {
    app.audit()
        .list_events(pb::ListEventsRequest {
            filter: Some(filter),
            page: Some(PageRequest {
                page_size: 500,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

fn subject(user: &str) -> pb::EventFilter {
    pb::EventFilter {
        subject_user_id: user.into(),
        ..Default::default()
    }
}

async fn verify(app: &TestApp) -> pb::VerifyChainResponse {
    app.audit()
        .verify_chain(pb::VerifyChainRequest::default())
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn ingest_conforms_content_instead_of_refusing_it() {
    let app = spawn().await;
    let now = Utc::now();
    // What the services' fault tests sent: control characters in notes,
    // reasons, devices and token names, a 204-byte actor, a 10 KB error.
    let mut e = event("user.signed_in", "conformed", now);
    e.actor_user_id = "a".repeat(204);
    e.error_message = "e".repeat(10_000);
    e.user_agent = "agent\u{7}".into();
    e.comments.insert("notes".into(), "x\u{1b}[2K".into());
    e.comments.insert("device".into(), "laptop\u{7}".into());
    e.comments.insert("name".into(), "ci\u{1}token".into());
    e.comments.insert("bell\u{7}key".into(), "v".into());
    e.comments.insert(String::new(), "empty key".into());
    let done = ingest(&app, vec![e]).await;
    assert_eq!(done.accepted, 1);
    let stored = list(&app, subject("conformed")).await;
    let got = stored[0].event.as_ref().unwrap();
    assert!(got.actor_user_id.len() <= 128);
    assert!(got.actor_user_id.ends_with("[truncated]"));
    assert!(got.error_message.len() <= 4096);
    assert_eq!(got.user_agent, "agent\\u{7}");
    assert_eq!(got.comments["notes"], "x\\u{1b}[2K");
    assert_eq!(got.comments["device"], "laptop\\u{7}");
    assert_eq!(got.comments["name"], "ci\\u{1}token");
    assert_eq!(got.comments["bell\\u{7}key"], "v");
    assert_eq!(got.comments["_"], "empty key");
    assert!(verify(&app).await.ok);

    // Structure is still the emitter's to get right.
    let mut bad = event("user.signed_in", "conformed", now);
    bad.event_id = "nope".into();
    let mut unknown = event("user.teleported", "conformed", now);
    unknown.actor_user_id = "b".repeat(300);
    let err = app
        .ingest()
        .ingest_events(pb::IngestEventsRequest {
            events: vec![bad, unknown],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        ["events[0].event_id", "events[1].action"]
    );
}
