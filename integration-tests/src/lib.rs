//! Test harness: a migrated template database cloned per test, the accounts
//! server in-process on port 0, token minting, and a real audit-ingest gRPC
//! receiver for outbox relay tests.

pub mod db;
pub mod raw;
pub mod receiver;
pub mod stats;
pub mod tamper;

use std::time::Duration;

use steward::{
    Component,
    config::Config,
    suite::{Resolved, Suite},
};
use steward_kit::{
    auth::{Claims, KeySet, Role, TokenSigner},
    outbox::RelayConfig,
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

pub type QuotasClient = steward_proto::quotas::quotas_service_client::QuotasServiceClient<
    InterceptedService<Channel, Bearer>,
>;

/// A quotas client of the server at `endpoint`.
pub fn quotas_client(endpoint: &str, token: Option<String>) -> QuotasClient {
    steward_proto::quotas::quotas_service_client::QuotasServiceClient::with_interceptor(
        Channel::from_shared(endpoint.to_owned())
            .expect("an endpoint URL")
            .connect_lazy(),
        Bearer(token),
    )
}

pub type NotificationsClient =
    steward_proto::notifications::notifications_service_client::NotificationsServiceClient<
        InterceptedService<Channel, Bearer>,
    >;
pub type NotificationIngestClient =
    steward_proto::notifications::notification_ingest_service_client::NotificationIngestServiceClient<
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
    /// configuration (listen and backends are filled in, and a temporary
    /// refusal spool unless one is set). It runs on its own, so that
    /// [`TestApp::restart_gateway`] can restart it alone.
    pub gateway: Option<steward_gateway::GatewayConfig>,
    /// Accounts' sign-in rules (lockout thresholds and the like).
    pub identity: Option<steward_accounts::IdentityConfig>,
    /// The signing key (default: a fresh one) and retired keys still
    /// accepted and published (key rotation).
    pub signer: Option<TokenSigner>,
    pub retired_keys: Vec<TokenSigner>,
    /// The relays' timing (default: fast retries for tests).
    pub relay: Option<RelayConfig>,
    /// The audit service's configuration (its listen address is the
    /// test's): chain key, checkpoint directory, ...
    pub audit: Option<steward_audit::AuditConfig>,
    /// Serve kit's `/metrics` (on a port of the OS's choosing).
    pub metrics: bool,
    /// Also run quotas (same database); accounts' outbox ships group
    /// membership to it.
    pub with_quotas: bool,
    /// Also run notifications (same database) with this configuration
    /// (listen is filled in); accounts' outbox ships mail requests to it.
    pub with_notifications: Option<steward::config::NotificationsConfig>,
}

