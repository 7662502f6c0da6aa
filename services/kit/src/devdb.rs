//! Finding or starting a PostgreSQL for development and tests: a configured
//! URL, else a server on localhost:5432, else a private cluster started with
//! the machine's `initdb`/`pg_ctl` (as the `postgres` user when running as
//! root, which initdb requires).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

#[derive(Debug, thiserror::Error)]
pub enum DevDbError {
    #[error(
        "no PostgreSQL found: set STEWARD_DATABASE_URL, run a server on localhost:5432, or install PostgreSQL's server binaries (initdb, pg_ctl; Debian: apt-get install postgresql) so a private cluster can be started"
    )]
    NoBinaries,
    #[error("private PostgreSQL cluster: {0}")]
    Cluster(String),
    #[error("database: {0}")]
    Database(String),
}

/// Can we connect to `url` within a couple of seconds?
pub async fn reachable(url: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), AsyncPgConnection::establish(url)).await,
        Ok(Ok(_))
    )
}

/// The conventional local server, if one answers.
pub async fn local_server() -> Option<String> {
    for url in [
        "postgres://postgres@localhost:5432/postgres",
        "postgres://postgres@127.0.0.1:5432/postgres",
    ] {
        if reachable(url).await {
            return Some(url.to_owned());
        }
    }
    None
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Creates `database` on the server of `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &str, database: &str) -> Result<(), DevDbError> {
    use diesel::{dsl::sql, sql_types::Bool};
    use diesel_async::RunQueryDsl;
    assert!(
        database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    );
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(|e| DevDbError::Database(e.to_string()))?;
    let exists: bool = diesel::select(sql::<Bool>(&format!(
        "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{database}')"
    )))
    .get_result(&mut conn)
    .await
    .map_err(|e| DevDbError::Database(e.to_string()))?;
    if !exists {
        conn.batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .map_err(|e| DevDbError::Database(e.to_string()))?;
    }
    Ok(())
}

fn find_bin(name: &str) -> Option<PathBuf> {
    if let Ok(path) = which(name) {
        return Some(path);
    }
    // Debian keeps server binaries out of PATH.
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    candidates.sort();
    candidates.pop()
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as `postgres` when we are root.
fn run_pg(bin: &Path, args: &[&str], as_postgres: bool) -> Result<(), DevDbError> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| DevDbError::Cluster(format!("{}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(DevDbError::Cluster(format!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A private cluster this process started; [`PrivateCluster::stop`] (or
/// drop) shuts it down. One found already running is left alone.
#[derive(Debug)]
pub struct PrivateCluster {
    pub url: String,
    dir: PathBuf,
    started_here: bool,
}

impl PrivateCluster {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if std::mem::take(&mut self.started_here)
            && let Err(err) = stop_private_cluster(&self.dir)
        {
            eprintln!("stopping the private PostgreSQL cluster failed: {err}");
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts (initialising on first use) a private cluster in `dir` listening
/// on 127.0.0.1:`port` with trust authentication; its URL points at the
/// `postgres` database. A cluster already running there is reused.
pub async fn start_private_cluster(dir: &Path, port: u16) -> Result<PrivateCluster, DevDbError> {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    if reachable(&url).await {
        return Ok(PrivateCluster {
            url,
            dir: dir.to_path_buf(),
            started_here: false,
        });
    }
    let initdb = find_bin("initdb").ok_or(DevDbError::NoBinaries)?;
    let pg_ctl = find_bin("pg_ctl").ok_or(DevDbError::NoBinaries)?;
    let as_postgres = is_root();
    std::fs::create_dir_all(dir).map_err(|e| DevDbError::Cluster(e.to_string()))?;
    let mut dir = dir
        .canonicalize()
        .map_err(|e| DevDbError::Cluster(e.to_string()))?;
    if as_postgres && !postgres_can_reach(&dir) {
        // A root-only ancestor (/root, a 0700 temp dir) hides the directory
        // from the postgres user; keep the cluster under /tmp instead.
        let digest = digest_hex(dir.display().to_string().as_bytes());
        dir = std::env::temp_dir().join(format!("steward-postgres-{}", &digest[..12]));
        std::fs::create_dir_all(&dir).map_err(|e| DevDbError::Cluster(e.to_string()))?;
        eprintln!(
            "the postgres user cannot reach the data dir; the private cluster lives in {}",
            dir.display()
        );
    }
    let data = dir.join("data");
    if as_postgres {
        // initdb refuses to run as root; the cluster belongs to postgres.
        run_chown(&dir)?;
    }
    if !data.join("PG_VERSION").exists() {
        let data_s = data.display().to_string();
        run_pg(
            &initdb,
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            as_postgres,
        )?;
    }
    let data_s = data.display().to_string();
    let log = dir.join("postgres.log").display().to_string();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c fsync=off",
        dir.display()
    );
    run_pg(
        &pg_ctl,
        &[
            "-D", &data_s, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
        ],
        as_postgres,
    )?;
    for _ in 0..50 {
        if reachable(&url).await {
            return Ok(PrivateCluster {
                url,
                dir,
                started_here: true,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(DevDbError::Cluster(format!(
        "started but not reachable on port {port}; see {log}"
    )))
}

fn postgres_can_reach(dir: &Path) -> bool {
    let parent = dir.parent().unwrap_or(dir);
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(parent)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn digest_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn run_chown(dir: &Path) -> Result<(), DevDbError> {
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .output()
        .map_err(|e| DevDbError::Cluster(format!("chown: {e}")))?;
    if !out.status.success() {
        return Err(DevDbError::Cluster(format!(
            "chown {} to postgres failed (is there a postgres user?): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Stops a private cluster started by [`start_private_cluster`].
pub fn stop_private_cluster(dir: &Path) -> Result<(), DevDbError> {
    let pg_ctl = find_bin("pg_ctl").ok_or(DevDbError::NoBinaries)?;
    let data = dir.join("data").display().to_string();
    run_pg(&pg_ctl, &["-D", &data, "-m", "fast", "stop"], is_root())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "steward"),
            "postgres://u@h:5432/steward"
        );
        assert_eq!(
            with_database("postgres://u@h/x?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "t"), "postgres://u@h/t");
    }
}
