//! Every server's calls and every relay's outbox are in kit's Prometheus
//! exposition on the admin address (`[metrics] listen`).

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
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        metrics: true,
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
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&url).await;
        if text
            .contains("steward_outbox_delivered_total{service=\"accounts\",destination=\"audit\"}")
        {
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
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
}
