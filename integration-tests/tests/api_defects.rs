//! Defects a client the project did not write found in the API: reflection
//! at the gateway, UNIMPLEMENTED for methods that do not exist, gRPC-Web
//! refusals over HTTP/1.1 that break a reused connection, and components
//! that all called themselves `steward` in traces.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use bytes::{Buf, BufMut};
use futures_util::StreamExt;
use steward_gateway::GatewayConfig;
use steward_integration_tests::{ADMIN_ID, Options, TestApp};
use steward_kit::auth::Role;
use steward_proto::{accounts as pb, audit as apb, billing as bpb};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};
use tonic_reflection::pb::{v1, v1alpha};

/// Every span the servers of this test binary close, as JSON lines.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static SPANS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        // Installed before the harness's own subscriber (whose `try_init`
        // then does nothing), so the servers' spans land here.
        tracing_subscriber::fmt()
            .json()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("the span capture is the first subscriber of this binary");
        spans
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn spawn() -> TestApp {
    captured();
    let mut gateway = GatewayConfig::default();
    gateway.rate_limits.sign_in_burst = 1000;
    TestApp::spawn_with(Options {
        with_audit: true,
        billing: Some(steward_billing::BillingConfig::default()),
        gateway: Some(gateway),
        ..Options::default()
    })
    .await
}

fn gateway_channel(app: &TestApp) -> Channel {
    Channel::from_shared(
        app.gateway_endpoint
            .clone()
            .expect("spawned with a gateway"),
    )
    .unwrap()
    .connect_lazy()
}

async fn list_services_v1(channel: Channel) -> Vec<String> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1 answers without a token")
        .into_inner()
        .next()
        .await
        .expect("a response")
        .expect("a response, not an error");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection response: {response:?}");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// The files v1alpha reflection returns for `symbol`, decoded.
async fn files_containing_v1alpha(
    channel: Channel,
    symbol: &str,
) -> Vec<prost_types::FileDescriptorProto> {
    use prost::Message;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into()),
        ),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1alpha answers without a token")
        .into_inner()
        .next()
        .await
        .expect("a response")
        .expect("a response, not an error");
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!("unexpected reflection response: {response:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("a file descriptor")
        })
        .collect()
}

#[tokio::test]
async fn the_gateway_serves_reflection_for_every_package_it_routes() {
    let app = spawn().await;
    let services = list_services_v1(gateway_channel(&app)).await;
    for service in [
        "steward.accounts.v1.AuthService",
        "steward.accounts.v1.AccountsService",
        "steward.billing.v1.BillingService",
        "steward.audit.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == service),
            "{service} missing from {services:?}"
        );
    }
    // Nothing routes notifications in this suite: not advertised.
    assert!(
        !services
            .iter()
            .any(|s| s.starts_with("steward.notifications.")),
        "{services:?}"
    );

    // What grpcurl does before `steward.accounts.v1.AuthService/SignIn`:
    // the service's file, with the method and its request type.
    let files =
        files_containing_v1alpha(gateway_channel(&app), "steward.accounts.v1.AuthService").await;
    let sign_in = files
        .iter()
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "AuthService")
        .flat_map(|s| &s.method)
        .find(|m| m.name() == "SignIn")
        .expect("AuthService.SignIn is described");
    assert_eq!(sign_in.input_type(), ".steward.accounts.v1.SignInRequest");
    assert!(
        files
            .iter()
            .any(|f| f.message_type.iter().any(|m| m.name() == "SignInRequest")),
        "the request type is described"
    );

    // And the call itself then goes through, without a token.
    let refused = app
        .gw_auth(None)
        .sign_in(pb::SignInRequest {
            email: "nobody@example.com".into(),
            password: "not the password".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    app.stop().await;
}

/// Bytes in, bytes out: calls any path, as a client built from other
/// descriptors would.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

async fn call_raw(channel: Channel, path: &'static str, token: Option<&str>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(Vec::new());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    grpc.unary(
        request,
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .expect_err("the call is refused")
}

#[tokio::test]
async fn a_method_that_does_not_exist_is_unimplemented_at_the_gateway_and_the_services() {
    let app = spawn().await;
    let admin = app.token(ADMIN_ID, &[Role::UserAdmin]);
    for (place, channel) in [
        ("gateway", gateway_channel(&app)),
        ("accounts", app.channel()),
    ] {
        for token in [None, Some(admin.as_str())] {
            for path in [
                "/steward.accounts.v1.AccountsService/NoSuchMethod",
                "/steward.accounts.v1.NoSuchService/GetUser",
            ] {
                let status = call_raw(channel.clone(), path, token).await;
                assert_eq!(
                    status.code(),
                    Code::Unimplemented,
                    "{path} at {place} with token {}: {status:?}",
                    token.is_some()
                );
            }
        }
        // A method that exists is still guarded by its policy.
        let status = call_raw(
            channel.clone(),
            "/steward.accounts.v1.AccountsService/ListUsers",
            None,
        )
        .await;
        assert_eq!(status.code(), Code::Unauthenticated, "at {place}");
        let user = app.token("0190b7c4-0000-7000-8000-000000000001", &[Role::User]);
        let status = call_raw(
            channel.clone(),
            "/steward.accounts.v1.AccountsService/ListUsers",
            Some(&user),
        )
        .await;
        assert_eq!(status.code(), Code::PermissionDenied, "at {place}");
    }
    // Audit answers alike (the kit's auth layer is every service's).
    for token in [None, Some(admin.as_str())] {
        let status = call_raw(
            app.audit_channel_for_tests(),
            "/steward.audit.v1.AuditService/NoSuchMethod",
            token,
        )
        .await;
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    }
    app.stop().await;
}

/// One HTTP/1.1 response read off `stream`: status line and headers
/// (lower-cased), body discarded. `None` when the connection closed first.
async fn read_response<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Option<(String, Vec<(String, String)>)> {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
            Ok(Ok(1)) => buffer.push(byte[0]),
            Ok(Ok(_)) | Ok(Err(_)) => return None,
            Err(_) => panic!("no response within 10 s"),
        }
    }
    let head = String::from_utf8(buffer).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(length) = header("content-length") {
        let mut body = vec![0u8; length.parse().expect("a length")];
        stream.read_exact(&mut body).await.ok()?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut tail = Vec::new();
        while !tail.ends_with(b"0\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => tail.push(byte[0]),
                _ => return None,
            }
        }
    }
    Some((status, headers))
}

