//! What the subcommands do. Components are composed by [`Suite`] only.

use std::time::Duration;

use anyhow::{Context, bail};
use steward::{
    Component,
    config::Config,
    resolve::{self, redact},
    suite::Suite,
};
use steward_accounts as accounts;
use steward_kit::{
    auth::{Claims, Role},
    db,
    outbox::admin,
    server::shutdown_signal,
    telemetry::{self, TelemetryConfig, TelemetryGuard},
};
use tokio::sync::watch;

fn init_telemetry(config: &Config, component: &str) -> anyhow::Result<TelemetryGuard> {
    Ok(telemetry::init(&TelemetryConfig {
        log_format: config.log_format,
        otlp_endpoint: config.otlp_endpoint.clone(),
        service_name: Some(component.to_owned()),
    })?)
}

/// Runs `suite` until SIGTERM/Ctrl-C or until a component fails.
async fn run_until_signal(suite: Suite) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(suite.run_until_stopped(stopped));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = stop.closed() => {},
    }
    let _ = stop.send(true);
    running.await?
}

/// The gateway's refusal spool, when not configured: in the data dir.
fn spool_in_data_dir(config: &mut Config) {
    if config.gateway.refusal_spool_dir.is_none() {
        config.gateway.refusal_spool_dir = Some(config.data_dir().join("gateway-refusals"));
    }
}

pub async fn migrate(config: Config, components: &[Component]) -> anyhow::Result<()> {
    let database = resolve::database(&config).await?;
    for component in components {
        let migrations = match component {
            Component::Accounts => accounts::MIGRATIONS,
            Component::Audit => steward_audit::MIGRATIONS,
            Component::Billing => steward_billing::MIGRATIONS,
            Component::Quotas => steward_quotas::MIGRATIONS,
            Component::Notifications => steward_notifications::MIGRATIONS,
            other => bail!("component {other:?} is not part of this release yet"),
        };
        let schema = component.schema().expect("services have schemas");
        db::migrate(&database.url, schema, migrations).await?;
        println!("{}: migrated", component.name());
    }
    Ok(())
}

pub async fn up(mut config: Config) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(&config, "steward")?;
    // One machine: the gateway in front is on loopback, and its forwarded
    // client address is believed from there (nothing else is trusted).
    if config.server.trusted_proxies.is_empty() {
        config.server.trusted_proxies = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
        eprintln!(
            "development: services trust client addresses forwarded from loopback (server.trusted_proxies)"
        );
    }
    resolve::audit_chain_key(&mut config)?;
    resolve::totp_key(&mut config)?;
    if config.audit.checkpoint_dir.is_none() {
        config.audit.checkpoint_dir = Some(config.data_dir().join("audit-checkpoints"));
    }
    if config.gateway.trusted_proxies.is_empty() {
        eprintln!(
            "the gateway trusts no proxy: clients' x-forwarded-for is ignored (gateway.trusted_proxies)"
        );
    }
    spool_in_data_dir(&mut config);
    // The web console, when built here: the gateway serves it at `/`.
    if config.gateway.console_dir.is_none() {
        config.gateway.console_dir = std::fs::canonicalize("console/dist")
            .ok()
            .filter(|dist| dist.join("index.html").is_file());
    }
    let console = config.gateway.console_dir.is_some();
    let (resolved, _database) = resolve::resolve(&config).await?;
    let suite = Suite::build(config, &resolved, &Component::ALL).await?;
    println!("database       {}", redact(&resolved.database_url));
    for component in [
        Component::Gateway,
        Component::Accounts,
        Component::Billing,
        Component::Quotas,
        Component::Audit,
        Component::Notifications,
    ] {
        if let Some(addr) = suite.addr(component) {
            println!("{:<14} {addr}", component.name());
        }
    }
    if let Some(addr) = suite.metrics_addr() {
        println!("metrics        http://{addr}/metrics");
    }
    if let Some(mail) = suite.mail_transport() {
        if mail.starts_with(".eml") {
            println!(
                "mail           no SMTP server configured ([notifications.smtp] host): {mail}"
            );
        } else {
            println!("mail           {mail}");
        }
    }
    match suite.addr(Component::Gateway) {
        Some(addr) if console => println!("console        http://{addr}/"),
        _ => println!(
            "console        not built: npm --prefix console ci && npm --prefix console run build, then restart"
        ),
    }
    println!("steward is up; Ctrl-C to stop");
    run_until_signal(suite).await
}

pub async fn serve(mut config: Config, component: Component) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(&config, &format!("steward-{}", component.name()))?;
    if component != Component::Gateway
        && component != Component::Audit
        && config.outbox.audit_endpoint.is_none()
    {
        tracing::warn!("outbox.audit_endpoint is not set: audit events wait in the outbox");
    }
    if component == Component::Audit {
        resolve::audit_chain_key(&mut config)?;
    }
    if component == Component::Accounts {
        resolve::totp_key(&mut config)?;
    }
    if component == Component::Gateway {
        spool_in_data_dir(&mut config);
    }
    let (resolved, _database) = resolve::resolve(&config).await?;
    let suite = Suite::build(config, &resolved, &[component]).await?;
    if let Some(addr) = suite.addr(component) {
        tracing::info!(%addr, component = component.name(), "serving");
    }
    if let Some(mail) = suite.mail_transport() {
        tracing::info!(mail, "notifications delivers mail");
    }
    run_until_signal(suite).await
}

