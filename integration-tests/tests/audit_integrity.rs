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

/// The audit service with a chain key file and a checkpoint directory of
/// the test's own (what an operator configures), on the test database.
struct Rig {
    app: TestApp,
    keys: steward_audit::domain::seal::ChainKeys,
    dir: std::path::PathBuf,
    channel: tonic::transport::Channel,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Rig {
    async fn new() -> Self {
        use steward_audit::domain::seal::{ChainKeys, ChainSigner};
        let app = TestApp::spawn_with(Options::default()).await;
        let dir = std::env::temp_dir().join(format!("steward-audit-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let signer = ChainSigner::generate();
        let key_file = dir.join("chain-key");
        std::fs::write(&key_file, signer.to_file_contents()).unwrap();
        let mut token_keys = steward_kit::auth::KeySet::default();
        token_keys.add(app.signer.verifying_key());
        let audit = steward_audit::Application::build(steward_audit::Deps {
            pool: steward_kit::db::pool(
                &app.db.url,
                steward_audit::SCHEMA,
                &steward_kit::db::PoolConfig::default(),
            )
            .await
            .unwrap(),
            security: steward_kit::server::Security {
                policies: steward_kit::auth::PolicyTable::from_descriptor_set(
                    steward_proto::FILE_DESCRIPTOR_SET,
                )
                .unwrap(),
                verifier: steward_kit::auth::TokenVerifier::new(token_keys),
                // The audit service records its own refusals in its chain.
                refusals: None,
            },
            page_tokens: steward_kit::page::PageTokens::new([7; 32]),
            server: steward_kit::server::ServerConfig::default(),
            config: steward_audit::AuditConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                chain_key_file: Some(key_file),
                checkpoint_dir: Some(dir.join("checkpoints")),
                ..Default::default()
            },
        })
        .await
        .unwrap();
        assert_eq!(
            audit.chain_public_key(),
            steward_audit::domain::seal::public_key_base64(&signer.verifying_key())
        );
        let endpoint = format!("http://{}", audit.local_addr());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move { audit.run_until_stopped(stopped).await.unwrap() });
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        // Verifiers get the public key only.
        let mut keys = ChainKeys::default();
        keys.add(signer.verifying_key());
        Self {
            app,
            keys,
            dir,
            channel,
            _stop: stop,
        }
    }

    fn audit(&self) -> steward_integration_tests::AuditClient {
        pb::audit_service_client::AuditServiceClient::with_interceptor(
            self.channel.clone(),
            steward_integration_tests::Bearer::new(Some(self.app.token(
                steward_integration_tests::ADMIN_ID,
                &[steward_kit::auth::Role::UserAdmin],
            ))),
        )
    }

    async fn ingest(&self, subject: &str, n: usize) {
        let events = (0..n)
            .map(|_| event("user.signed_in", subject, Utc::now()))
            .collect();
        pb::audit_ingest_service_client::AuditIngestServiceClient::with_interceptor(
            self.channel.clone(),
            steward_integration_tests::Bearer::new(Some(self.app.token(
                "service:accounts",
                &[steward_kit::auth::Role::PlatformService],
            ))),
        )
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .unwrap();
    }

    async fn verify(&self) -> pb::VerifyChainResponse {
        self.audit()
            .verify_chain(pb::VerifyChainRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// Asks for a checkpoint; returns the exported file (as a monitor
    /// would have copied it away).
    async fn checkpoint(&self) -> std::path::PathBuf {
        let issued = self
            .audit()
            .create_checkpoint(pb::CreateCheckpointRequest {})
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap();
        let exported: Vec<_> = std::fs::read_dir(self.dir.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|text| text == issued.json))
            .collect();
        assert_eq!(exported.len(), 1, "exported to the directory");
        let kept = self.dir.join(format!("kept-{}.json", issued.sequence));
        std::fs::copy(&exported[0], &kept).unwrap();
        kept
    }

    async fn offline(&self, file: &std::path::Path) -> Option<(i64, String)> {
        steward_audit::chain::checkpoint::verify_checkpoint(file, &self.keys, &self.app.db.url)
            .await
            .unwrap()
            .broken
    }

    async fn tamper(&self, sql: &str) {
        use diesel_async::SimpleAsyncConnection;
        self.app
            .db
            .audit()
            .await
            .batch_execute(sql)
            .await
            .expect(sql);
    }
}

#[tokio::test]
async fn a_forged_tombstone_covering_a_deletion_is_detected() {
    let rig = Rig::new().await;
    rig.ingest("t", 6).await;
    let kept = rig.checkpoint().await;
    assert_eq!(rig.offline(&kept).await, None);
    rig.tamper(
        "INSERT INTO chain_tombstones (seq, prev_hash, hash) SELECT seq, prev_hash, hash FROM events WHERE seq = 3;
         DELETE FROM events WHERE seq = 3",
    )
    .await;
    let v = rig.verify().await;
    assert!(!v.ok);
    assert_eq!(v.first_broken_sequence, 3);
    assert!(v.reason.contains("tombstone"), "{}", v.reason);
    let (seq, why) = rig.offline(&kept).await.expect("detected offline");
    assert_eq!(seq, 3, "{why}");
}

#[tokio::test]
async fn truncation_and_rollback_of_the_head_are_detected() {
    let rig = Rig::new().await;
    rig.ingest("r", 5).await;
    // An administrator who planned ahead keeps a copy of the signed head.
    rig.tamper("CREATE TABLE saved_head AS SELECT * FROM chain_head")
        .await;
    rig.ingest("r", 5).await;
    let kept = rig.checkpoint().await;
    assert_eq!(rig.offline(&kept).await, None);

    // The newest five deleted, the head moved back by hand.
    rig.tamper(
        "DELETE FROM events WHERE seq > 5;
         UPDATE chain_head SET seq = 5, hash = (SELECT hash FROM events WHERE seq = 5)",
    )
    .await;
    let v = rig.verify().await;
    assert!(!v.ok);
    assert!(v.reason.contains("not signed"), "{}", v.reason);

    // Rolled back to the saved signed head: the database alone cannot tell,
    // the checkpoint kept outside it can.
    rig.tamper(
        "UPDATE chain_head h SET seq = s.seq, hash = s.hash, signed_at = s.signed_at, signature = s.signature
         FROM saved_head s",
    )
    .await;
    assert!(rig.verify().await.ok, "a consistent older state");
    let (_, why) = rig.offline(&kept).await.expect("detected offline");
    assert!(why.contains("truncated or rolled back"), "{why}");
}

#[tokio::test]
async fn a_forged_erasure_is_detected_and_a_real_one_verifies() {
    let rig = Rig::new().await;
    rig.ingest("real", 2).await;
    rig.ingest("victim", 2).await;
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

    rig.tamper(
        "UPDATE events SET pii_erased = true, client_ip = '', user_agent = '',
            pii_comments = '{}', pii_salt = NULL
         WHERE seq = 3",
    )
    .await;
    let v = rig.verify().await;
    assert!(!v.ok);
    assert_eq!(v.first_broken_sequence, 3);
    assert!(v.reason.contains("erasure"), "{}", v.reason);
    assert_eq!(rig.offline(&kept).await.map(|b| b.0), Some(3));
}

#[tokio::test]
async fn a_rewrite_with_every_later_hash_recomputed_is_detected() {
    use steward_audit::store::events;
    let rig = Rig::new().await;
    rig.ingest("w", 6).await;
    let kept = rig.checkpoint().await;
    // The attacker knows the format: edits event 2 and recomputes the
    // chain from there, and the head.
    let mut conn = rig.app.db.audit().await;
    let rows = events::by_sequence(&mut conn, 1, 100, 100).await.unwrap();
    let mut prev = rows[0].hash.clone();
    let mut sql = String::new();
    for mut row in rows.into_iter().skip(1) {
        if row.seq == 2 {
            row.event.action = "user.signed_out".into();
        }
        let hash = row.event.hash(&row.pii_digest, &prev, row.seq);
        sql.push_str(&format!(
            "UPDATE events SET action = '{}', prev_hash = '\\x{}', hash = '\\x{}' WHERE seq = {};",
            row.event.action,
            hex::encode(&prev),
            hex::encode(hash),
            row.seq
        ));
        prev = hash.to_vec();
    }
    sql.push_str(&format!(
        "UPDATE chain_head SET hash = '\\x{}';",
        hex::encode(&prev)
    ));
    rig.tamper(&sql).await;
    let v = rig.verify().await;
    assert!(!v.ok, "the head cannot be signed again without the key");
    assert!(v.reason.contains("not signed"), "{}", v.reason);
    assert!(rig.offline(&kept).await.is_some(), "detected offline");

    // A checkpoint is only as good as its key.
    let mut other = steward_audit::domain::seal::ChainKeys::default();
    other.add(steward_audit::domain::seal::ChainSigner::generate().verifying_key());
    let report =
        steward_audit::chain::checkpoint::verify_checkpoint(&kept, &other, &rig.app.db.url)
            .await
            .unwrap();
    assert!(report.broken.unwrap().1.contains("not signed"));
}