fn grpc_web_request(addr: &str, path: &str, body_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/grpc-web+proto\r\n\
         x-grpc-web: 1\r\ncontent-length: {body_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_grpc_web_refusal_over_http1_leaves_the_connection_usable_or_says_close() {
    let app = spawn().await;
    let endpoint = app.gateway_endpoint.clone().unwrap();
    let addr = endpoint.trim_start_matches("http://");
    // An empty ListUsersRequest, framed: refused (no token) at the edge.
    let frame = [0u8, 0, 0, 0, 0];
    let path = "/steward.accounts.v1.AccountsService/ListUsers";
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();

    // Headers first, the body a moment later (as connect-node sends them).
    stream
        .write_all(grpc_web_request(addr, path, frame.len()).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body_written = stream.write_all(&frame).await.is_ok();
    let (status, headers) = read_response(&mut stream)
        .await
        .expect("the refusal is answered");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let grpc_status = headers
        .iter()
        .find(|(k, _)| k == "grpc-status")
        .map(|(_, v)| v.as_str());
    assert_eq!(grpc_status, Some("16"), "UNAUTHENTICATED: {headers:?}");
    let says_close = headers
        .iter()
        .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));

    // The client reuses the connection unless told to close it.
    if !says_close {
        assert!(body_written, "the body could not be written");
        let reused = stream
            .write_all(
                format!(
                    "{}{}",
                    grpc_web_request(addr, path, frame.len()),
                    String::from_utf8_lossy(&frame)
                )
                .as_bytes(),
            )
            .await;
        assert!(
            reused.is_ok(),
            "the connection was closed without `Connection: close`: {reused:?}"
        );
        let second = read_response(&mut stream).await;
        let (status, _) =
            second.expect("the connection was closed without `Connection: close` (EPIPE)");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }

    // A body larger than the gateway reads before refusing: it must say
    // close, since the rest of the body is still on its way.
    let big = 256 * 1024;
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    writer
        .write_all(grpc_web_request(addr, path, big).as_bytes())
        .await
        .unwrap();
    let mut payload = vec![0u8; big];
    payload[1..5].copy_from_slice(&((big - 5) as u32).to_be_bytes());
    // Part of the body, and the rest never: the gateway must not wait for it.
    let writer = tokio::spawn(async move {
        let _ = writer.write_all(&payload[..128 * 1024]).await;
        writer
    });
    let (_, headers) = read_response(&mut reader)
        .await
        .expect("the refusal is answered");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")),
        "an undrained body ends the connection with `Connection: close`: {headers:?}"
    );
    drop(writer.await);
    app.stop().await;
}

/// Closed spans recorded for `method` (JSON lines).
fn spans_of(method: &str) -> Vec<String> {
    let captured = captured().lock().expect("lock").clone();
    String::from_utf8_lossy(&captured)
        .lines()
        .filter(|line| line.contains(&format!("\"rpc.method\":\"{method}\"")))
        .map(str::to_owned)
        .collect()
}

async fn wait_for_span(method: &str, name: &str, component: &str) -> bool {
    for _ in 0..50 {
        if spans_of(method).iter().any(|line| {
            line.contains(&format!("\"name\":\"{name}\""))
                && line.contains(&format!("\"steward.component\":\"{component}\""))
        }) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn each_component_names_itself_in_its_spans() {
    let app = spawn().await;
    let admin = app.token(ADMIN_ID, &[Role::UserAdmin]);
    app.gw_auth(None)
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("jwks through the gateway");
    app.billing()
        .get_balance(bpb::GetBalanceRequest {
            user_id: ADMIN_ID.into(),
        })
        .await
        .ok();
    app.audit_as(Some(admin))
        .list_events(apb::ListEventsRequest::default())
        .await
        .expect("list events");

    let jwks = "/steward.accounts.v1.AuthService/GetJwks";
    assert!(
        wait_for_span(jwks, "gateway", "steward-gateway").await,
        "{:?}",
        spans_of(jwks)
    );
    assert!(
        wait_for_span(jwks, "rpc", "steward-accounts").await,
        "{:?}",
        spans_of(jwks)
    );
    let balance = "/steward.billing.v1.BillingService/GetBalance";
    assert!(
        wait_for_span(balance, "rpc", "steward-billing").await,
        "{:?}",
        spans_of(balance)
    );
    let events = "/steward.audit.v1.AuditService/ListEvents";
    assert!(
        wait_for_span(events, "rpc", "steward-audit").await,
        "{:?}",
        spans_of(events)
    );
    // No span of a component calls itself plain `steward`.
    let captured = String::from_utf8_lossy(&captured().lock().expect("lock")).into_owned();
    assert!(!captured.contains("\"steward.component\":\"steward\""));
    app.stop().await;
}
