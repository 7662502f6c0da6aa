//! Test harness: a migrated template database cloned per test, the accounts
//! server in-process on port 0, token minting, and a real audit-ingest gRPC
//! receiver for outbox relay tests.

pub mod db;
pub mod receiver;

use std::time::Duration;

use steward_kit::{
    auth::{Claims, KeySet, PolicyTable, Role, TokenSigner, TokenVerifier},
    outbox::{OutboxConfig, RelayConfig},
    page::PageTokens,
    server::{Security, ServerConfig},
};
use steward_proto::accounts as pb;
use tokio::sync::watch;
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

pub use db::TestDb;

pub type AccountsClient =
    pb::accounts_service_client::AccountsServiceClient<InterceptedService<Channel, Bearer>>;
pub type AuditClient = steward_proto::audit::audit_service_client::AuditServiceClient<
    InterceptedService<Channel, Bearer>,
>;
pub type BillingClient = steward_proto::billing::billing_service_client::BillingServiceClient<
    InterceptedService<Channel, Bearer>,
>;
pub type AuthClient =
    pb::auth_service_client::AuthServiceClient<InterceptedService<Channel, Bearer>>;
pub type IngestClient = steward_proto::audit::audit_ingest_service_client::AuditIngestServiceClient<
    InterceptedService<Channel, Bearer>,
>;

/// Adds `authorization: Bearer <token>` when set.
#[derive(Clone)]
pub struct Bearer(Option<String>);

