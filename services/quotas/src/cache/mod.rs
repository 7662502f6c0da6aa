//! The in-process cache of the hot path: the catalog (definitions and every
//! group's values, small) and users (group and overrides, loaded on first
//! use), kept coherent across replicas.
//!
//! Invariant: no replica answers from its cache with a value older than a
//! change any replica has acknowledged. How:
//!
//! * every change takes a number from `cache_seq` and NOTIFYs
//!   `steward_quotas_cache` with it and what it touched, in its transaction;
//! * each replica's listener ([`listener`]) applies notifications in order
//!   and then records the highest number applied in `cache_replicas`, with a
//!   heartbeat;
//! * the writer acknowledges only once every live replica (heartbeat within
//!   `lease`) has recorded its number ([`Cache::settle`]), after
//!   invalidating its own cache;
//! * a replica whose last heartbeat is older than `fence` (shorter than
//!   `lease`) stops using its cache, and clears it before using it again;
//! * a load that raced with an invalidation is not stored (`epoch`).

pub mod listener;
pub mod warm;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::{QueryableByName, sql_types};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use steward_kit::db::Pool;
use uuid::Uuid;

use crate::domain::{Definition, Effective, Value, effective};

/// The channel the replicas LISTEN on.
pub const CHANNEL: &str = "steward_quotas_cache";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Off: every read goes to the database.
    pub enabled: bool,
    /// Users kept (group and overrides); beyond, a shard is emptied.
    pub capacity: usize,
    /// Load every user (up to `capacity`) at start and after the users
    /// were dropped, so the hot path rarely waits on the database.
    pub warm: bool,
    /// How often a replica records that it is alive.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A replica without a heartbeat for this long stops using its cache.
    #[serde(with = "humantime_serde")]
    pub fence: Duration,
    /// Writers wait for replicas whose heartbeat is this recent (longer
    /// than `fence`).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// A writer waits at most this long for replicas to apply its change.
    #[serde(with = "humantime_serde")]
    pub settle_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 2_000_000,
            warm: true,
            heartbeat: Duration::from_millis(500),
            fence: Duration::from_secs(2),
            lease: Duration::from_secs(4),
            settle_timeout: Duration::from_secs(10),
        }
    }
}

/// Definitions and every group's values.
#[derive(Debug, Default)]
pub struct Catalog {
    /// By key.
    pub definitions: Vec<Definition>,
    index: HashMap<String, usize>,
    groups: HashMap<String, Vec<Option<Value>>>,
}

/// A stored group value: (group, key, text, unlimited).
pub type GroupRow = (String, String, String, bool);

impl Catalog {
    pub fn build(definitions: Vec<Definition>, group_rows: Vec<GroupRow>) -> Self {
        let index: HashMap<String, usize> = definitions
            .iter()
            .enumerate()
            .map(|(i, d)| (d.key.clone(), i))
            .collect();
        let mut groups: HashMap<String, Vec<Option<Value>>> = HashMap::new();
        for (group, key, text, unlimited) in group_rows {
            if let Some(&i) = index.get(&key) {
                let values = groups
                    .entry(group)
                    .or_insert_with(|| vec![None; definitions.len()]);
                values[i] = Some(Value::from_stored(definitions[i].kind, &text, unlimited));
            }
        }
        Self {
            definitions,
            index,
            groups,
        }
    }

    pub fn definition(&self, key: &str) -> Option<(usize, &Definition)> {
        self.index.get(key).map(|&i| (i, &self.definitions[i]))
    }

    /// What `group` sets for definition `i` (None: it inherits the default).
    pub fn group_value(&self, group: &str, i: usize) -> Option<&Value> {
        self.groups.get(group).and_then(|v| v[i].as_ref())
    }

    /// The effective value of definition `i` for a member of `group` with
    /// `overrides`.
    pub fn effective(&self, i: usize, group: &str, overrides: &[(String, Value)]) -> Effective {
        let def = &self.definitions[i];
        let over = overrides
            .iter()
            .find(|(k, _)| *k == def.key)
            .map(|(_, v)| v);
        effective(&def.default, self.group_value(group, i), over)
    }

    /// Decodes stored overrides with their definitions' types; rows of keys
    /// no longer defined are dropped.
    pub fn overrides(&self, rows: Vec<(String, String, bool)>) -> Vec<(String, Value)> {
        rows.into_iter()
            .filter_map(|(key, text, unlimited)| {
                let (_, def) = self.definition(&key)?;
                let value = Value::from_stored(def.kind, &text, unlimited);
                Some((key, value))
            })
            .collect()
    }
}

/// What quotas knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub group: String,
    pub erased: bool,
    pub overrides: Vec<(String, Value)>,
}

