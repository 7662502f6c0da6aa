//! Issue 10, audit side, through the public gRPC API: ingest never refuses
//! an event of a committed change for its content, deduplicates on the
//! event id alone, the action catalog lists each action once, free-text
//! comments are erased, and a database administrator cannot rewrite the
//! trail unnoticed (keyed chain, signed checkpoints exported outside the
//! database, offline verification).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use steward_integration_tests::{
    Options, TestApp,
    tamper::{self, Rig},
    violated_fields,
};
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

#[tokio::test]
async fn the_same_event_id_with_another_time_is_stored_once() {
    let app = spawn().await;
    let now = Utc::now();
    let first = event(
        "user.signed_in",
        "dedupe",
        now - chrono::Duration::minutes(5),
    );
    let done = ingest(&app, vec![first.clone()]).await;
    assert_eq!((done.accepted, done.duplicates), (1, 0));
    // Redelivered with another time (even another month: another partition).
    let mut later = first.clone();
    later.occurred_at = Some(ts(now));
    let mut older = first.clone();
    older.occurred_at = Some(ts(now - chrono::Duration::days(40)));
    let again = ingest(&app, vec![later, older]).await;
    assert_eq!((again.accepted, again.duplicates), (0, 2));
    let wide = pb::EventFilter {
        subject_user_id: "dedupe".into(),
        start_time: Some(ts(now - chrono::Duration::days(60))),
        ..Default::default()
    };
    assert_eq!(list(&app, wide).await.len(), 1);
    assert!(verify(&app).await.ok);
}

#[tokio::test]
async fn the_catalog_lists_each_action_once_and_refuses_duplicates_as_a_field() {
    let app = spawn().await;
    let products = app
        .audit()
        .list_action_types(pb::ListActionTypesRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    let mut count: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in &products {
        for a in &p.action_types {
            count.entry(&a.action).or_default().push(&p.product);
        }
    }
    let twice: Vec<_> = count.iter().filter(|(_, p)| p.len() > 1).collect();
    assert!(twice.is_empty(), "listed more than once: {twice:?}");
    assert_eq!(count["user.signed_in"], ["accounts"]);
    assert_eq!(count["api_token.updated"], ["common"]);
    // The reference's spelling is still accepted at ingest.
    let mut common = event("user.signed_in", "reference", Utc::now());
    common.product = "common".into();
    assert_eq!(ingest(&app, vec![common]).await.accepted, 1);

    let service = pb::audit_service_client::AuditServiceClient::with_interceptor(
        app.audit_channel_for_tests(),
        steward_integration_tests::Bearer::new(Some(
            app.token("service:jaicp", &[steward_kit::auth::Role::PlatformService]),
        )),
    );
    let action = |name: &str| pb::ActionType {
        action: name.into(),
        title: "Bot project created".into(),
    };
    let err = service
        .clone()
        .register_action_types(pb::RegisterActionTypesRequest {
            product: "jaicp".into(),
            title: "JAICP".into(),
            action_types: vec![
                action("bot.project.created"),
                action("bot.project.deleted"),
                action("bot.project.created"),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["action_types[2].action"]);
}

#[tokio::test]
async fn erasure_blanks_free_text_comments_and_the_chain_still_verifies() {
    let app = spawn().await;
    let now = Utc::now();
    let mut e = event("user.signed_in", "talkative", now);
    for (k, v) in [
        ("notes", "call me at +1 555 0100, jane@example.com"),
        ("reason", "ticket 42 from jane@example.com"),
        ("device", "Jane's laptop"),
        ("name", "jane-ci"),
    ] {
        e.comments.insert(k.into(), v.into());
    }
    ingest(&app, vec![e]).await;
    app.audit()
        .erase_subject_data(pb::EraseSubjectDataRequest {
            user_id: "talkative".into(),
        })
        .await
        .unwrap();
    let stored = list(
        &app,
        pb::EventFilter {
            subject_user_id: "talkative".into(),
            actions: vec!["user.signed_in".into()],
            ..Default::default()
        },
    )
    .await;
    let got = stored[0].event.as_ref().unwrap();
    assert!(stored[0].personal_data_erased);
    for key in ["notes", "reason", "device", "name"] {
        assert!(!got.comments.contains_key(key), "{key} survived erasure");
    }
    assert_eq!(got.comments["method"], "password", "the rest stays");
    let v = verify(&app).await;
    assert!(v.ok, "{v:?}");
}

#[tokio::test]
async fn a_forged_tombstone_covering_a_deletion_is_detected() {
    let rig = Rig::new().await;
    let t = tamper::forged_tombstone(&rig).await;
    assert!(
        t.detection.by_service && t.detection.offline,
        "{:?}",
        t.detection
    );
    let v = rig.verify().await;
    assert_eq!(v.first_broken_sequence, 3);
    assert!(v.reason.contains("tombstone"), "{}", v.reason);
    let (seq, why) = rig.offline(&t.kept).await.expect("detected offline");
    assert_eq!(seq, 3, "{why}");
}

#[tokio::test]
async fn truncation_and_rollback_of_the_head_are_detected() {
    let rig = Rig::new().await;
    let t = tamper::truncation(&rig).await;
    assert!(t.detection.by_service, "{:?}", t.detection);
    let v = rig.verify().await;
    assert!(v.reason.contains("not signed"), "{}", v.reason);

    // Rolled back to a saved signed head: the database alone cannot tell,
    // the checkpoint kept outside it can.
    let rig = Rig::new().await;
    let t = tamper::rollback(&rig).await;
    assert!(!t.detection.by_service, "a consistent older state");
    let (_, why) = rig.offline(&t.kept).await.expect("detected offline");
    assert!(why.contains("truncated or rolled back"), "{why}");
}

#[tokio::test]
async fn a_forged_erasure_is_detected_and_a_real_one_verifies() {
    let rig = Rig::new().await;
    rig.ingest("real", 2).await;
    rig.audit()
        .erase_subject_data(pb::EraseSubjectDataRequest {
            user_id: "real".into(),
        })
        .await
        .unwrap();
    let v = rig.verify().await;
    assert!(v.ok, "{v:?}");
    let kept = rig.checkpoint().await;
    assert_eq!(rig.offline(&kept).await, None, "erasure keeps verifying");

    let t = tamper::forged_erasure(&rig).await;
    assert!(
        t.detection.by_service && t.detection.offline,
        "{:?}",
        t.detection
    );
    let v = rig.verify().await;
    assert!(v.first_broken_sequence > 0);
    assert!(v.reason.contains("erasure"), "{}", v.reason);
}

#[tokio::test]
async fn a_rewrite_with_every_later_hash_recomputed_is_detected() {
    let rig = Rig::new().await;
    let t = tamper::rewrite(&rig).await;
    assert!(
        t.detection.by_service,
        "the head cannot be signed again without the key"
    );
    assert!(rig.verify().await.reason.contains("not signed"));
    assert!(t.detection.offline, "detected offline");

    // A checkpoint is only as good as its key.
    let mut other = steward_audit::domain::seal::ChainKeys::default();
    other.add(steward_audit::domain::seal::ChainSigner::generate().verifying_key());
    let (_, why) = rig.offline_with(&t.kept, &other).await.expect("refused");
    assert!(why.contains("not signed"), "{why}");
}
