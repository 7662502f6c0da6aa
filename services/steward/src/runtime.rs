//! What the subcommands do: resolve the database and keys, migrate, run.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use diesel_async::AsyncConnection;
use steward_accounts as accounts;
use steward_audit as audit;
use steward_billing as billing;
use steward_gateway as gateway;
use steward_kit::{
    RequestContext,
    auth::{Caller, Claims, KeySet, PolicyTable, Role, TokenSigner, TokenVerifier},
    db, devdb,
    outbox::AuditRecord,
    page::PageTokens,
    server::{Security, shutdown_signal},
    telemetry::{self, TelemetryConfig, TelemetryGuard},
};
use tokio::sync::watch;

use crate::{Component, config::Config};

/// Port of the private cluster `up` starts when no PostgreSQL is configured.
const PRIVATE_PG_PORT: u16 = 54329;
const DATABASE: &str = "steward";

fn init_telemetry(config: &Config) -> anyhow::Result<TelemetryGuard> {
    Ok(telemetry::init(&TelemetryConfig {
        log_format: config.log_format,
        otlp_endpoint: config.otlp_endpoint.clone(),
        service_name: Some("steward".into()),
    })?)
}

/// The database to use, and the private cluster if this process started one
/// (stopped when dropped).
struct Database {
    url: String,
    _cluster: Option<devdb::PrivateCluster>,
}

/// `STEWARD_DATABASE_URL`, else localhost:5432, else a private cluster under
/// the data dir; the `steward` database is created when missing.
async fn database(config: &Config) -> anyhow::Result<Database> {
    if let Some(url) = &config.database_url {
        return Ok(Database {
            url: url.clone(),
            _cluster: None,
        });
    }
    let (admin, cluster) = match devdb::local_server().await {
        Some(url) => (url, None),
        None => {
            let dir = config.data_dir().join("postgres");
            eprintln!(
                "no PostgreSQL configured or on localhost:5432; using a private cluster in {} (port {PRIVATE_PG_PORT})",
                dir.display()
            );
            let cluster = devdb::start_private_cluster(&dir, PRIVATE_PG_PORT).await?;
            (cluster.url.clone(), Some(cluster))
        }
    };
    devdb::ensure_database(&admin, DATABASE).await?;
    Ok(Database {
        url: devdb::with_database(&admin, DATABASE),
        _cluster: cluster,
    })
}

/// The configured signing key, else the data dir's dev key (created once).
fn signer(config: &Config) -> anyhow::Result<TokenSigner> {
    if let Some(file) = &config.auth.signing_key_file {
        return Ok(TokenSigner::from_file(file)?);
    }
    let dir = config.data_dir();
    let file = dir.join("signing-key");
    if file.exists() {
        return Ok(TokenSigner::from_file(&file)?);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let signer = TokenSigner::generate();
    write_secret(&file, &signer.to_file_contents())?;
    eprintln!("created a development signing key at {}", file.display());
    Ok(signer)
}

fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// `auth.public_keys`: keys rotated out but still verifying (and
/// published) until the tokens they signed expire.
fn retired_keys(config: &Config) -> anyhow::Result<KeySet> {
    let mut keys = KeySet::default();
    for key in &config.auth.public_keys {
        keys.add_base64(key).context("auth.public_keys")?;
    }
    Ok(keys)
}

fn security(config: &Config, signer: &TokenSigner) -> anyhow::Result<Security> {
    let mut keys = retired_keys(config)?;
    keys.add(signer.verifying_key());
    Ok(Security {
        policies: PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)?,
        verifier: TokenVerifier::new(keys),
    })
}

fn not_yet(component: Component) -> anyhow::Error {
    anyhow::anyhow!("component {component:?} is not part of this release yet")
}

pub async fn migrate(config: Config, components: &[Component]) -> anyhow::Result<()> {
    let database = database(&config).await?;
    let url = &database.url;
    for component in components {
        match component {
            Component::Accounts => {
                db::migrate(url, accounts::SCHEMA, accounts::MIGRATIONS).await?;
                println!("accounts: migrated");
            }
            Component::Audit => {
                db::migrate(url, audit::SCHEMA, audit::MIGRATIONS).await?;
                println!("audit: migrated");
            }
            Component::Billing => {
                db::migrate(url, billing::SCHEMA, billing::MIGRATIONS).await?;
                println!("billing: migrated");
            }
            other => return Err(not_yet(*other)),
        }
    }
    Ok(())
}