/// What a change touched, announced to every replica.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub catalog: bool,
    pub users: BTreeSet<Uuid>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        !self.catalog && self.users.is_empty()
    }

    /// Notification payloads (each under PostgreSQL's 8000-byte limit).
    fn payloads(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.catalog {
            out.push("c".to_owned());
        }
        if self.users.len() > USERS_BEFORE_ALL {
            out.push("a".to_owned());
        } else {
            let ids: Vec<String> = self.users.iter().map(Uuid::to_string).collect();
            for chunk in ids.chunks(USERS_PER_NOTIFY) {
                out.push(format!("u:{}", chunk.join(",")));
            }
        }
        out
    }
}

const USERS_PER_NOTIFY: usize = 150;
/// Beyond this many users in one change, replicas drop every user.
const USERS_BEFORE_ALL: usize = 3000;
const SHARDS: usize = 64;

/// Writes the notifications of `touched` in the caller's transaction
/// (delivered at commit); returns the highest sequence number taken.
pub async fn announce(conn: &mut AsyncPgConnection, touched: &Touched) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = sql_types::BigInt)]
        seq: i64,
    }
    let mut last = 0;
    for payload in touched.payloads() {
        let row: Seq = diesel::sql_query(
            "SELECT s.seq FROM (SELECT nextval('cache_seq') AS seq) s, \
             LATERAL (SELECT pg_notify($1, s.seq::text || '|' || $2)) n",
        )
        .bind::<sql_types::Text, _>(CHANNEL)
        .bind::<sql_types::Text, _>(payload)
        .get_result(conn)
        .await?;
        last = row.seq;
    }
    Ok(last)
}