pub struct TestApp {
    pub db: TestDb,
    pub signer: TokenSigner,
    pub endpoint: String,
    channel: Channel,
    audit_channel: Option<Channel>,
    billing_channel: Option<Channel>,
    audit_url: Option<String>,
    billing_url: Option<String>,
    gateway: Option<RunningGateway>,
    /// The gateway's address (`http://...`), when spawned with one.
    pub gateway_endpoint: Option<String>,
    /// `http://.../metrics` of the suite, when spawned with `metrics`.
    pub metrics_url: Option<String>,
    /// The quotas server's address, when spawned with it.
    pub quotas_endpoint: Option<String>,
    /// The notifications server's address, when spawned with it.
    pub notifications_endpoint: Option<String>,
    /// The refusal spool made for the gateway (removed on drop).
    _spool: Option<TempDir>,
    /// What the suite was built from, to start more components later.
    config: Config,
    resolved: Resolved,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The gateway, run apart from the other components.
struct RunningGateway {
    channel: Channel,
    metrics: steward_gateway::metrics::Metrics,
    /// Its configuration, backends filled in: what a restart builds again.
    config: Config,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds and starts a gateway-only suite from `config`.
async fn start_gateway(config: Config, resolved: &Resolved) -> (RunningGateway, String) {
    let suite = Suite::build(config.clone(), resolved, &[Component::Gateway])
        .await
        .expect("build the gateway");
    let endpoint = suite.url(Component::Gateway);
    let metrics = suite.gateway_metrics().expect("gateway built");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        suite
            .run_until_stopped(stopped)
            .await
            .expect("the gateway runs");
    });
    wait_for_port(&endpoint).await;
    let channel = Channel::from_shared(endpoint.clone())
        .expect("valid url")
        .connect_lazy();
    (
        RunningGateway {
            channel,
            metrics,
            config,
            stop,
            task,
        },
        endpoint,
    )
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

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

/// The configuration a test suite runs with: `steward up`'s defaults, with
/// ports chosen by the OS, a small pool, fast relays and the options' rules.
fn test_config(options: &Options) -> Config {
    let mut config = Config::default();
    config.pool.max_connections = 8;
    // Clients and the gateway are on loopback, as with `steward up`.
    config.server.trusted_proxies = vec![
        "127.0.0.0/8".parse().expect("valid net"),
        "::1/128".parse().expect("valid net"),
    ];
    config.outbox.audit_endpoint = options
        .audit_endpoint
        .clone()
        .or_else(|| options.audit_listen.map(|a| format!("http://{a}")));
    config.outbox.relay = options.relay.clone().unwrap_or(RelayConfig {
        poll_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        ..RelayConfig::default()
    });
    config.accounts.listen = any_port();
    config.accounts.erasure_interval = options
        .erasure_interval
        .unwrap_or(Duration::from_secs(3600));
    config.accounts.identity = options.identity.clone().unwrap_or_default();
    if let Some(audit) = &options.audit {
        config.audit = audit.clone();
    }
    config.audit.listen = any_port();
    config.audit.retention_interval = options
        .retention_interval
        .unwrap_or(Duration::from_secs(3600));
    if let Some(billing) = &options.billing {
        config.billing = billing.clone();
    }
    config.billing.listen = any_port();
    config.quotas.listen = any_port();
    if let Some(notifications) = &options.with_notifications {
        config.notifications = notifications.clone();
    }
    config.notifications.listen = any_port();
    if let Some(gateway) = &options.gateway {
        config.gateway = gateway.clone();
    }
    config.gateway.listen = any_port();
    config.gateway.backends.clear();
    if let Some(addr) = options.audit_listen {
        config
            .gateway
            .backends
            .insert("audit".into(), format!("http://{addr}"));
    }
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    /// Builds the components the options ask for with the same [`Suite`]
    /// `steward up` uses, against a fresh test database.
    pub async fn spawn_with(options: Options) -> Self {
        init_logs();
        let db = TestDb::create().await;
        let signer = options.signer.clone().unwrap_or_else(TokenSigner::generate);
        let mut retired = KeySet::default();
        for key in &options.retired_keys {
            retired.add(key.verifying_key());
        }
        let resolved = Resolved {
            database_url: db.url.clone(),
            signer: signer.clone(),
            retired,
        };
        let config = test_config(&options);
        let mut components = vec![Component::Accounts];
        if options.with_audit {
            components.push(Component::Audit);
        }
        if options.billing.is_some() {
            components.push(Component::Billing);
        }
        if options.with_quotas {
            components.push(Component::Quotas);
        }
        if options.with_notifications.is_some() {
            components.push(Component::Notifications);
        }
        let mut suite_config = config.clone();
        if options.metrics {
            suite_config.metrics.listen = Some(any_port());
        }
        let suite = Suite::build(suite_config, &resolved, &components)
            .await
            .expect("build the suite");
        let metrics_url = suite.metrics_addr().map(|a| format!("http://{a}/metrics"));
        let urls: Vec<String> = suite.addrs().map(|(_, a)| format!("http://{a}")).collect();
        let url = |c: Component| suite.addr(c).map(|a| format!("http://{a}"));
        let lazy = |url: &str| Channel::from_shared(url.to_owned()).unwrap().connect_lazy();
        let endpoint = url(Component::Accounts).expect("accounts built");
        let audit_url =
            url(Component::Audit).or_else(|| options.audit_listen.map(|a| format!("http://{a}")));
        let billing_url = url(Component::Billing);
        let quotas_endpoint = url(Component::Quotas);
        let notifications_endpoint = url(Component::Notifications);
        let mut spool = None;
        let mut gateway = None;
        let mut gateway_endpoint = None;
        if options.gateway.is_some() {
            let mut config = config.clone();
            for (component, addr) in suite.addrs() {
                config
                    .gateway
                    .backends
                    .insert(component.name().to_owned(), format!("http://{addr}"));
            }
            if config.gateway.refusal_spool_dir.is_none() {
                let dir = TempDir::new("steward-gateway-spool");
                config.gateway.refusal_spool_dir = Some(dir.0.clone());
                spool = Some(dir);
            }
            let (running, endpoint) = start_gateway(config, &resolved).await;
            gateway = Some(running);
            gateway_endpoint = Some(endpoint);
        }
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![tokio::spawn(async move {
            suite
                .run_until_stopped(stopped)
                .await
                .expect("the suite runs");
        })];
        for u in &urls {
            wait_for_port(u).await;
        }
        Self {
            db,
            signer,
            channel: lazy(&endpoint),
            endpoint,
            audit_channel: audit_url.as_deref().map(lazy),
            billing_channel: billing_url.as_deref().map(lazy),
            audit_url,
            billing_url,
            gateway,
            gateway_endpoint,
            metrics_url,
            quotas_endpoint,
            notifications_endpoint,
            _spool: spool,
            config,
            resolved,
            stop,
            tasks,
        }
    }

    fn gateway_channel(&self) -> Channel {
        self.gateway
            .as_ref()
            .expect("spawned with a gateway")
            .channel
            .clone()
    }

    /// The gateway's metrics registry.
    pub fn gateway_metrics(&self) -> steward_gateway::metrics::Metrics {
        self.gateway
            .as_ref()
            .expect("spawned with a gateway")
            .metrics
            .clone()
    }

    /// Stops the gateway alone (draining it), then builds and starts it
    /// again with the same configuration (the same refusal spool) on a new
    /// port. `change` adjusts the configuration first.
    pub async fn restart_gateway(
        &mut self,
        change: impl FnOnce(&mut steward_gateway::GatewayConfig),
    ) {
        let old = self.gateway.take().expect("spawned with a gateway");
        let _ = old.stop.send(true);
        old.task.await.expect("the gateway stopped");
        let mut config = old.config;
        change(&mut config.gateway);
        config.gateway.listen = any_port();
        let (running, endpoint) = start_gateway(config, &self.resolved).await;
        self.gateway = Some(running);
        self.gateway_endpoint = Some(endpoint);
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

    /// A quotas client with `token` as bearer.
    pub fn quotas_as(&self, token: Option<String>) -> QuotasClient {
        quotas_client(
            self.quotas_endpoint
                .as_deref()
                .expect("spawned with quotas"),
            token,
        )
    }

    /// A quotas client holding a USER_ADMIN token.
    pub fn quotas(&self) -> QuotasClient {
        self.quotas_as(Some(self.token(ADMIN_ID, &[Role::UserAdmin])))
    }

    /// Starts one more quotas server on the same database (a replica);
    /// returns its address.
    pub async fn start_quotas_replica(&mut self) -> String {
        let mut config = self.config.clone();
        config.quotas.listen = any_port();
        config.quotas.accounts_endpoint = Some(self.endpoint.clone());
        let suite = Suite::build(config, &self.resolved, &[Component::Quotas])
            .await
            .expect("build quotas");
        let url = suite.url(Component::Quotas);
        let stopped = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            suite.run_until_stopped(stopped).await.expect("quotas runs");
        }));
        wait_for_port(&url).await;
        url
    }

    /// Starts the audit service late, on `addr` (see `Options::audit_listen`).
    pub async fn start_audit(&mut self, addr: std::net::SocketAddr) {
        let mut config = self.config.clone();
        config.audit.listen = addr;
        let suite = Suite::build(config, &self.resolved, &[Component::Audit])
            .await
            .expect("build audit");
        let stopped = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            suite.run_until_stopped(stopped).await.expect("audit runs");
        }));
        wait_for_port(&format!("http://{addr}")).await;
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

    /// The billing server's channel (raw calls).
    pub fn billing_channel(&self) -> Channel {
        self.billing_channel.clone().expect("spawned with billing")
    }

    fn notifications_channel(&self) -> Channel {
        let endpoint = self
            .notifications_endpoint
            .as_deref()
            .expect("spawned with notifications");
        Channel::from_shared(endpoint.to_owned())
            .expect("an endpoint URL")
            .connect_lazy()
    }

    /// The notifications admin API with a USER_ADMIN token.
    pub fn notifications(&self) -> NotificationsClient {
        steward_proto::notifications::notifications_service_client::NotificationsServiceClient::with_interceptor(
            self.notifications_channel(),
            Bearer(Some(self.token(ADMIN_ID, &[Role::UserAdmin]))),
        )
    }

    /// Notification ingest with a PLATFORM_SERVICE token (what a relay sends).
    pub fn notification_ingest(&self) -> NotificationIngestClient {
        steward_proto::notifications::notification_ingest_service_client::NotificationIngestServiceClient::with_interceptor(
            self.notifications_channel(),
            Bearer(Some(self.token("service:test", &[Role::PlatformService]))),
        )
    }

    pub fn billing_as(&self, token: Option<String>) -> BillingClient {
        steward_proto::billing::billing_service_client::BillingServiceClient::with_interceptor(
            self.billing_channel.clone().expect("spawned with billing"),
            Bearer(token),
        )
    }

    /// A billing client (USER_ADMIN) on an HTTP/2 connection of its own, as
    /// a separate client process would have: benchmarks give each of their
    /// concurrent clients one, like their SQL baselines' own connections.
    pub fn billing_own_connection(&self) -> BillingClient {
        let url = self.billing_url.as_deref().expect("spawned with billing");
        steward_proto::billing::billing_service_client::BillingServiceClient::with_interceptor(
            Channel::from_shared(url.to_owned()).unwrap().connect_lazy(),
            Bearer(Some(self.token(ADMIN_ID, &[Role::UserAdmin]))),
        )
    }

    /// An ingest client (PLATFORM_SERVICE) on a connection of its own.
    pub fn ingest_own_connection(&self) -> IngestClient {
        let url = self.audit_url.as_deref().expect("spawned with audit");
        steward_proto::audit::audit_ingest_service_client::AuditIngestServiceClient::with_interceptor(
            Channel::from_shared(url.to_owned()).unwrap().connect_lazy(),
            Bearer(Some(self.token("service:test", &[Role::PlatformService]))),
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
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(gateway) = self.gateway.take() {
            let _ = gateway.stop.send(true);
            let _ = gateway.task.await;
        }
        for task in std::mem::take(&mut self.tasks) {
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

pub const ADMIN_ID: &str = "0190b7c4-0000-7000-8000-00000000ad01";

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
