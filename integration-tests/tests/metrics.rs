//! Every server's calls and every relay's outbox are in kit's Prometheus
//! exposition on the admin address (`[metrics] listen`), with pool waits,
//! audit's group commits, the mail queue, the quota cache and the gateway's
//! own figures. (One test: the registry is process-wide and the counts
//! below are exact.)

use std::time::Duration;

use steward_integration_tests::{Options, TestApp};
use steward_proto::accounts as pb;

async fn scrape(url: &str) -> String {
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

#[tokio::test]
async fn calls_pools_and_outboxes_are_exported() {
    let mail_dir = std::env::temp_dir().join(format!("steward-metrics-{}", uuid::Uuid::now_v7()));
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        metrics: true,
        with_quotas: true,
        with_notifications: Some(steward::config::NotificationsConfig {
            mail_dir: Some(mail_dir.clone()),
            ..Default::default()
        }),
        gateway: Some(steward_gateway::GatewayConfig::default()),
        ..Options::default()
    })
    .await;
    let url = app.metrics_url.clone().expect("metrics served");
    app.create_user("metrics@metrics.io").await;
    let err = app
        .client(None)
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    // The same call at the edge: refused there, counted by the gateway.
    let gateway = app.gateway_endpoint.clone().expect("gateway runs");
    let err = pb::accounts_service_client::AccountsServiceClient::connect(gateway)
        .await
        .expect("connect to the gateway")
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let ready = [
        "steward_outbox_delivered_total{service=\"accounts\",destination=\"audit\"}",
        "steward_audit_group_commit_events_count",
        "steward_db_pool_connections{service=\"audit\"}",
        "steward_notifications_mail_queue{status=\"QUEUED\"}",
        "steward_quotas_cache_users{replica=",
    ];
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&url).await;
        if ready.iter().all(|r| text.contains(r)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in [
        "steward_rpc_calls_total{component=\"steward-accounts\",method=\"/steward.accounts.v1.AccountsService/CreateUser\",code=\"0\"} 1",
        "steward_rpc_calls_total{component=\"steward-accounts\",method=\"/steward.accounts.v1.AccountsService/ListUsers\",code=\"16\"} 1",
        "steward_rpc_duration_seconds_count{component=\"steward-accounts\",method=\"/steward.accounts.v1.AccountsService/CreateUser\",code=\"0\"} 1",
        "steward_outbox_delivered_total{service=\"accounts\",destination=\"audit\"}",
        "steward_outbox_backlog{service=\"accounts\",destination=\"audit\"}",
        "steward_db_pool_connections{service=\"accounts\"}",
        "steward_db_pool_waits_total{service=\"accounts\"}",
        "steward_db_pool_wait_seconds_total{service=\"accounts\"}",
        "steward_db_pool_timeouts_total{service=\"accounts\"} 0",
        "steward_db_pool_connections{service=\"audit\"}",
        "steward_audit_group_commit_events_bucket{le=\"+Inf\"}",
        "steward_audit_group_commit_calls_count",
        "steward_notifications_mail_queue{status=\"QUEUED\"} 0",
        "steward_notifications_mail_queue{status=\"DEFERRED\"} 0",
        "steward_notifications_oldest_queued_age_seconds 0",
        "steward_gateway_calls_total{method=\"/steward.accounts.v1.AccountsService/ListUsers\",code=\"Unauthenticated\"} 1",
        "steward_gateway_refused_total{reason=",
        "steward_gateway_refusal_spool_bytes",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    // The quota replica holds every user it has heard of (none, or the one
    // created above once its membership event arrived).
    let held = text
        .lines()
        .find(|l| l.starts_with("steward_quotas_cache_users{"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("quota cache gauge");
    assert!(["0", "1"].contains(&held), "{held}");
    let _ = std::fs::remove_dir_all(mail_dir);
}
