//! Resolving what a suite runs on: the database (configured, local, or a
//! private cluster) and the keys (configured, or the data dir's dev key).

use std::path::Path;

use anyhow::Context;
use steward_kit::{
    auth::{KeySet, TokenSigner},
    devdb,
};

use crate::{config::Config, suite::Resolved};

/// Port of the private cluster `up` starts when no PostgreSQL is configured.
const PRIVATE_PG_PORT: u16 = 54329;
const DATABASE: &str = "steward";

/// The database to use, and the private cluster if this process started one
/// (stopped when dropped).
pub struct Database {
    pub url: String,
    _cluster: Option<devdb::PrivateCluster>,
}

/// `STEWARD_DATABASE_URL`, else localhost:5432, else a private cluster under
/// the data dir; the `steward` database is created when missing.
pub async fn database(config: &Config) -> anyhow::Result<Database> {
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
pub fn signer(config: &Config) -> anyhow::Result<TokenSigner> {
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

/// `audit.chain_key_file`, else the data dir's `audit-chain-key` (created
/// once, like the signing key): the key that signs the audit chain, kept
/// outside the database.
pub fn audit_chain_key(config: &mut Config) -> anyhow::Result<()> {
    if config.audit.chain_key_file.is_some() {
        return Ok(());
    }
    let dir = config.data_dir();
    let file = dir.join("audit-chain-key");
    if !file.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = steward_audit::domain::seal::ChainSigner::generate();
        write_secret(&file, &key.to_file_contents())?;
        eprintln!(
            "created a development audit chain key at {}",
            file.display()
        );
    }
    config.audit.chain_key_file = Some(file);
    Ok(())
}

/// `accounts.identity.totp_key_file`, else the data dir's `totp-key`
/// (created once, like the signing key): the key-encryption key of TOTP
/// secrets at rest, kept outside the database.
pub fn totp_key(config: &mut Config) -> anyhow::Result<()> {
    if config.accounts.identity.totp_key_file.is_some() {
        return Ok(());
    }
    let dir = config.data_dir();
    let file = dir.join("totp-key");
    if !file.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_secret(
            &file,
            &steward_accounts::identity::totp_keys::new_key_file_contents(),
        )?;
        eprintln!("created a development TOTP key at {}", file.display());
    }
    config.accounts.identity.totp_key_file = Some(file);
    Ok(())
}

pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
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
pub fn retired_keys(config: &Config) -> anyhow::Result<KeySet> {
    let mut keys = KeySet::default();
    for key in &config.auth.public_keys {
        keys.add_base64(key).context("auth.public_keys")?;
    }
    Ok(keys)
}

/// The database and keys of `config`; the returned [`Database`] keeps a
/// private cluster running while it lives.
pub async fn resolve(config: &Config) -> anyhow::Result<(Resolved, Database)> {
    let database = database(config).await?;
    let resolved = Resolved {
        database_url: database.url.clone(),
        signer: signer(config)?,
        retired: retired_keys(config)?,
    };
    Ok((resolved, database))
}

/// The URL without its password, for printing.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let colon = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..colon], &url[at..])
        }
        _ => url.to_owned(),
    }
}