impl Bearer {
    pub fn new(token: Option<String>) -> Self {
        Self(token)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value: MetadataValue<_> = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("token is not a header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Options for [`TestApp::spawn_with`].
#[derive(Default)]
pub struct Options {
    /// Deliver audit events to this endpoint (a [`receiver::AuditReceiver`]).
    pub audit_endpoint: Option<String>,
    pub erasure_interval: Option<Duration>,
    /// Also run the audit service (same database), and relay accounts'
    /// events to it.
    pub with_audit: bool,
    /// Run audit on this address (to start it after accounts: see
    /// [`TestApp::start_audit`]).
    pub audit_listen: Option<std::net::SocketAddr>,
    pub retention_interval: Option<Duration>,
    /// Also run billing (same database) with this configuration.
    pub billing: Option<steward_billing::BillingConfig>,
    /// Also run the gateway in front of every service spawned, with this
    /// configuration (listen and backends are filled in).
    pub gateway: Option<steward_gateway::GatewayConfig>,
    /// Accounts' sign-in rules (lockout thresholds and the like).
    pub identity: Option<steward_accounts::IdentityConfig>,
    /// The signing key (default: a fresh one) and retired keys still
    /// accepted and published (key rotation).
    pub signer: Option<TokenSigner>,
    pub retired_keys: Vec<TokenSigner>,
}

pub struct TestApp {
    pub db: TestDb,
    pub signer: TokenSigner,
    pub endpoint: String,
    channel: Channel,
    audit_channel: Option<Channel>,
    billing_channel: Option<Channel>,
    gateway: Option<(Channel, steward_gateway::metrics::Metrics)>,
    /// The gateway's address (`http://...`), when spawned with one.
    pub gateway_endpoint: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn security(signer: &TokenSigner) -> Security {
    security_with(signer, &KeySet::default())
}

fn security_with(signer: &TokenSigner, retired: &KeySet) -> Security {
    let mut keys = retired.clone();
    keys.add(signer.verifying_key());
    Security {
        policies: PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)
            .expect("policies"),
        verifier: TokenVerifier::new(keys),
    }
}

async fn pool(db: &TestDb, schema: &str) -> steward_kit::db::Pool {
    steward_kit::db::pool(
        &db.url,
        schema,
        &steward_kit::db::PoolConfig {
            max_connections: 8,
            ..Default::default()
        },
    )
    .await
    .expect("pool")
}

async fn wait_for_port(endpoint: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(endpoint.trim_start_matches("http://"))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        init_logs();
        let db = TestDb::create().await;
        let signer = options.signer.clone().unwrap_or_else(TokenSigner::generate);
        let mut retired = KeySet::default();
        for key in &options.retired_keys {
            retired.add(key.verifying_key());
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut audit_channel = None;
        let mut audit_endpoint = options.audit_endpoint.clone();
        if options.with_audit {
            let endpoint = spawn_audit(
                &db,
                &signer,
                "127.0.0.1:0".parse().unwrap(),
                options.retention_interval,
                stopped.clone(),
                &mut tasks,
            )
            .await;
            audit_channel = Some(
                Channel::from_shared(endpoint.clone())
                    .unwrap()
                    .connect_lazy(),
            );
            audit_endpoint = Some(endpoint);
        }
        if let Some(addr) = options.audit_listen {
            let endpoint = format!("http://{addr}");
            audit_channel = Some(
                Channel::from_shared(endpoint.clone())
                    .unwrap()
                    .connect_lazy(),
            );
            audit_endpoint = Some(endpoint);
        }
        let audit_endpoint_for_gateway = audit_endpoint.clone();
        let mut billing_channel = None;
        let mut billing_endpoint = None;
        if let Some(config) = options.billing.clone() {
            let app = steward_billing::Application::build(steward_billing::Deps {
                pool: pool(&db, steward_billing::SCHEMA).await,
                database_url: db.url.clone(),
                security: security(&signer),
                page_tokens: PageTokens::new(rand_key()),
                signer: Some(signer.clone()),
                server: ServerConfig::default(),
                outbox: OutboxConfig {
                    audit_endpoint: audit_endpoint.clone(),
                    ..OutboxConfig::default()
                },
                config: steward_billing::BillingConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..config
                },
            })
            .await
            .expect("bind billing");
            let endpoint = format!("http://{}", app.local_addr());
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                app.run_until_stopped(stopped).await.expect("billing runs");
            }));
            wait_for_port(&endpoint).await;
            billing_endpoint = Some(endpoint.clone());
            billing_channel = Some(Channel::from_shared(endpoint).unwrap().connect_lazy());
        }
        let app = steward_accounts::Application::build(steward_accounts::Deps {
            pool: pool(&db, steward_accounts::SCHEMA).await,
            database_url: db.url.clone(),
            security: security_with(&signer, &retired),
            page_tokens: PageTokens::new(rand_key()),
            signer: signer.clone(),
            retired_keys: retired.clone(),
            server: ServerConfig::default(),
            outbox: OutboxConfig {
                audit_endpoint,
                notifications_endpoint: None,
                relay: RelayConfig {
                    poll_interval: Duration::from_millis(500),
                    min_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(400),
                    ..RelayConfig::default()
                },
            },
            config: steward_accounts::AccountsConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                erasure_interval: options
                    .erasure_interval
                    .unwrap_or(Duration::from_secs(3600)),
                identity: options.identity.clone().unwrap_or_default(),
                ..Default::default()
            },
        })
        .await
        .expect("bind");
        let endpoint = format!("http://{}", app.local_addr());
        tasks.push(tokio::spawn(async move {
            app.run_until_stopped(stopped).await.expect("server runs");
        }));
        let channel = Channel::from_shared(endpoint.clone())
            .unwrap()
            .connect_lazy();
        wait_for_port(&endpoint).await;
        let mut gateway = None;
        let mut gateway_endpoint = None;
        if let Some(mut config) = options.gateway {
            config.listen = "127.0.0.1:0".parse().unwrap();
            config.backends.clear();
            config.backends.insert("accounts".into(), endpoint.clone());
            for (name, channel_endpoint) in [
                ("audit", audit_endpoint_for_gateway.clone()),
                ("billing", billing_endpoint.clone()),
            ] {
                if let Some(url) = channel_endpoint {
                    config.backends.insert(name.into(), url);
                }
            }
            let app = steward_gateway::Application::build(steward_gateway::Deps {
                config,
                server: ServerConfig::default(),
                policies: security(&signer).policies,
                keys: KeySet::default(),
                signer: Some(signer.clone()),
            })
            .await
            .expect("bind gateway");
            let url = format!("http://{}", app.local_addr());
            let metrics = app.metrics();
            let stopped = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                app.run_until_stopped(stopped).await.expect("gateway runs");
            }));
            wait_for_port(&url).await;
            gateway = Some((
                Channel::from_shared(url.clone()).unwrap().connect_lazy(),
                metrics,
            ));
            gateway_endpoint = Some(url);
        }
        Self {
            db,
            signer,
            endpoint,
            channel,
            audit_channel,
            billing_channel,
            gateway,
            gateway_endpoint,
            stop,
            tasks,
        }
    }

    fn gateway_channel(&self) -> Channel {
        self.gateway
            .as_ref()
            .expect("spawned with a gateway")
            .0
            .clone()
    }

    /// The gateway's metrics registry.
    pub fn gateway_metrics(&self) -> steward_gateway::metrics::Metrics {
        self.gateway
            .as_ref()
            .expect("spawned with a gateway")
            .1
            .clone()
    }

    /// Accounts through the gateway, with `token` as bearer.
    pub fn gw_accounts(&self, token: Option<String>) -> AccountsClient {
        pb::accounts_service_client::AccountsServiceClient::with_interceptor(
            self.gateway_channel(),
            Bearer(token),
        )
    }

    /// Identity through the gateway.
    pub fn gw_auth(&self, token: Option<String>) -> AuthClient {
        pb::auth_service_client::AuthServiceClient::with_interceptor(
            self.gateway_channel(),
            Bearer(token),
        )
    }

    /// Audit through the gateway.
    pub fn gw_audit(&self, token: Option<String>) -> AuditClient {
        steward_proto::audit::audit_service_client::AuditServiceClient::with_interceptor(
            self.gateway_channel(),
            Bearer(token),
        )
    }

    /// Billing through the gateway.
    pub fn gw_billing(&self, token: Option<String>) -> BillingClient {
        steward_proto::billing::billing_service_client::BillingServiceClient::with_interceptor(
            self.gateway_channel(),
            Bearer(token),
        )
    }

    /// Identity directly on accounts.
    pub fn auth(&self, token: Option<String>) -> AuthClient {
        pb::auth_service_client::AuthServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer(token),
        )
    }

    /// Starts the audit service late, on `addr` (see `Options::audit_listen`).
    pub async fn start_audit(&mut self, addr: std::net::SocketAddr) {
        let stopped = self.stop.subscribe();
        spawn_audit(&self.db, &self.signer, addr, None, stopped, &mut self.tasks).await;
    }

    /// An audit client with a USER_ADMIN token.
    pub fn audit(&self) -> AuditClient {
        self.audit_as(Some(self.token(ADMIN_ID, &[Role::UserAdmin])))
    }

    pub fn audit_as(&self, token: Option<String>) -> AuditClient {
        steward_proto::audit::audit_service_client::AuditServiceClient::with_interceptor(
            self.audit_channel.clone().expect("spawned with audit"),
            Bearer(token),
        )
        .max_decoding_message_size(64 * 1024 * 1024)
    }

    /// A billing client with a USER_ADMIN token.
    pub fn billing(&self) -> BillingClient {
        self.billing_as(Some(self.token(ADMIN_ID, &[Role::UserAdmin])))
    }

    pub fn billing_as(&self, token: Option<String>) -> BillingClient {
        steward_proto::billing::billing_service_client::BillingServiceClient::with_interceptor(
            self.billing_channel.clone().expect("spawned with billing"),
            Bearer(token),
        )
    }

    pub fn audit_channel_for_tests(&self) -> Channel {
        self.audit_channel.clone().expect("spawned with audit")
    }

    /// An ingest client with a PLATFORM_SERVICE token.
    pub fn ingest(&self) -> IngestClient {
        steward_proto::audit::audit_ingest_service_client::AuditIngestServiceClient::with_interceptor(
            self.audit_channel.clone().expect("spawned with audit"),
            Bearer(Some(self.token("service:test", &[Role::PlatformService]))),
        )
    }

    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.signer
            .sign(&Claims::new(subject, roles, Duration::from_secs(600)))
    }

    pub fn client(&self, token: Option<String>) -> AccountsClient {
        pb::accounts_service_client::AccountsServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer(token),
        )
    }

    /// A client holding a USER_ADMIN token (subject `admin-1`).
    pub fn admin(&self) -> AccountsClient {
        self.client(Some(self.token(ADMIN_ID, &[Role::UserAdmin])))
    }

    /// A client acting as user `id` with only the USER role.
    pub fn as_user(&self, id: &str) -> AccountsClient {
        self.client(Some(self.token(id, &[Role::User])))
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Stops the servers and waits for them to drain.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Creates a user through the API and returns it.
    pub async fn create_user(&self, email: &str) -> pb::User {
        self.admin()
            .create_user(pb::CreateUserRequest {
                email: email.into(),
                ..Default::default()
            })
            .await
            .expect("create user")
            .into_inner()
            .user
            .expect("user")
    }
}