/// The schemas `steward outbox` looks at: one component's, or every service's.
fn outbox_schemas(component: Option<Component>) -> anyhow::Result<Vec<&'static str>> {
    match component {
        Some(c) => Ok(vec![
            c.schema()
                .with_context(|| format!("{} has no outbox", c.name()))?,
        ]),
        None => Ok(vec![
            accounts::SCHEMA,
            steward_billing::SCHEMA,
            steward_quotas::SCHEMA,
        ]),
    }
}

/// `steward outbox list`: the backlog per service and destination, then the
/// parked rows with their last error.
pub async fn outbox_list(
    config: Config,
    component: Option<Component>,
    limit: i64,
) -> anyhow::Result<()> {
    let database = resolve::database(&config).await?;
    for schema in outbox_schemas(component)? {
        let mut conn = db::connect(&database.url, schema).await?;
        for b in admin::backlogs(&mut conn).await? {
            println!(
                "{schema}/{}: {} pending (oldest {:.0} s), {} parked",
                b.destination, b.pending, b.oldest_pending_seconds, b.parked
            );
        }
        for row in admin::parked(&mut conn, limit).await? {
            println!(
                "  parked {schema}:{} {} event {} written {} attempts {}: {}",
                row.id,
                row.destination,
                row.event_id,
                row.created_at.to_rfc3339(),
                row.attempts,
                row.last_error.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `steward outbox show SCHEMA:ID`: one row, its payload decoded.
pub async fn outbox_show(config: Config, row: &str) -> anyhow::Result<()> {
    let (schema, id) = parse_row(row)?;
    let database = resolve::database(&config).await?;
    let mut conn = db::connect(&database.url, &schema).await?;
    let Some((row, payload)) = admin::show(&mut conn, id).await? else {
        bail!("no outbox row {schema}:{id}");
    };
    println!("{row:#?}\n{payload}");
    Ok(())
}

/// `steward outbox replay [SCHEMA:ID ...] [--all]`: parked rows due again.
pub async fn outbox_replay(
    config: Config,
    rows: &[String],
    all: Option<Component>,
    every: bool,
) -> anyhow::Result<()> {
    let database = resolve::database(&config).await?;
    if rows.is_empty() {
        if !every {
            bail!("name rows (SCHEMA:ID, see `steward outbox list`) or pass --all");
        }
        for schema in outbox_schemas(all)? {
            let mut conn = db::connect(&database.url, schema).await?;
            println!(
                "{schema}: {} rows due again",
                admin::replay(&mut conn, &[]).await?
            );
        }
        return Ok(());
    }
    for row in rows {
        let (schema, id) = parse_row(row)?;
        let mut conn = db::connect(&database.url, &schema).await?;
        match admin::replay(&mut conn, &[id]).await? {
            0 => println!("{schema}:{id}: not parked"),
            _ => println!("{schema}:{id}: due again"),
        }
    }
    Ok(())
}

fn parse_row(row: &str) -> anyhow::Result<(String, i64)> {
    let (schema, id) = row
        .split_once(':')
        .with_context(|| format!("{row}: expected SCHEMA:ID, e.g. accounts:42"))?;
    let id = id
        .parse()
        .with_context(|| format!("{row}: the id is a number"))?;
    Ok((schema.to_owned(), id))
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
    let signer = resolve::signer(&config)?;
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
    let database = resolve::database(&config).await?;
    let url = &database.url;
    db::migrate(url, accounts::SCHEMA, accounts::MIGRATIONS).await?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(generate_password);
    let pool = db::pool(url, accounts::SCHEMA, &config.pool).await?;
    let user = accounts::users::commands::create_admin(&pool, email, &password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created USER_ADMIN {} ({})", user.email, user.id);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

/// `steward audit verify --checkpoint FILE`: the database against a
/// checkpoint kept outside it, with public keys only (`--public-key`, else
/// those of the configured chain key and `audit.chain_public_keys`).
pub async fn audit_verify(
    mut config: Config,
    checkpoint: &std::path::Path,
    public_keys: &[String],
) -> anyhow::Result<()> {
    use steward_audit::domain::seal::ChainKeys;
    let mut keys = ChainKeys::default();
    if public_keys.is_empty() {
        resolve::audit_chain_key(&mut config)?;
        keys = config.audit.chain_keys()?.1;
    }
    for key in public_keys {
        keys.add_base64(key).context("--public-key")?;
    }
    let database = resolve::database(&config).await?;
    let report =
        steward_audit::chain::checkpoint::verify_checkpoint(checkpoint, &keys, &database.url)
            .await?;
    println!(
        "checkpoint     sequence {} at {}",
        report.checkpoint.sequence, report.checkpoint.issued_at
    );
    println!("chain head     {}", report.head);
    println!("events checked {}", report.events_checked);
    match report.broken {
        None => {
            println!("ok: the database holds the history the checkpoint vouches for");
            Ok(())
        }
        Some((seq, why)) => bail!("tampering detected at sequence {seq}: {why}"),
    }
}
