//! The gateway's refusal audit (issue 10): refusals wait in a durable local
//! spool through an audit outage and a gateway restart and arrive once; a
//! torn spool tail is skipped; a flood and a full spool are summarised with
//! counts; and `x-forwarded-for` is believed only from configured proxies.

use std::{collections::BTreeSet, net::SocketAddr, path::Path, time::Duration};

use steward_gateway::GatewayConfig;
use steward_integration_tests::{Options, TempDir, TestApp};
use steward_proto::{accounts as pb, audit as apb, common::PageRequest};
use tonic::Code;

const REFUSED: &str = "gateway.request.refused";
const LIST_USERS: &str = "/steward.accounts.v1.AccountsService/ListUsers";

/// An address nothing listens on yet (audit is started there later).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn gateway_config(spool: &TempDir) -> GatewayConfig {
    let mut config = GatewayConfig {
        refusal_spool_dir: Some(spool.0.clone()),
        refusal_retry_max_backoff: Duration::from_millis(300),
        // One window for the whole test unless a test says otherwise.
        refusal_flood_window: Duration::from_secs(3600),
        ..Default::default()
    };
    // Every refusal here is the same one (no token), from one address.
    config.rate_limits.per_ip_burst = 100_000;
    config.rate_limits.per_ip_per_second = 100_000;
    config
}

