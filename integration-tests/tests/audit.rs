//! The audit service through its gRPC API: ingest, queries, chain,
//! erasure, activity history, export, catalog, retention.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use steward_integration_tests::{Options, TestApp, violated_fields};
use steward_kit::auth::Role;
use steward_proto::{
    accounts as apb,
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

/// An event as a producer sends it (microsecond times, as stored).
fn event(action: &str, subject: &str, at: DateTime<Utc>) -> pb::AuditEvent {
    let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap();
    pb::AuditEvent {
        duration: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1000,
        }),
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(ts(at)),
        product: "common".into(),
        action: action.into(),
        category: Category::Public as i32,
        actor_user_id: subject.into(),
        subject_user_id: subject.into(),
        client_ip: "203.0.113.7".into(),
        user_agent: "Mozilla/5.0 (X11; Linux)".into(),
        result: common::Result::Success as i32,
        comments: HashMap::from([
            ("method".to_string(), "password".to_string()),
            ("email".to_string(), format!("{subject}@example.com")),
        ]),
        request_id: "req-1".into(),
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
                page_size: 1000,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn verify(app: &TestApp) -> pb::VerifyChainResponse {
    app.audit()
        .verify_chain(pb::VerifyChainRequest::default())
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn ingest_is_idempotent_and_events_are_queryable() {
    let app = spawn().await;
    let now = Utc::now();
    let batch = vec![
        event("user.signed_in", "u1", now - chrono::Duration::minutes(3)),
        event("user.signed_out", "u1", now - chrono::Duration::minutes(2)),
        event("user.signed_in", "u2", now - chrono::Duration::minutes(1)),
    ];
    let first = ingest(&app, batch.clone()).await;
    assert_eq!((first.accepted, first.duplicates), (3, 0));
    // Redelivery (and a duplicate inside one batch) is acknowledged, stored once.
    let mut again = batch.clone();
    again.push(batch[0].clone());
    let second = ingest(&app, again).await;
    assert_eq!((second.accepted, second.duplicates), (0, 4));

    let u1 = list(
        &app,
        pb::EventFilter {
            subject_user_id: "u1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(u1.len(), 2);
    assert_eq!(
        u1[0].event.as_ref().unwrap().action,
        "user.signed_out",
        "newest first"
    );
    let stored = u1[1].event.as_ref().unwrap();
    assert_eq!(stored, &batch[0], "stored exactly as sent");

    let got = app
        .audit()
        .get_event(pb::GetEventRequest {
            event_id: batch[2].event_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(got.event.unwrap().subject_user_id, "u2");
    assert_eq!(got.sequence, 3);

    let signins = list(
        &app,
        pb::EventFilter {
            actions: vec!["user.signed_in".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(signins.len(), 2);
    let err = app
        .audit()
        .get_event(pb::GetEventRequest {
            event_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(verify(&app).await.ok);
}

#[tokio::test]
async fn bad_events_are_refused_with_their_index_and_nothing_is_stored() {
    let app = spawn().await;
    let now = Utc::now();
    let mut unknown = event("user.teleported", "u1", now);
    unknown.product = "common".into();
    let mut future = event("user.signed_in", "u1", now + chrono::Duration::days(1));
    future.event_id = "not-a-uuid".into();
    let mut uncategorised = event("user.signed_in", "u1", now);
    uncategorised.category = 0;
    let err = app
        .ingest()
        .ingest_events(pb::IngestEventsRequest {
            events: vec![
                event("user.signed_in", "ok", now),
                unknown,
                future,
                uncategorised,
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        [
            "events[1].action",
            "events[2].event_id",
            "events[2].occurred_at",
            "events[3].category"
        ]
    );
    assert!(
        list(&app, pb::EventFilter::default()).await.is_empty(),
        "atomic: nothing stored"
    );

    // Only platform services ingest.
    let err = pb::audit_ingest_service_client::AuditIngestServiceClient::with_interceptor(
        app.audit_channel_for_tests(),
        steward_integration_tests::Bearer::new(Some(app.token("admin", &[Role::UserAdmin]))),
    )
    .ingest_events(pb::IngestEventsRequest {
        events: vec![event("user.signed_in", "u", now)],
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn filters_and_pages() {
    let app = spawn().await;
    let now = Utc::now();
    let mut events = Vec::new();
    for i in 0..25 {
        let mut e = event(
            "user.profile.updated",
            "pager",
            now - chrono::Duration::seconds(100 - i),
        );
        if i % 5 == 0 {
            e.impersonator_user_id = "admin-9".into();
            e.impersonation_session_id = "sess-1".into();
            e.category = Category::Admin as i32;
        }
        if i % 7 == 0 {
            e.result = common::Result::Failure as i32;
            e.error_message = "denied".into();
            e.token_id = "tok-1".into();
        }
        events.push(e);
    }
    ingest(&app, events).await;
    let impersonated = list(
        &app,
        pb::EventFilter {
            impersonator_user_id: "admin-9".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(impersonated.len(), 5);
    let session = list(
        &app,
        pb::EventFilter {
            impersonation_session_id: "sess-1".into(),
            category: Category::Admin as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(session.len(), 5);
    let failures = list(
        &app,
        pb::EventFilter {
            result: common::Result::Failure as i32,
            token_id: "tok-1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failures.len(), 4);
    let by_ip = list(
        &app,
        pb::EventFilter {
            client_ip: "203.0.113.7".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_ip.len(), 25);
    let window = list(
        &app,
        pb::EventFilter {
            start_time: Some(ts(now - chrono::Duration::seconds(90))),
            end_time: Some(ts(now - chrono::Duration::seconds(80))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(window.len(), 10);

    // Pages of 10, newest first, no overlap.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit()
            .list_events(pb::ListEventsRequest {
                filter: Some(pb::EventFilter {
                    subject_user_id: "pager".into(),
                    ..Default::default()
                }),
                page: Some(PageRequest {
                    page_size: 10,
                    page_token: token.clone(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.events.iter().map(|e| e.sequence));
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<i64>>());

    let err = app
        .audit()
        .list_events(pb::ListEventsRequest {
            filter: Some(pb::EventFilter {
                start_time: Some(ts(now - chrono::Duration::days(400))),
                ..Default::default()
            }),
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["filter.start_time"]);
}

#[tokio::test]
async fn a_user_reads_only_their_own_log() {
    let app = spawn().await;
    let now = Utc::now();
    ingest(
        &app,
        vec![
            event("user.signed_in", "alice", now),
            event("user.signed_in", "bob", now),
        ],
    )
    .await;
    let mut alice = app.audit_as(Some(app.token("alice", &[Role::User])));
    let own = alice
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].event.as_ref().unwrap().subject_user_id, "alice");
    let err = alice
        .list_events(pb::ListEventsRequest {
            filter: Some(pb::EventFilter {
                subject_user_id: "bob".into(),
                ..Default::default()
            }),
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = alice
        .get_event(pb::GetEventRequest {
            event_id: own[0].event.as_ref().unwrap().event_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

async fn tamper(app: &TestApp, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    app.db.audit().await.batch_execute(sql).await.expect(sql);
}

#[tokio::test]
async fn verify_chain_catches_edits_and_deletions() {
    let app = spawn().await;
    let now = Utc::now();
    let events: Vec<_> = (0..6)
        .map(|i| event("user.signed_in", &format!("c{i}"), now))
        .collect();
    ingest(&app, events).await;
    let ok = verify(&app).await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.events_checked, 6);

    tamper(
        &app,
        "UPDATE events SET action = 'user.signed_out' WHERE seq = 3",
    )
    .await;
    let broken = verify(&app).await;
    assert!(!broken.ok);
    assert_eq!(broken.first_broken_sequence, 3);
    tamper(
        &app,
        "UPDATE events SET action = 'user.signed_in' WHERE seq = 3",
    )
    .await;
    assert!(verify(&app).await.ok, "restored");

    tamper(
        &app,
        "UPDATE events SET client_ip = '198.51.100.1' WHERE seq = 2",
    )
    .await;
    let broken = verify(&app).await;
    assert_eq!(broken.first_broken_sequence, 2);
    assert!(broken.reason.contains("personal data"), "{}", broken.reason);
    tamper(
        &app,
        "UPDATE events SET client_ip = '203.0.113.7' WHERE seq = 2",
    )
    .await;

    tamper(&app, "DELETE FROM events WHERE seq = 4").await;
    let broken = verify(&app).await;
    assert_eq!(broken.first_broken_sequence, 5);

    tamper(&app, "DELETE FROM events WHERE seq = 6").await;
    let range = app
        .audit()
        .verify_chain(pb::VerifyChainRequest {
            from_sequence: 1,
            to_sequence: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(range.ok, "a range before the damage verifies");
}

#[tokio::test]
async fn erasure_blanks_personal_data_and_the_chain_still_verifies() {
    let app = spawn().await;
    let now = Utc::now();
    ingest(
        &app,
        vec![
            event("user.signed_in", "erin", now),
            event("user.signed_in", "frank", now),
        ],
    )
    .await;
    let erased = app
        .audit()
        .erase_subject_data(pb::EraseSubjectDataRequest {
            user_id: "erin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.events_erased, 1);
    let erin = list(
        &app,
        pb::EventFilter {
            subject_user_id: "erin".into(),
            ..Default::default()
        },
    )
    .await;
    let signed_in = erin
        .iter()
        .find(|e| e.event.as_ref().unwrap().action == "user.signed_in")
        .unwrap();
    let ev = signed_in.event.as_ref().unwrap();
    assert!(signed_in.personal_data_erased);
    assert_eq!(ev.client_ip, "");
    assert_eq!(ev.user_agent, "");
    assert!(!ev.comments.contains_key("email"));
    assert_eq!(
        ev.comments["method"], "password",
        "non-personal comments stay"
    );
    // The erasure is itself audited, in the chain.
    assert!(
        erin.iter()
            .any(|e| e.event.as_ref().unwrap().action == "audit.subject_data.erased")
    );
    let frank = list(
        &app,
        pb::EventFilter {
            subject_user_id: "frank".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(frank[0].event.as_ref().unwrap().client_ip, "203.0.113.7");
    let v = verify(&app).await;
    assert!(v.ok, "{v:?}");
}

#[tokio::test]
async fn accounts_events_arrive_and_erasure_in_accounts_erases_here() {
    let app = spawn().await;
    let user = app.create_user("relay@audit.io").await;
    app.admin()
        .batch_delete_personal_data(apb::BatchDeletePersonalDataRequest {
            request_id: "erase-1".into(),
            user_ids: vec![user.id.clone()],
        })
        .await
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..100 {
        events = list(
            &app,
            pb::EventFilter {
                subject_user_id: user.id.clone(),
                ..Default::default()
            },
        )
        .await;
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let actions: Vec<_> = events
        .iter()
        .map(|e| e.event.as_ref().unwrap().action.clone())
        .collect();
    assert_eq!(actions, ["user.personal_data.deleted", "user.created"]);
    let created = events[1].event.as_ref().unwrap();
    assert_eq!(created.category, Category::Admin as i32);
    assert!(
        events[1].personal_data_erased,
        "accounts' erasure erased the audit copy"
    );
    assert!(!created.comments.contains_key("email"));
    assert!(verify(&app).await.ok);
}

#[tokio::test]
async fn nothing_is_lost_while_audit_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut app = TestApp::spawn_with(Options {
        audit_listen: Some(port),
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create_user(&format!("down{i}@audit.io")).await.id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.start_audit(port).await;
    let mut stored = Vec::new();
    for _ in 0..200 {
        stored = list(
            &app,
            pb::EventFilter {
                actions: vec!["user.created".into()],
                ..Default::default()
            },
        )
        .await;
        if stored.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut subjects: Vec<_> = stored
        .iter()
        .map(|e| e.event.as_ref().unwrap().subject_user_id.clone())
        .collect();
    subjects.sort();
    ids.sort();
    assert_eq!(subjects, ids);
}

#[tokio::test]
async fn activity_history_counts_actions_per_user() {
    let app = spawn().await;
    let day = |d: i64| Utc::now() - chrono::Duration::days(d);
    let mut events = Vec::new();
    for (user, n, days_ago) in [
        ("busy", 5, 1),
        ("busy", 2, 3),
        ("calm", 1, 1),
        ("old", 9, 40),
    ] {
        for _ in 0..n {
            events.push(event("user.profile.updated", user, day(days_ago)));
        }
    }
    ingest(&app, events).await;
    let range = |start: i64, end: i64| pb::GetActivityHistoryRequest {
        start_date: day(start).format("%Y-%m-%d").to_string(),
        end_date: day(end).format("%Y-%m-%d").to_string(),
        user_ids: vec![],
        page: None,
        order_by: pb::ActivityOrder::ActionsDesc as i32,
    };
    let history = app
        .audit()
        .get_activity_history(range(30, 0))
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = history
        .activities
        .iter()
        .map(|a| (a.user_id.as_str(), a.actions_count))
        .collect();
    assert_eq!(rows, [("busy", 7), ("calm", 1)]);
    let narrow = app
        .audit()
        .get_activity_history(range(2, 0))
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = narrow
        .activities
        .iter()
        .map(|a| (a.user_id.as_str(), a.actions_count))
        .collect();
    assert_eq!(rows, [("busy", 5), ("calm", 1)]);
    let only = app
        .audit()
        .get_activity_history(pb::GetActivityHistoryRequest {
            user_ids: vec!["calm".into()],
            ..range(60, 0)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only.activities.len(), 1);
    // Pages.
    let first = app
        .audit()
        .get_activity_history(pb::GetActivityHistoryRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
            ..range(60, 0)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first
            .activities
            .iter()
            .map(|a| a.user_id.as_str())
            .collect::<Vec<_>>(),
        ["old", "busy"]
    );
    let second = app
        .audit()
        .get_activity_history(pb::GetActivityHistoryRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: first.page.unwrap().next_page_token,
            }),
            ..range(60, 0)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second
            .activities
            .iter()
            .map(|a| a.user_id.as_str())
            .collect::<Vec<_>>(),
        ["calm"]
    );
    // By user id (the default): pages follow the ids.
    let mut by_user = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit()
            .get_activity_history(pb::GetActivityHistoryRequest {
                order_by: pb::ActivityOrder::Unspecified as i32,
                page: Some(PageRequest {
                    page_size: 1,
                    page_token: token.clone(),
                }),
                ..range(60, 0)
            })
            .await
            .unwrap()
            .into_inner();
        by_user.extend(
            page.activities
                .iter()
                .map(|a| (a.user_id.clone(), a.actions_count)),
        );
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        by_user,
        [
            ("busy".to_string(), 7),
            ("calm".into(), 1),
            ("old".into(), 9)
        ]
    );
    let err = app
        .audit()
        .get_activity_history(pb::GetActivityHistoryRequest {
            start_date: "yesterday".into(),
            ..range(1, 0)
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["start_date"]);
}

async fn export(
    app: &TestApp,
    format: pb::ExportFormat,
    filter: pb::EventFilter,
) -> (String, Vec<u8>) {
    use futures_util::StreamExt;
    let mut stream = app
        .audit()
        .export_events(pb::ExportEventsRequest {
            filter: Some(filter),
            format: format as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut name = String::new();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if !chunk.file_name.is_empty() {
            name = chunk.file_name;
        }
        bytes.extend(chunk.chunk);
    }
    (name, bytes)
}

#[tokio::test]
async fn export_xlsx_and_csv_read_back_with_an_independent_reader() {
    use calamine::{Reader, Xlsx};
    let app = spawn().await;
    let now = Utc::now();
    let mut events: Vec<_> = (0..300)
        .map(|i| {
            event(
                "user.signed_in",
                &format!("x{}", i % 3),
                now - chrono::Duration::seconds(i),
            )
        })
        .collect();
    events[0].impersonator_user_id = "admin-1".into();
    events[0].token_id = "tok-9".into();
    events[0].modified_user_id = "x0".into();
    events[0].project = "bots".into();
    events[0].result = common::Result::Failure as i32;
    events[0].error_message = "wrong password".into();
    ingest(&app, events).await;

    let (name, bytes) = export(&app, pb::ExportFormat::Xlsx, pb::EventFilter::default()).await;
    assert_eq!(name, "audit-log.xlsx");
    let mut book = Xlsx::new(std::io::Cursor::new(bytes)).expect("a valid xlsx");
    let sheet = book.worksheet_range("Audit log").expect("sheet");
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "Date and time",
            "Action",
            "User",
            "Token ID",
            "Modified user",
            "Project",
            "Comments",
            "IP and device",
            "Result",
            "Impersonator"
        ]
    );
    assert_eq!(rows.len(), 301);
    let newest = &rows[1];
    assert_eq!(newest[1], "user.signed_in");
    assert_eq!(newest[2], "x0");
    assert_eq!(newest[3], "tok-9");
    assert_eq!(newest[4], "x0");
    assert_eq!(newest[5], "bots");
    assert_eq!(newest[6], "method=password; email=x0@example.com");
    assert_eq!(newest[7], "203.0.113.7, Mozilla/5.0 (X11; Linux)");
    assert_eq!(newest[8], "Failure: wrong password");
    assert_eq!(newest[9], "admin-1");

    let (name, csv) = export(
        &app,
        pb::ExportFormat::Csv,
        pb::EventFilter {
            subject_user_id: "x1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(name, "audit-log.csv");
    let text = String::from_utf8(csv).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Date and time,Action,User,Token ID,Modified user,Project,Comments,IP and device,Result,Impersonator"
    );
    assert_eq!(lines.len(), 101);
    assert!(lines[1].contains(",\"203.0.113.7, Mozilla/5.0 (X11; Linux)\",Success,"));

    // Exports are audited.
    let exports = list(
        &app,
        pb::EventFilter {
            actions: vec!["audit.events.exported".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[1].event.as_ref().unwrap().comments["rows"], "300");
}

#[tokio::test]
async fn action_catalog_lists_seeds_and_registered_products() {
    let app = spawn().await;
    let products = app
        .audit()
        .list_action_types(pb::ListActionTypesRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    let common = products.iter().find(|p| p.product == "common").unwrap();
    assert_eq!(common.title, "Common events");
    // Each action is listed once (issue 10): the identity actions under
    // accounts, which emits them; the rest of the reference under common.
    let titles = |product: &str| -> Vec<String> {
        products
            .iter()
            .find(|p| p.product == product)
            .unwrap()
            .action_types
            .iter()
            .map(|a| a.title.clone())
            .collect()
    };
    for (product, expected) in [
        ("accounts", "User signed in"),
        (
            "accounts",
            "Account is blocked, too many failed sign-in attempts",
        ),
        ("accounts", "Token created"),
        ("common", "Phone number confirmed"),
    ] {
        assert!(
            titles(product).iter().any(|t| t == expected),
            "{expected} missing"
        );
    }
    assert!(products.iter().any(|p| p.product == "accounts"));

    // A product registers its actions; its events are then accepted.
    let mut platform = app.ingest();
    let event_for_jaicp = pb::AuditEvent {
        product: "jaicp".into(),
        ..event("bot.project.created", "u", Utc::now())
    };
    let err = platform
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event_for_jaicp.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["events[0].action"]);
    let registered = pb::audit_service_client::AuditServiceClient::with_interceptor(
        app.audit_channel_for_tests(),
        steward_integration_tests::Bearer::new(Some(
            app.token("service:jaicp", &[Role::PlatformService]),
        )),
    )
    .register_action_types(pb::RegisterActionTypesRequest {
        product: "jaicp".into(),
        title: "JAICP".into(),
        action_types: vec![
            pb::ActionType {
                action: "bot.project.created".into(),
                title: "Bot project created".into(),
            },
            pb::ActionType {
                action: "bot.project.deleted".into(),
                title: "Bot project deleted".into(),
            },
        ],
    })
    .await
    .unwrap()
    .into_inner()
    .product
    .unwrap();
    assert_eq!(registered.action_types.len(), 2);
    let accepted = platform
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event_for_jaicp],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.accepted, 1);
    let err = app
        .audit()
        .register_action_types(pb::RegisterActionTypesRequest {
            product: "x".into(),
            title: "X".into(),
            action_types: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "only platform services register"
    );
}

#[tokio::test]
async fn retention_drops_and_trims_and_the_chain_still_verifies() {
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        retention_interval: Some(Duration::from_millis(200)),
        ..Options::default()
    })
    .await;
    let now = Utc::now();
    let mut events = Vec::new();
    // Two years old: a whole partition to drop once the longest retention is a year.
    for i in 0..3 {
        events.push(event(
            "user.signed_in",
            "ancient",
            now - chrono::Duration::days(730 + i),
        ));
    }
    // 60 days old: trimmed for "common" (30 days), kept for "accounts".
    for i in 0..4 {
        events.push(event(
            "user.signed_out",
            "aged",
            now - chrono::Duration::days(60 + i),
        ));
    }
    let mut kept = event("user.created", "aged", now - chrono::Duration::days(61));
    kept.product = "accounts".into();
    events.push(kept);
    for i in 0..3 {
        events.push(event(
            "user.signed_in",
            "fresh",
            now - chrono::Duration::hours(i),
        ));
    }
    ingest(&app, events).await;
    let mut audit = app.audit();
    for policy in [
        pb::RetentionPolicy {
            product: String::new(),
            category: 0,
            retention_days: 365,
        },
        pb::RetentionPolicy {
            product: "common".into(),
            category: 0,
            retention_days: 30,
        },
    ] {
        audit
            .set_retention_policy(pb::SetRetentionPolicyRequest {
                policy: Some(policy),
            })
            .await
            .unwrap();
    }
    let err = audit
        .set_retention_policy(pb::SetRetentionPolicyRequest {
            policy: Some(pb::RetentionPolicy {
                product: "common".into(),
                category: 0,
                retention_days: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["policy.retention_days"]);

    let wide = |subject: &str| pb::EventFilter {
        subject_user_id: subject.into(),
        start_time: Some(ts(now - chrono::Duration::days(365))),
        end_time: Some(ts(now + chrono::Duration::seconds(5))),
        ..Default::default()
    };
    let mut aged = Vec::new();
    for _ in 0..100 {
        aged = list(&app, wide("aged")).await;
        if aged.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(aged.len(), 1, "common events past 30 days trimmed");
    assert_eq!(aged[0].event.as_ref().unwrap().product, "accounts");
    assert_eq!(list(&app, wide("fresh")).await.len(), 3);

    let partitions = {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            relname: String,
        }
        diesel::sql_query(
            "SELECT relname FROM pg_class WHERE relname LIKE 'events_y%' AND relkind = 'r'",
        )
        .load::<Name>(&mut app.db.audit().await)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.relname)
        .collect::<Vec<_>>()
    };
    let ancient = format!(
        "events_y{}",
        (now - chrono::Duration::days(731)).format("%Ym%m")
    );
    assert!(
        !partitions.contains(&ancient),
        "{ancient} dropped: {partitions:?}"
    );

    let v = verify(&app).await;
    assert!(v.ok, "{v:?}");
}

#[tokio::test]
async fn every_audit_action_accounts_declares_is_in_the_catalog() {
    let app = spawn().await;
    let products = app
        .audit()
        .list_action_types(pb::ListActionTypesRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    let accounts: Vec<_> = products
        .iter()
        .find(|p| p.product == "accounts")
        .unwrap()
        .action_types
        .iter()
        .map(|a| a.action.clone())
        .collect();
    let policies =
        steward_kit::auth::PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)
            .unwrap();
    let service = "/steward.accounts.v1.AccountsService/";
    let declared: Vec<String> = [
        "CreateUser",
        "UpdateUser",
        "BatchChangeGroup",
        "ChangeEmail",
        "SetRoles",
        "SetNotes",
        "BatchDeletePersonalData",
        "UpdateSettings",
        "CreateGroup",
        "CreateCollaboration",
        "AcceptCollaboration",
        "RevokeCollaboration",
    ]
    .iter()
    .map(|m| {
        policies
            .get(&format!("{service}{m}"))
            .unwrap()
            .audit_action
            .clone()
    })
    .chain(
        [
            "activated",
            "suspended",
            "deactivated",
            "destroyed",
            "changed",
        ]
        .iter()
        .map(|s| format!("user.status.{s}")),
    )
    // Every AuthService action, plus the refinements it records.
    .chain(
        policies
            .methods_of("steward.accounts.v1.AuthService")
            .into_iter()
            .map(|(_, p)| p.audit_action)
            .filter(|a| !a.is_empty()),
    )
    .chain(
        [
            "user.account.locked_out",
            "user.session.refresh_token_reused",
        ]
        .map(String::from),
    )
    .collect();
    for action in declared {
        assert!(
            accounts.contains(&action),
            "{action} missing from the catalog"
        );
    }
}

#[tokio::test]
async fn forged_duplicated_and_fake_erased_rows_are_caught() {
    let app = spawn().await;
    let now = Utc::now();
    let events: Vec<_> = (0..6)
        .map(|i| event("user.signed_in", &format!("f{i}"), now))
        .collect();
    ingest(&app, events).await;
    assert!(verify(&app).await.ok);

    // A row dressed as erased but carrying other data.
    tamper(
        &app,
        "UPDATE events SET pii_erased = true, client_ip = '192.0.2.1' WHERE seq = 2",
    )
    .await;
    let broken = verify(&app).await;
    assert_eq!(broken.first_broken_sequence, 2);
    tamper(
        &app,
        "UPDATE events SET pii_erased = false, client_ip = '203.0.113.7' WHERE seq = 2",
    )
    .await;

    // A forged row beyond the head.
    tamper(
        &app,
        "INSERT INTO events (seq, event_id, occurred_at, product, action, category, result, pii_digest, prev_hash, hash)
         SELECT 99, gen_random_uuid(), occurred_at, product, action, category, result, pii_digest, hash, hash
         FROM events WHERE seq = 6",
    )
    .await;
    let broken = verify(&app).await;
    assert_eq!(broken.first_broken_sequence, 99);
    assert!(broken.reason.contains("outside"), "{}", broken.reason);
    tamper(&app, "DELETE FROM events WHERE seq = 99").await;

    // A copy of a row under the same sequence number.
    tamper(
        &app,
        "INSERT INTO events (seq, event_id, occurred_at, product, action, category, result, pii_digest, prev_hash, hash)
         SELECT seq, gen_random_uuid(), occurred_at, product, action, category, result, pii_digest, prev_hash, hash
         FROM events WHERE seq = 3",
    )
    .await;
    assert_eq!(verify(&app).await.first_broken_sequence, 3);
    tamper(
        &app,
        "DELETE FROM events WHERE seq = 3 AND actor_user_id = ''",
    )
    .await;
    assert!(verify(&app).await.ok);

    // The tail of a checked range deleted: its successor no longer links.
    tamper(&app, "DELETE FROM events WHERE seq = 4").await;
    let range = app
        .audit()
        .verify_chain(pb::VerifyChainRequest {
            from_sequence: 1,
            to_sequence: 4,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!range.ok);
    assert_eq!(range.first_broken_sequence, 5);
}

#[tokio::test]
async fn events_of_an_erased_user_arriving_later_are_stored_erased() {
    let app = spawn().await;
    let now = Utc::now();
    ingest(&app, vec![event("user.signed_in", "victim", now)]).await;
    app.audit()
        .erase_subject_data(pb::EraseSubjectDataRequest {
            user_id: "victim".into(),
        })
        .await
        .unwrap();
    ingest(
        &app,
        vec![event(
            "user.signed_out",
            "victim",
            now + chrono::Duration::seconds(1),
        )],
    )
    .await;
    let later = list(
        &app,
        pb::EventFilter {
            actions: vec!["user.signed_out".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(later[0].personal_data_erased);
    assert_eq!(later[0].event.as_ref().unwrap().client_ip, "");
    assert!(
        !later[0]
            .event
            .as_ref()
            .unwrap()
            .comments
            .contains_key("email")
    );
    assert!(verify(&app).await.ok);

    // A product other than accounts cannot erase by sending the same action.
    pb::audit_service_client::AuditServiceClient::with_interceptor(
        app.audit_channel_for_tests(),
        steward_integration_tests::Bearer::new(Some(
            app.token("service:jaicp", &[Role::PlatformService]),
        )),
    )
    .register_action_types(pb::RegisterActionTypesRequest {
        product: "jaicp".into(),
        title: "JAICP".into(),
        action_types: vec![pb::ActionType {
            action: "user.personal_data.deleted".into(),
            title: "x".into(),
        }],
    })
    .await
    .unwrap();
    ingest(&app, vec![event("user.signed_in", "bystander", now)]).await;
    let mut impostor = event("user.personal_data.deleted", "bystander", now);
    impostor.product = "jaicp".into();
    ingest(&app, vec![impostor]).await;
    let bystander = list(
        &app,
        pb::EventFilter {
            subject_user_id: "bystander".into(),
            actions: vec!["user.signed_in".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(!bystander[0].personal_data_erased);
    assert_eq!(
        bystander[0].event.as_ref().unwrap().client_ip,
        "203.0.113.7"
    );
}

/// Filtering by one action pages through exactly that action's events,
/// newest first, with the same keyset pages as before, also when the
/// newest events are all of other actions (the query then reads the
/// (action, time) index rather than filtering the time index).
#[tokio::test]
async fn one_action_pages_newest_first_when_newer_events_are_of_other_actions() {
    let app = spawn().await;
    let now = Utc::now();
    let mut events = Vec::new();
    // Older: every third event is a sign-out; newest 120: sign-ins only.
    for i in 0..150i64 {
        let action = if i % 3 == 0 {
            "user.signed_out"
        } else {
            "user.profile.updated"
        };
        events.push(event(
            action,
            &format!("p{}", i % 7),
            now - chrono::Duration::seconds(1000 - i),
        ));
    }
    for i in 0..120i64 {
        events.push(event(
            "user.signed_in",
            "p0",
            now - chrono::Duration::seconds(500 - i),
        ));
    }
    ingest(&app, events.clone()).await;
    let mut expected: Vec<(i64, String)> = events
        .iter()
        .filter(|e| e.action == "user.signed_out")
        .map(|e| (e.occurred_at.as_ref().unwrap().seconds, e.event_id.clone()))
        .collect();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

    let got = page_all(
        &app,
        pb::EventFilter {
            actions: vec!["user.signed_out".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(got.iter().all(|e| e.action == "user.signed_out"));
    let got: Vec<String> = got.into_iter().map(|e| e.event_id).collect();
    assert_eq!(got, expected, "newest first, every one once");
}

/// Every page of a listing (7 a page), in order.
async fn page_all(app: &TestApp, filter: pb::EventFilter) -> Vec<pb::AuditEvent> {
    let mut got = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit()
            .list_events(pb::ListEventsRequest {
                filter: Some(filter.clone()),
                page: Some(PageRequest {
                    page_size: 7,
                    page_token: token.clone(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        got.extend(page.events.into_iter().filter_map(|s| s.event));
        token = page.page.unwrap_or_default().next_page_token;
        if token.is_empty() {
            return got;
        }
        assert!(got.len() < 10_000, "paging does not end");
    }
}

/// The same for a product, alone and with an action.
#[tokio::test]
async fn one_product_pages_newest_first_when_newer_events_are_of_other_products() {
    let app = spawn().await;
    let now = Utc::now();
    let mut events = Vec::new();
    for i in 0..90i64 {
        let mut e = event(
            ["user.signed_in", "user.signed_out"][(i % 2) as usize],
            "q1",
            now - chrono::Duration::seconds(1000 - i),
        );
        if i % 3 == 0 {
            e.product = "billing".into();
            e.action =
                ["billing.balance.refilled", "billing.balance.withdrawn"][(i % 2) as usize].into();
        }
        events.push(e);
    }
    for i in 0..100i64 {
        events.push(event(
            "user.signed_in",
            "q2",
            now - chrono::Duration::seconds(500 - i),
        ));
    }
    ingest(&app, events.clone()).await;
    let newest_first = |keep: &dyn Fn(&pb::AuditEvent) -> bool| {
        let mut v: Vec<(i64, String)> = events
            .iter()
            .filter(|e| keep(e))
            .map(|e| (e.occurred_at.as_ref().unwrap().seconds, e.event_id.clone()))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    };
    let ids = |v: Vec<pb::AuditEvent>| v.into_iter().map(|e| e.event_id).collect::<Vec<_>>();
    let billing = page_all(
        &app,
        pb::EventFilter {
            product: "billing".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(billing), newest_first(&|e| e.product == "billing"));
    let billing_out = page_all(
        &app,
        pb::EventFilter {
            product: "billing".into(),
            actions: vec!["billing.balance.withdrawn".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        ids(billing_out),
        newest_first(&|e| e.product == "billing" && e.action == "billing.balance.withdrawn")
    );
}

/// Large groups go in by COPY (`store/copy.rs`): the same rows, chain and
/// deduplication as the general path, which still takes a large group that
/// names an erased person.
#[tokio::test]
async fn large_batches_are_stored_whole_chained_and_once() {
    let app = spawn().await;
    let now = Utc::now();
    // A first small call creates this month's partition (the COPY path
    // only writes into known ones).
    ingest(&app, vec![event("user.signed_in", "warm", now)]).await;
    let mut batch: Vec<pb::AuditEvent> = (0..1500)
        .map(|i| {
            event(
                "user.profile.updated",
                &format!("big-{}", i % 40),
                now - chrono::Duration::milliseconds(i),
            )
        })
        .collect();
    // A duplicate inside the call is stored once.
    batch.push(batch[7].clone());
    let first = ingest(&app, batch.clone()).await;
    assert_eq!((first.accepted, first.duplicates), (1500, 1));
    // Delivered again: nothing new.
    let again = ingest(&app, batch[..1200].to_vec()).await;
    assert_eq!((again.accepted, again.duplicates), (0, 1200));
    let check = verify(&app).await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.events_checked, 1501);
    // Every field as sent (the comments include the personal ones).
    let stored = list(
        &app,
        pb::EventFilter {
            subject_user_id: "big-7".into(),
            ..Default::default()
        },
    )
    .await;
    let sent = &batch[7];
    let got = stored
        .iter()
        .find(|s| s.event.as_ref().unwrap().event_id == sent.event_id)
        .expect("stored");
    let e = got.event.as_ref().unwrap();
    assert_eq!(
        (
            &e.action,
            &e.client_ip,
            &e.user_agent,
            &e.comments,
            &e.occurred_at,
            e.category,
            e.result,
        ),
        (
            &sent.action,
            &sent.client_ip,
            &sent.user_agent,
            &sent.comments,
            &sent.occurred_at,
            sent.category,
            sent.result,
        )
    );
    assert!(!got.personal_data_erased);

    // A large call naming an erased person: stored, that person's events
    // arrive erased, the chain still verifies.
    app.audit()
        .erase_subject_data(pb::EraseSubjectDataRequest {
            user_id: "big-3".into(),
        })
        .await
        .unwrap();
    let later: Vec<pb::AuditEvent> = (0..1200)
        .map(|i| {
            event(
                "user.signed_out",
                &format!("big-{}", i % 40),
                now + chrono::Duration::milliseconds(i + 1),
            )
        })
        .collect();
    assert_eq!(ingest(&app, later).await.accepted, 1200);
    let erased = list(
        &app,
        pb::EventFilter {
            subject_user_id: "big-3".into(),
            actions: vec!["user.signed_out".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(erased.len(), 30);
    assert!(
        erased
            .iter()
            .all(|s| s.personal_data_erased && s.event.as_ref().unwrap().client_ip.is_empty())
    );
    let check = verify(&app).await;
    assert!(check.ok, "{check:?}");
    app.stop().await;
}