/// Builds the accounts server on `config.accounts.listen`.
async fn accounts_app(
    config: &Config,
    url: &str,
    signer: &TokenSigner,
) -> anyhow::Result<accounts::Application> {
    db::migrate(url, accounts::SCHEMA, accounts::MIGRATIONS).await?;
    let pool = db::pool(url, accounts::SCHEMA, &config.pool).await?;
    let app = accounts::Application::build(accounts::Deps {
        pool,
        database_url: url.to_owned(),
        security: security(config, signer)?,
        page_tokens: PageTokens::derive(&signer.derived_secret("page-tokens")),
        signer: signer.clone(),
        retired_keys: retired_keys(config)?,
        server: config.server.clone(),
        outbox: config.outbox.clone(),
        config: config.accounts.clone(),
    })
    .await
    .with_context(|| format!("binding accounts on {}", config.accounts.listen))?;
    Ok(app)
}

/// Builds the audit server on `config.audit.listen`.
async fn audit_app(
    config: &Config,
    url: &str,
    signer: &TokenSigner,
) -> anyhow::Result<audit::Application> {
    db::migrate(url, audit::SCHEMA, audit::MIGRATIONS).await?;
    let pool = db::pool(url, audit::SCHEMA, &config.pool).await?;
    audit::Application::build(audit::Deps {
        pool,
        security: security(config, signer)?,
        page_tokens: PageTokens::derive(&signer.derived_secret("page-tokens")),
        server: config.server.clone(),
        config: config.audit.clone(),
    })
    .await
    .with_context(|| format!("binding audit on {}", config.audit.listen))
}

/// Builds the billing server on `config.billing.listen`.
async fn billing_app(
    config: &Config,
    url: &str,
    signer: &TokenSigner,
) -> anyhow::Result<billing::Application> {
    db::migrate(url, billing::SCHEMA, billing::MIGRATIONS).await?;
    let pool = db::pool(url, billing::SCHEMA, &config.pool).await?;
    billing::Application::build(billing::Deps {
        pool,
        database_url: url.to_owned(),
        security: security(config, signer)?,
        page_tokens: PageTokens::derive(&signer.derived_secret("page-tokens")),
        signer: Some(signer.clone()),
        server: config.server.clone(),
        outbox: config.outbox.clone(),
        config: config.billing.clone(),
    })
    .await
    .with_context(|| format!("binding billing on {}", config.billing.listen))
}

/// Builds the gateway on `config.gateway.listen`.
async fn gateway_app(
    config: &Config,
    signer: &TokenSigner,
) -> anyhow::Result<gateway::Application> {
    let security = security(config, signer)?;
    Ok(gateway::Application::build(gateway::Deps {
        config: config.gateway.clone(),
        server: config.server.clone(),
        policies: security.policies,
        keys: retired_keys(config)?,
        signer: Some(signer.clone()),
    })
    .await?)
}

/// A component serving until the shared stop signal.
enum App {
    Accounts(Box<accounts::Application>),
    Audit(Box<audit::Application>),
    Billing(Box<billing::Application>),
    Gateway(Box<gateway::Application>),
}

impl App {
    async fn run(self, stopped: watch::Receiver<bool>) -> Result<(), tonic::transport::Error> {
        match self {
            App::Accounts(app) => app.run_until_stopped(stopped).await,
            App::Audit(app) => app.run_until_stopped(stopped).await,
            App::Billing(app) => app.run_until_stopped(stopped).await,
            App::Gateway(app) => app.run_until_stopped(stopped).await,
        }
    }
}

async fn run_until_signal(apps: Vec<App>) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for app in apps {
        tasks.spawn(app.run(stopped.clone()));
    }
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            let _ = stop.send(true);
        }
        Some(result) = tasks.join_next() => {
            let _ = stop.send(true);
            result??;
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

pub async fn up(config: Config) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(&config)?;
    let mut config = config;
    let database = database(&config).await?;
    let signer = signer(&config)?;
    let audit = audit_app(&config, &database.url, &signer).await?;
    if config.outbox.audit_endpoint.is_none() {
        config.outbox.audit_endpoint = Some(format!("http://{}", audit.local_addr()));
    }
    // In one process, accounts and billing relay their audit events to it.
    let accounts = accounts_app(&config, &database.url, &signer).await?;
    let billing = billing_app(&config, &database.url, &signer).await?;
    // The gateway fronts the components of this process.
    for (name, addr) in [
        ("accounts", accounts.local_addr()),
        ("billing", billing.local_addr()),
        ("audit", audit.local_addr()),
    ] {
        config
            .gateway
            .backends
            .insert(name.to_owned(), format!("http://{addr}"));
    }
    let gateway = gateway_app(&config, &signer).await?;
    println!("database       {}", redact(&database.url));
    println!("gateway        {}", gateway.local_addr());
    println!("accounts       {}", accounts.local_addr());
    println!("billing        {}", billing.local_addr());
    println!("audit          {}", audit.local_addr());
    println!("steward is up; Ctrl-C to stop");
    run_until_signal(vec![
        App::Accounts(Box::new(accounts)),
        App::Audit(Box::new(audit)),
        App::Billing(Box::new(billing)),
        App::Gateway(Box::new(gateway)),
    ])
    .await
}