/// `ListUsers` without a token through the gateway, with `request_id`
/// (and `headers`): refused at the edge.
async fn refuse(app: &TestApp, request_id: &str, headers: &[(&'static str, &str)]) {
    let mut request = tonic::Request::new(pb::ListUsersRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    for (name, value) in headers {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let status = app.gw_accounts(None).list_users(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

/// Every refusal event the audit service stores.
async fn refusals(app: &TestApp) -> Vec<apb::AuditEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit()
            .list_events(apb::ListEventsRequest {
                filter: Some(apb::EventFilter {
                    actions: vec![REFUSED.into()],
                    ..Default::default()
                }),
                page: Some(PageRequest {
                    page_size: 100,
                    page_token: token,
                }),
            })
            .await
            .expect("list events")
            .into_inner();
        events.extend(page.events.into_iter().filter_map(|s| s.event));
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return events;
        }
    }
}

fn is_summary(event: &apb::AuditEvent) -> bool {
    event.comments.get("summary").map(String::as_str) == Some("true")
}

/// The refusals `events` stand for: one each, or a summary's `count`.
fn counted(events: &[apb::AuditEvent]) -> u64 {
    events
        .iter()
        .map(|e| {
            if is_summary(e) {
                e.comments["count"].parse::<u64>().expect("a numeric count")
            } else {
                1
            }
        })
        .sum()
}

/// Waits (up to 30 s) until the stored refusals stand for `n` refusals,
/// then a little longer, so that late duplicates would show too.
async fn arrived(app: &TestApp, n: u64) -> Vec<apb::AuditEvent> {
    for _ in 0..300 {
        if counted(&refusals(app).await) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    refusals(app).await
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    found.sort();
    found
}

fn request_ids(events: &[apb::AuditEvent]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.request_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn refusals_survive_an_audit_outage_and_a_gateway_restart_and_arrive_once() {
    let audit = free_addr();
    let spool = TempDir::new("steward-refusal-spool");
    let mut config = gateway_config(&spool);
    // Recorded one by one, so that each can be found by its request id.
    config.refusal_flood_sample = 1_000;
    let mut app = TestApp::spawn_with(Options {
        audit_listen: Some(audit),
        gateway: Some(config),
        ..Options::default()
    })
    .await;
    let mut expected = BTreeSet::new();
    for i in 0..150 {
        let id = format!("outage-{i:03}");
        refuse(&app, &id, &[]).await;
        expected.insert(id);
    }
    let metrics = app.gateway_metrics();
    until("150 refusals are spooled", || {
        metrics.refusals_spooled() == 150
    })
    .await;
    assert_eq!(metrics.refusals_shipped(), 0, "audit is down");
    assert!(metrics.spool_bytes() > 0);

    // A restart while audit is still down: the spool is found again.
    app.restart_gateway(|_| {}).await;
    for i in 150..300 {
        let id = format!("outage-{i:03}");
        refuse(&app, &id, &[]).await;
        expected.insert(id);
    }
    let metrics = app.gateway_metrics();
    until("the next 150 are spooled", || {
        metrics.refusals_spooled() == 150
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!segments(&spool.0).is_empty());

    app.start_audit(audit).await;
    let events = arrived(&app, 300).await;
    assert_eq!(events.len(), 300, "every refusal once, none twice");
    assert!(events.iter().all(|e| !is_summary(e)));
    let ids = request_ids(&events);
    assert_eq!(ids, expected.into_iter().collect::<Vec<_>>());
    let first = &events[0];
    assert_eq!(first.comments["method"], LIST_USERS);
    assert_eq!(first.comments["code"], "Unauthenticated");
    assert_eq!(first.client_ip, "127.0.0.1");

    // Acknowledged segments are deleted; the ones from before the restart
    // too.
    until("the spool is empty", || {
        segments(&spool.0).is_empty() && metrics.spool_bytes() == 0
    })
    .await;
    assert_eq!(metrics.refusals_shipped(), 300);
    assert_eq!(metrics.audit_dropped(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_torn_spool_tail_is_skipped_not_fatal() {
    let audit = free_addr();
    let spool = TempDir::new("steward-refusal-spool");
    let mut config = gateway_config(&spool);
    config.refusal_flood_sample = 1_000;
    let mut app = TestApp::spawn_with(Options {
        audit_listen: Some(audit),
        gateway: Some(config),
        ..Options::default()
    })
    .await;
    for i in 0..5 {
        refuse(&app, &format!("torn-{i}"), &[]).await;
    }
    let metrics = app.gateway_metrics();
    until("5 refusals are spooled", || metrics.refusals_spooled() == 5).await;
    let dir = spool.0.clone();
    app.restart_gateway(|_| {
        use std::io::Write;
        // As a crash mid-append leaves it: a header promising 100 bytes,
        // and 10 of them.
        let last = segments(&dir).pop().expect("a segment");
        let mut file = std::fs::OpenOptions::new().append(true).open(last).unwrap();
        file.write_all(&100u32.to_le_bytes()).unwrap();
        file.write_all(&[0xAB; 14]).unwrap();
        // And a segment holding nothing but garbage.
        std::fs::write(dir.join("00000000000000000000.seg"), [0xFF; 7]).unwrap();
    })
    .await;
    refuse(&app, "torn-after", &[]).await;
    app.start_audit(audit).await;
    let events = arrived(&app, 6).await;
    assert_eq!(
        request_ids(&events),
        [
            "torn-0",
            "torn-1",
            "torn-2",
            "torn-3",
            "torn-4",
            "torn-after"
        ]
    );
    until("the torn segments are gone too", || {
        segments(&spool.0).is_empty()
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_flood_is_recorded_by_sample_and_summarised_in_one_event() {
    let spool = TempDir::new("steward-refusal-spool");
    let mut app = TestApp::spawn_with(Options {
        with_audit: true,
        gateway: Some(gateway_config(&spool)),
        ..Options::default()
    })
    .await;
    for i in 0..150 {
        refuse(&app, &format!("flood-{i}"), &[]).await;
    }
    let metrics = app.gateway_metrics();
    until("20 refusals are spooled and 130 counted", || {
        metrics.refusals_spooled() == 20 && metrics.refusals_summarised() == 130
    })
    .await;
    // The window is an hour long: a stopping gateway writes its summary.
    app.restart_gateway(|c| c.refusal_flood_window = Duration::from_secs(1))
        .await;
    let events = arrived(&app, 150).await;
    assert_eq!(counted(&events), 150);
    let (summaries, single): (Vec<_>, Vec<_>) = events.iter().partition(|e| is_summary(e));
    assert_eq!(single.len(), 20, "the first 20 one by one");
    assert_eq!(summaries.len(), 1, "the rest in one event");
    let summary = summaries[0];
    assert_eq!(summary.comments["count"], "130");
    assert_eq!(summary.comments["method"], LIST_USERS);
    assert_eq!(summary.comments["code"], "Unauthenticated");
    assert_eq!(summary.comments["window_seconds"], "3600");
    assert_eq!(summary.client_ip, "127.0.0.1");
    assert_eq!(
        summary.result,
        steward_proto::common::Result::Failure as i32
    );

    // With a 1 s window the summary comes when the window closes.
    for i in 0..50 {
        refuse(&app, &format!("second-{i}"), &[]).await;
    }
    let events = arrived(&app, 200).await;
    assert_eq!(counted(&events), 200);
    let later: Vec<_> = events
        .iter()
        .filter(|e| is_summary(e) && e.comments["window_seconds"] == "1")
        .collect();
    assert!(!later.is_empty(), "summarised at the window's close");
    app.stop().await;
}

#[tokio::test]
async fn a_full_spool_counts_and_summarises_what_it_cannot_hold() {
    let audit = free_addr();
    let spool = TempDir::new("steward-refusal-spool");
    let mut config = gateway_config(&spool);
    config.refusal_flood_sample = 1_000;
    // Room for a few refusals beyond the headroom kept for summaries.
    config.refusal_spool_max_bytes = steward_gateway::spool::HEADROOM + 2_000;
    let mut app = TestApp::spawn_with(Options {
        audit_listen: Some(audit),
        gateway: Some(config),
        ..Options::default()
    })
    .await;
    for i in 0..40 {
        refuse(&app, &format!("full-{i}"), &[]).await;
    }
    let metrics = app.gateway_metrics();
    until("every refusal is spooled or counted", || {
        metrics.refusals_spooled() + metrics.refusals_summarised() == 40
    })
    .await;
    let spooled = metrics.refusals_spooled();
    assert!(spooled > 0 && spooled < 40, "spooled {spooled}");
    assert!(metrics.spool_bytes() <= steward_gateway::spool::HEADROOM + 2_000);
    // Stopping writes the summary in the headroom.
    app.restart_gateway(|_| {}).await;
    app.start_audit(audit).await;
    let events = arrived(&app, 40).await;
    assert_eq!(counted(&events), 40);
    let summaries: Vec<_> = events.iter().filter(|e| is_summary(e)).collect();
    assert_eq!(summaries.len(), 1);
    assert!(
        summaries[0].error_message.contains("spool was full"),
        "{}",
        summaries[0].error_message
    );
    assert_eq!(summaries[0].comments["count"], (40 - spooled).to_string());
    app.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_ignored_by_default_and_believed_from_configured_proxies() {
    let spool = TempDir::new("steward-refusal-spool");
    let mut app = TestApp::spawn_with(Options {
        with_audit: true,
        gateway: Some(gateway_config(&spool)),
        ..Options::default()
    })
    .await;
    let forged = [("x-forwarded-for", "203.0.113.9")];
    refuse(&app, "xff-default", &forged).await;
    refuse(
        &app,
        "xcip-default",
        &[("x-steward-client-ip", "203.0.113.10")],
    )
    .await;
    let events = arrived(&app, 2).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(
            event.client_ip, "127.0.0.1",
            "a loopback peer is not a proxy unless configured"
        );
    }

    app.restart_gateway(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    })
    .await;
    refuse(&app, "xff-trusted", &forged).await;
    let events = arrived(&app, 3).await;
    let trusted = events
        .iter()
        .find(|e| e.request_id == "xff-trusted")
        .expect("recorded");
    assert_eq!(trusted.client_ip, "203.0.113.9");
    app.stop().await;
}

/// The suite with a gateway, its audit backend expected at `audit` (not
/// started), and a USER_ADMIN token.
async fn spawn_with_audit_at(audit: SocketAddr, spool: &TempDir) -> (TestApp, String) {
    let app = TestApp::spawn_with(Options {
        audit_listen: Some(audit),
        gateway: Some(gateway_config(spool)),
        ..Options::default()
    })
    .await;
    let token = app.token(
        steward_integration_tests::ADMIN_ID,
        &[steward_kit::auth::Role::UserAdmin],
    );
    (app, token)
}

/// A backend that is down answers UNAVAILABLE through the gateway (never
/// INTERNAL), and is served again as soon as it is up: the gateway opens a
/// new connection by itself.
#[tokio::test]
async fn a_backend_down_is_unavailable_and_served_once_it_is_up() {
    let audit = free_addr();
    let spool = TempDir::new("steward-refusal-spool");
    let (mut app, token) = spawn_with_audit_at(audit, &spool).await;
    let list = |app: &TestApp| {
        let mut client = app.gw_audit(Some(token.clone()));
        async move {
            client
                .list_events(apb::ListEventsRequest {
                    filter: None,
                    page: Some(PageRequest {
                        page_size: 10,
                        page_token: String::new(),
                    }),
                })
                .await
        }
    };
    for _ in 0..3 {
        let status = list(&app).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    app.start_audit(audit).await;
    list(&app).await.expect("served once audit is up");
    app.stop().await;
}

#[tokio::test]
async fn a_backend_that_hangs_answers_deadline_exceeded_within_the_callers_deadline() {
    let audit = free_addr();
    // Accepts connections and never answers: a stopped process, a full
    // server, a black-holed network.
    let listener = tokio::net::TcpListener::bind(audit).await.unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let spool = TempDir::new("steward-refusal-spool");
    let (app, token) = spawn_with_audit_at(audit, &spool).await;
    // A raw HTTP/2 client: tonic's own client would give up at the same
    // deadline (CANCELLED) and hide whether the gateway answered.
    let message = prost::Message::encode_to_vec(&apb::ListEventsRequest {
        filter: None,
        page: Some(PageRequest {
            page_size: 10,
            page_token: String::new(),
        }),
    });
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::builder()
        .method("POST")
        .uri("/steward.audit.v1.AuditService/ListEvents")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .header("grpc-timeout", "300m")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(frame),
        )))
        .unwrap();
    let gateway = steward_gateway::backends::Backend::new(
        app.gateway_endpoint.as_deref().expect("a gateway"),
        1,
    )
    .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), gateway.call(request))
        .await
        .expect("the gateway answers at the deadline")
        .expect("an HTTP response");
    // A trailers-only answer: the status is in the headers.
    assert_eq!(
        response.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(b"4".as_slice()),
        "DEADLINE_EXCEEDED: {:?}",
        response.headers()
    );
    silent.abort();
    app.stop().await;
}