/// Server logs in test output (captured unless a test fails); level from
/// `STEWARD_LOG`, default warn.
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

async fn spawn_audit(
    db: &TestDb,
    signer: &TokenSigner,
    listen: std::net::SocketAddr,
    retention_interval: Option<Duration>,
    stopped: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> String {
    let app = steward_audit::Application::build(steward_audit::Deps {
        pool: pool(db, steward_audit::SCHEMA).await,
        security: security(signer),
        page_tokens: PageTokens::new(rand_key()),
        server: ServerConfig::default(),
        config: steward_audit::AuditConfig {
            listen,
            retention_interval: retention_interval.unwrap_or(Duration::from_secs(3600)),
            ..Default::default()
        },
    })
    .await
    .expect("bind audit");
    let endpoint = format!("http://{}", app.local_addr());
    tasks.push(tokio::spawn(async move {
        app.run_until_stopped(stopped).await.expect("audit runs");
    }));
    wait_for_port(&endpoint).await;
    endpoint
}

pub const ADMIN_ID: &str = "0190b7c4-0000-7000-8000-00000000ad01";

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// The reason of an `ErrorInfo` detail.
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The fields named by `BadRequest` field violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Accounts' outbox rows for `destination`, decoded.
pub async fn outbox<M: prost::Message + Default>(app: &TestApp, destination: &str) -> Vec<M> {
    outbox_in(app, steward_accounts::SCHEMA, destination).await
}

/// A service schema's outbox rows for `destination`, decoded.
pub async fn outbox_in<M: prost::Message + Default>(
    app: &TestApp,
    schema: &str,
    destination: &str,
) -> Vec<M> {
    use diesel_async::RunQueryDsl;
    let mut conn = steward_kit::db::connect(&app.db.url, schema)
        .await
        .expect("connect to test database");
    let payloads: Vec<Vec<u8>> =
        diesel::sql_query("SELECT payload FROM outbox WHERE destination = $1 ORDER BY id")
            .bind::<diesel::sql_types::Text, _>(destination)
            .load::<Payload>(&mut conn)
            .await
            .expect("read outbox")
            .into_iter()
            .map(|p| p.payload)
            .collect();
    payloads
        .iter()
        .map(|p| M::decode(p.as_slice()).expect("outbox payload decodes"))
        .collect()
}

/// Audit events waiting in the outbox.
pub async fn audit_events(app: &TestApp) -> Vec<steward_proto::audit::AuditEvent> {
    outbox(app, "audit").await
}

#[derive(diesel::QueryableByName)]
struct Payload {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    payload: Vec<u8>,
}

/// Runs raw SQL in the accounts schema of the test database.
pub async fn exec(app: &TestApp, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    if let Err(err) = app.db.accounts().await.batch_execute(sql).await {
        panic!("{err}\n{sql}");
    }
}
