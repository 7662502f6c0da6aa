//! The gateway serves the web console from `gateway.console_dir`: hashed
//! assets cached for a year, `index.html` revalidated, client routes fall
//! back to `index.html`, a missing asset is 404, nothing outside the
//! directory is reachable, every answer carries the Content-Security-Policy,
//! and gRPC (POST) still reaches the services on the same port.

use std::collections::HashMap;

use steward_gateway::{GatewayConfig, console::CONTENT_SECURITY_POLICY};
use steward_integration_tests::{Options, TempDir, TestApp};
use steward_proto::accounts::GetJwksRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on its own connection, read to the end.
async fn get(endpoint: &str, method: &str, path: &str) -> Answer {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn console_dir() -> TempDir {
    let dir = TempDir::new("steward-console");
    std::fs::create_dir_all(dir.0.join("assets")).unwrap();
    std::fs::write(
        dir.0.join("index.html"),
        "<!doctype html><title>console</title>",
    )
    .unwrap();
    std::fs::write(dir.0.join("assets/index-Ab12Cd.js"), "console.log(1)").unwrap();
    std::fs::write(dir.0.join("favicon.svg"), "<svg/>").unwrap();
    dir
}

#[tokio::test]
async fn the_gateway_serves_the_console() {
    let dir = console_dir();
    // A file beside the console directory, which must not be reachable.
    let secret = dir.0.with_extension("secret");
    std::fs::write(&secret, "do not serve").unwrap();
    let app = TestApp::spawn_with(Options {
        gateway: Some(GatewayConfig {
            console_dir: Some(dir.0.clone()),
            ..GatewayConfig::default()
        }),
        ..Options::default()
    })
    .await;
    let gw = app.gateway_endpoint.clone().expect("a gateway");

    let index = get(&gw, "GET", "/").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body, "<!doctype html><title>console</title>");
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(index.headers["cache-control"], "no-cache");

    let asset = get(&gw, "GET", "/assets/index-Ab12Cd.js").await;
    assert_eq!(asset.status, 200);
    assert_eq!(asset.body, "console.log(1)");
    assert_eq!(
        asset.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        asset.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );

    let icon = get(&gw, "GET", "/favicon.svg").await;
    assert_eq!(icon.headers["content-type"], "image/svg+xml");
    assert_eq!(icon.headers["cache-control"], "no-cache");

    // Client routes (with a query) are the app's index.
    for route in ["/users", "/users/?group=beta&user=0190", "/actions"] {
        let page = get(&gw, "GET", route).await;
        assert_eq!(page.status, 200, "{route}");
        assert_eq!(page.body, index.body, "{route}");
        assert_eq!(page.headers["cache-control"], "no-cache", "{route}");
    }
    // A missing asset or file is not the index.
    assert_eq!(get(&gw, "GET", "/assets/gone-123.js").await.status, 404);
    assert_eq!(get(&gw, "GET", "/robots.txt").await.status, 404);
    // Nothing outside the directory.
    let name = secret.file_name().unwrap().to_str().unwrap();
    for path in [
        format!("/../{name}"),
        format!("/assets/../../{name}"),
        format!("/%2e%2e/{name}"),
        "//etc/passwd".to_owned(),
    ] {
        let answer = get(&gw, "GET", &path).await;
        assert!(!answer.body.contains("do not serve"), "{path}");
        assert_ne!(answer.status, 200, "{path}");
    }
    // HEAD: the headers alone.
    let head = get(&gw, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // Every answer, files and refusals alike, carries the policy.
    for answer in [
        &index,
        &asset,
        &head,
        &get(&gw, "GET", "/assets/x.js").await,
    ] {
        assert_eq!(
            answer.headers["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
    }
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));

    // gRPC on the same port still reaches the services, and metrics stay.
    let keys = app
        .gw_auth(None)
        .get_jwks(GetJwksRequest {})
        .await
        .expect("GetJwks through the gateway");
    assert!(!keys.into_inner().keys.is_empty());
    let metrics = get(&gw, "GET", "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain"));

    let _ = std::fs::remove_file(&secret);
    app.stop().await;
}

#[tokio::test]
async fn without_a_console_dir_nothing_is_served() {
    let app = TestApp::spawn_with(Options {
        gateway: Some(GatewayConfig::default()),
        ..Options::default()
    })
    .await;
    let gw = app.gateway_endpoint.clone().expect("a gateway");
    let answer = get(&gw, "GET", "/users").await;
    assert_ne!(answer.status, 200);
    assert!(!answer.headers.contains_key("content-security-policy"));
    app.stop().await;
}