pub async fn serve(config: Config, component: Component) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(&config)?;
    let signer = signer(&config)?;
    // The gateway holds no data: no database.
    if component == Component::Gateway {
        let app = gateway_app(&config, &signer).await?;
        tracing::info!(addr = %app.local_addr(), "gateway serving");
        return run_until_signal(vec![App::Gateway(Box::new(app))]).await;
    }
    let database = database(&config).await?;
    match component {
        Component::Accounts => {
            let app = accounts_app(&config, &database.url, &signer).await?;
            tracing::info!(addr = %app.local_addr(), "accounts serving");
            if config.outbox.audit_endpoint.is_none() {
                tracing::warn!("outbox.audit_endpoint is not set: audit events wait in the outbox");
            }
            run_until_signal(vec![App::Accounts(Box::new(app))]).await
        }
        Component::Billing => {
            let app = billing_app(&config, &database.url, &signer).await?;
            tracing::info!(addr = %app.local_addr(), "billing serving");
            run_until_signal(vec![App::Billing(Box::new(app))]).await
        }
        Component::Audit => {
            let app = audit_app(&config, &database.url, &signer).await?;
            tracing::info!(addr = %app.local_addr(), "audit serving");
            run_until_signal(vec![App::Audit(Box::new(app))]).await
        }
        other => Err(not_yet(other)),
    }
}

pub async fn issue_token(
    config: Config,
    subject: &str,
    roles: &[String],
    ttl: Duration,
) -> anyhow::Result<()> {
    let roles = roles
        .iter()
        .map(|r| {
            Role::parse(&r.to_uppercase()).with_context(|| {
                format!("unknown role {r}: use USER, USER_ADMIN or PLATFORM_SERVICE")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if subject.is_empty() {
        bail!("--subject must not be empty");
    }
    let signer = signer(&config)?;
    let token = signer.sign(&Claims::new(subject, &roles, ttl));
    eprintln!(
        "token for {subject} valid for {}",
        humantime::format_duration(ttl)
    );
    println!("{token}");
    Ok(())
}

fn generate_password() -> String {
    use rand::{Rng, distributions::Alphanumeric};
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

pub async fn create_admin(
    config: Config,
    email: &str,
    password: Option<String>,
) -> anyhow::Result<()> {
    let database = database(&config).await?;
    let url = &database.url;
    db::migrate(url, accounts::SCHEMA, accounts::MIGRATIONS).await?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(generate_password);
    if password.chars().count() < 12 {
        bail!("--password must be at least 12 characters");
    }
    let mut violations = steward_kit::FieldViolations::new();
    let email = accounts::domain::validate::email("email", email, &mut violations);
    if !violations.is_empty() {
        bail!("{violations}");
    }
    let input = accounts::commands::NewUserInput {
        email,
        group: "billing".into(),
        roles: vec![Role::UserAdmin],
        phone: None,
        reseller: None,
        ext_billing_id: None,
        notes: "created with `steward user create-admin`".into(),
        status: accounts::domain::UserStatus::Active,
        password_hash: Some(accounts::commands::hash_password(password.clone()).await?),
    };
    let mut conn = db::connect(url, accounts::SCHEMA).await?;
    let record = AuditRecord::new(
        accounts::grpc::SOURCE,
        "user.created",
        &Caller::system(),
        &RequestContext::default(),
        "",
    )
    .comment("trigger", "steward user create-admin");
    let user = conn
        .transaction::<_, accounts::error::Error, _>(async |conn| {
            accounts::commands::create_user(conn, input, record).await
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created USER_ADMIN {} ({})", user.email, user.id);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let colon = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..colon], &url[at..])
        }
        _ => url.to_owned(),
    }
}
