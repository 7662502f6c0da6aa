//! `steward`: every Steward component in one binary.
//!
//! * `steward up`: all components in one process (development, small installs);
//! * `steward serve <component>`: one component (how the Helm chart runs them);
//! * `steward migrate <component|all>`: apply migrations;
//! * `steward token issue`: mint an access token with the signing key;
//! * `steward user create-admin`: bootstrap a USER_ADMIN;
//! * `steward outbox list|show|replay`: the outbox backlog and parked rows.

mod runtime;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use steward::{Component, config};

#[derive(Parser)]
#[command(
    name = "steward",
    version,
    about = "Steward: customer administration for hosting platforms"
)]
struct Cli {
    /// TOML configuration file (layered under STEWARD_* variables).
    #[arg(long, global = true, env = "STEWARD_CONFIG")]
    config: Option<PathBuf>,
    /// Where dev state lives: signing key, private PostgreSQL cluster.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every component in this process.
    Up,
    /// Run one component.
    Serve { component: Component },
    /// Apply a component's migrations (or all).
    Migrate { component: MigrateTarget },
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// User administration.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The audit trail's tamper evidence.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The services' outboxes: backlog, parked rows, replay.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the database against a checkpoint kept outside it (detects
    /// truncation, rollback, rewriting, forged tombstones and erasures).
    Verify {
        /// A checkpoint JSON file (from audit.checkpoint_dir or the log).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Base64 chain public key; repeat for several. Default: the
        /// configured chain key's.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Backlog per service and destination, and the parked rows.
    List {
        /// Only this component's outbox.
        #[arg(long)]
        component: Option<Component>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One row (SCHEMA:ID, as `list` prints it), its payload decoded.
    Show { row: String },
    /// Makes parked rows due again: the named ones, or `--all`.
    Replay {
        rows: Vec<String>,
        /// Every parked row (of `--component`, else of every service).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        component: Option<Component>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token signed with the configured key; printed as the last line.
    Issue {
        #[arg(long)]
        subject: String,
        /// USER, USER_ADMIN or PLATFORM_SERVICE; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime, e.g. 1h, 30m, 90d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a USER_ADMIN; a password is generated and printed if not given.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MigrateTarget {
    All,
    Accounts,
    Billing,
    Quotas,
    Audit,
    Notifications,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = config::Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = Some(dir);
    }
    match cli.command {
        Command::Up => runtime::up(config).await,
        Command::Serve { component } => runtime::serve(config, component).await,
        Command::Migrate { component } => {
            let components = match component {
                MigrateTarget::All => Component::SERVICES.to_vec(),
                MigrateTarget::Accounts => vec![Component::Accounts],
                MigrateTarget::Billing => vec![Component::Billing],
                MigrateTarget::Quotas => vec![Component::Quotas],
                MigrateTarget::Audit => vec![Component::Audit],
                MigrateTarget::Notifications => vec![Component::Notifications],
            };
            runtime::migrate(config, &components).await
        }
        Command::Token {
            command:
                TokenCommand::Issue {
                    subject,
                    roles,
                    ttl,
                },
        } => runtime::issue_token(config, &subject, &roles, ttl).await,
        Command::User {
            command: UserCommand::CreateAdmin { email, password },
        } => runtime::create_admin(config, &email, password).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    checkpoint,
                    public_keys,
                },
        } => runtime::audit_verify(config, &checkpoint, &public_keys).await,
        Command::Outbox { command } => match command {
            OutboxCommand::List { component, limit } => {
                runtime::outbox_list(config, component, limit).await
            }
            OutboxCommand::Show { row } => runtime::outbox_show(config, &row).await,
            OutboxCommand::Replay {
                rows,
                all,
                component,
            } => runtime::outbox_replay(config, &rows, component, all).await,
        },
    }
}