pub struct Cache {
    pub replica: Uuid,
    pool: Pool,
    config: CacheConfig,
    catalog: RwLock<Arc<Catalog>>,
    reload: tokio::sync::Mutex<()>,
    shards: Vec<RwLock<HashMap<Uuid, Arc<UserEntry>>>>,
    /// Bumped by every invalidation; a load stores its result only if
    /// unchanged since it started.
    epoch: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` until which the cache may be used.
    usable_until: AtomicU64,
    /// Signalled when every user was dropped: the warm-up runs again.
    rewarm: tokio::sync::Notify,
}

impl Cache {
    pub fn new(pool: Pool, config: CacheConfig) -> Arc<Self> {
        Arc::new(Self {
            replica: Uuid::now_v7(),
            pool,
            config,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            reload: tokio::sync::Mutex::new(()),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            epoch: AtomicU64::new(0),
            started: Instant::now(),
            usable_until: AtomicU64::new(0),
            rewarm: tokio::sync::Notify::new(),
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn shard_capacity(&self) -> usize {
        (self.config.capacity / SHARDS).max(1)
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Whether answers may come from memory now.
    pub fn usable(&self) -> bool {
        self.config.enabled
            && self.millis(Instant::now()) < AtomicU64::load(&self.usable_until, Ordering::Acquire)
    }

    /// A heartbeat that started at `at` succeeded. After a gap (the cache
    /// was fenced) everything is dropped and the catalog reloaded first.
    async fn alive_since(&self, at: Instant) -> Result<(), crate::error::Error> {
        if !self.usable() {
            self.clear_users();
            self.reload_catalog().await?;
        }
        let until = self.millis(at) + self.config.fence.as_millis() as u64;
        self.usable_until.store(until, Ordering::Release);
        Ok(())
    }

    fn fence_now(&self) {
        self.usable_until.store(0, Ordering::Release);
        self.clear_users();
    }

    pub fn epoch(&self) -> u64 {
        AtomicU64::load(&self.epoch, Ordering::Acquire)
    }

    /// The catalog in memory (may be stale when not [`Cache::usable`]).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Reads the catalog from the database and installs it; reloads are
    /// serialised, so the last one installed is the newest read.
    pub async fn reload_catalog(&self) -> Result<Arc<Catalog>, crate::error::Error> {
        let _one = self.reload.lock().await;
        let mut conn = self.pool.get().await?;
        let fresh = Arc::new(load_catalog(&mut conn).await?);
        *self.catalog.write().expect("catalog lock") = fresh.clone();
        Ok(fresh)
    }

    fn shard(&self, id: &Uuid) -> &RwLock<HashMap<Uuid, Arc<UserEntry>>> {
        let b = id.as_bytes();
        &self.shards[(b[15] as usize ^ b[14] as usize) % SHARDS]
    }

    pub fn user(&self, id: &Uuid) -> Option<Arc<UserEntry>> {
        if !self.usable() {
            return None;
        }
        self.shard(id).read().expect("shard lock").get(id).cloned()
    }

    /// Stores a user loaded since `epoch` was read, unless an invalidation
    /// happened meanwhile.
    pub fn store_user(&self, id: Uuid, entry: Arc<UserEntry>, epoch: u64) {
        if !self.usable() {
            return;
        }
        let mut shard = self.shard(&id).write().expect("shard lock");
        if self.epoch() != epoch {
            return;
        }
        if shard.len() >= self.shard_capacity() {
            shard.clear();
        }
        shard.insert(id, entry);
    }

    /// The warm-up's [`Cache::store_user`]: never evicts, and keeps an
    /// entry already there. True when stored.
    pub fn fill_user(&self, id: Uuid, entry: Arc<UserEntry>, epoch: u64) -> bool {
        if !self.usable() {
            return false;
        }
        let mut shard = self.shard(&id).write().expect("shard lock");
        if self.epoch() != epoch || shard.len() >= self.shard_capacity() {
            return false;
        }
        match shard.entry(id) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(entry);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }

    /// Users held now.
    pub fn users_held(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect("shard lock").len())
            .sum()
    }

    /// Applies what a change touched (own writes, and notifications).
    pub async fn invalidate(&self, touched: &Touched) -> Result<(), crate::error::Error> {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for id in &touched.users {
            self.shard(id).write().expect("shard lock").remove(id);
        }
        if touched.catalog {
            self.reload_catalog().await?;
        }
        Ok(())
    }

    pub fn clear_users(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard.write().expect("shard lock").clear();
        }
        self.rewarm.notify_one();
    }

    /// After a change committed: invalidates here, then waits until every
    /// live replica has applied notification `seq` (or `settle_timeout`).
    pub async fn settle(&self, touched: &Touched, seq: i64) -> Result<(), crate::error::Error> {
        if touched.is_empty() {
            return Ok(());
        }
        self.invalidate(touched).await?;
        if !self.config.enabled {
            return Ok(());
        }
        #[derive(QueryableByName)]
        struct Lagging {
            #[diesel(sql_type = sql_types::BigInt)]
            n: i64,
        }
        let deadline = Instant::now() + self.config.settle_timeout;
        let mut pause = Duration::from_micros(500);
        let mut conn = self.pool.get().await?;
        loop {
            let lagging: Lagging = diesel::sql_query(
                "SELECT count(*) AS n FROM cache_replicas \
                 WHERE acked_seq < $1 AND heartbeat_at > now() - make_interval(secs => $2)",
            )
            .bind::<sql_types::BigInt, _>(seq)
            .bind::<sql_types::Double, _>(self.config.lease.as_secs_f64())
            .get_result(&mut *conn)
            .await?;
            if lagging.n == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    seq,
                    lagging = lagging.n,
                    "quota replicas did not confirm a change in time; they stop using their caches when their lease ends"
                );
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// The catalog as stored.
pub async fn load_catalog(conn: &mut AsyncPgConnection) -> Result<Catalog, crate::error::Error> {
    let definitions = crate::definitions::store::all(conn).await?;
    let groups = crate::groups::store::all(conn).await?;
    Ok(Catalog::build(definitions, groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{QuotaType, Source};

    fn def(key: &str, default: &str) -> Definition {
        Definition {
            key: key.into(),
            kind: QuotaType::Count,
            unit: String::new(),
            description: String::new(),
            product: "platform".into(),
            default: Value::Number(default.parse().unwrap()),
            allowed: Vec::new(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn catalog_resolves_three_sources() {
        let catalog = Catalog::build(
            vec![def("a", "10"), def("b", "20")],
            vec![("trial".into(), "a".into(), "2".into(), false)],
        );
        let (a, _) = catalog.definition("a").unwrap();
        let (b, _) = catalog.definition("b").unwrap();
        assert_eq!(catalog.effective(a, "trial", &[]).source, Source::Group);
        assert_eq!(catalog.effective(b, "trial", &[]).source, Source::Default);
        let over = vec![("b".to_owned(), Value::Unlimited)];
        let e = catalog.effective(b, "trial", &over);
        assert_eq!((e.value, e.source), (Value::Unlimited, Source::Override));
        assert_eq!(catalog.effective(a, "other", &over).source, Source::Default);
    }

    #[test]
    fn payloads_fit_notify() {
        let mut t = Touched {
            catalog: true,
            ..Touched::default()
        };
        for _ in 0..400 {
            t.users.insert(Uuid::now_v7());
        }
        let p = t.payloads();
        assert_eq!(p[0], "c");
        assert_eq!(p.len(), 1 + 3);
        assert!(p.iter().all(|p| p.len() < 8000));
        for _ in 0..3000 {
            t.users.insert(Uuid::now_v7());
        }
        assert_eq!(t.payloads(), ["c", "a"]);
    }
}
