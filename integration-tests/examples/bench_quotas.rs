//! CheckQuotas under load, next to the same lookup as one hand-written SQL
//! query over a pooled connection, plus GetUserQuotas and
//! PreviewGroupChange. Prints figures; asserts nothing.
//!
//! `cargo run --release -p steward-integration-tests --example bench_quotas`
//! (`BENCH_USERS`, default 1000000; `BENCH_SECONDS` per phase, default 15).
//! Users are seeded with one INSERT ... SELECT generate_series in quotas'
//! own membership table (what accounts' events would have written), 10% of
//! them with overrides; 8 definitions are registered on top of the 22
//! seeded ones (30 in all).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use diesel::{QueryableByName, sql_types};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use steward_integration_tests::{Options, QuotasClient, TestApp};
use steward_kit::auth::Role;
use steward_proto::quotas as pb;

const CLIENTS: usize = 32;
const KEYS: [&str; 3] = [
    "environment.maxcount",
    "environment.maxnodescount",
    "environment.externalip.enabled",
];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seeded user number `i`'s id (the same expression as the seed SQL).
fn user_id(i: u64) -> String {
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(i.to_string().as_bytes()).into();
    uuid::Uuid::from_bytes(digest).to_string()
}

struct Figures {
    calls: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} calls/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} calls)",
            self.calls as f64 / self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.calls
        )
    }
}

/// Runs `call` from CLIENTS tasks for `seconds`, each with its own
/// pseudo-random user sequence.
async fn load<F, Fut>(seconds: u64, users: u64, call: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (client as u64 + 1);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = Instant::now();
                call(client, 1 + x % users).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        calls: all.len(),
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

#[derive(QueryableByName)]
#[allow(dead_code)]
struct Row {
    #[diesel(sql_type = sql_types::Text)]
    key: String,
    #[diesel(sql_type = sql_types::Text)]
    value: String,
    #[diesel(sql_type = sql_types::Bool)]
    unlimited: bool,
    #[diesel(sql_type = sql_types::Text)]
    source: String,
}

/// The lookup CheckQuotas does, as one query.
const LOOKUP: &str = "\
SELECT d.key, \
       CASE WHEN o.user_id IS NOT NULL THEN o.value WHEN g.key IS NOT NULL THEN g.value ELSE d.default_value END AS value, \
       CASE WHEN o.user_id IS NOT NULL THEN o.unlimited WHEN g.key IS NOT NULL THEN g.unlimited ELSE d.default_unlimited END AS unlimited, \
       CASE WHEN o.user_id IS NOT NULL THEN 'OVERRIDE' WHEN g.key IS NOT NULL THEN 'GROUP' ELSE 'DEFAULT' END AS source \
FROM definitions d \
JOIN memberships m ON m.user_id = $1 \
LEFT JOIN group_values g ON g.group_name = m.group_name AND g.key = d.key \
LEFT JOIN overrides o ON o.user_id = $1 AND o.key = d.key \
WHERE d.key = ANY($2)";

#[tokio::main]
async fn main() {
    let users = env("BENCH_USERS", 1_000_000);
    let seconds = env("BENCH_SECONDS", 15);
    let mut app = TestApp::spawn_with(Options {
        with_quotas: true,
        ..Options::default()
    })
    .await;
    let platform = app.token("service:bench", &[Role::PlatformService]);
    let admin = app.token(steward_integration_tests::ADMIN_ID, &[Role::UserAdmin]);
    let endpoint = app.quotas_endpoint.clone().expect("quotas runs");

    // 8 more definitions (30 in all), through the API.
    steward_integration_tests::quotas_client(&endpoint, Some(platform.clone()))
        .register_quota_definitions(pb::RegisterQuotaDefinitionsRequest {
            definitions: (0..8)
                .map(|i| pb::QuotaDefinition {
                    key: format!("bench.extra{i}"),
                    r#type: pb::QuotaType::Count as i32,
                    unit: "things".into(),
                    description: "benchmark".into(),
                    product: "bench".into(),
                    default_value: Some(pb::QuotaValue {
                        kind: Some(pb::quota_value::Kind::Value("5".into())),
                    }),
                    allowed_values: Vec::new(),
                    update_time: None,
                })
                .collect(),
            request_id: String::new(),
        })
        .await
        .expect("register definitions");

    let seeding = Instant::now();
    let mut conn = steward_kit::db::connect(&app.db.url, "quotas")
        .await
        .expect("connect");
    conn.batch_execute(&format!(
        "INSERT INTO memberships (user_id, group_name) \
         SELECT md5(i::text)::uuid, (ARRAY['trial','billing','beta','post'])[1 + i % 4] \
         FROM generate_series(1, {users}) i;
         INSERT INTO overrides (user_id, key, value) \
         SELECT md5(i::text)::uuid, 'environment.maxcount', (i % 40)::text \
         FROM generate_series(1, {users}, 10) i;
         INSERT INTO overrides (user_id, key, value, unlimited) \
         SELECT md5(i::text)::uuid, 'environment.maxnodescount', '', true \
         FROM generate_series(1, {users}, 20) i;
         INSERT INTO group_values (group_name, key, value) \
         SELECT g, 'bench.extra' || k, (k * 2)::text \
         FROM unnest(ARRAY['trial','billing','beta','post']) g, generate_series(0, 7) k;
         ANALYZE memberships; ANALYZE overrides; ANALYZE group_values;"
    ))
    .await
    .expect("seed");
    println!(
        "seeded {users} users ({} with overrides), 30 definitions in {:.1} s",
        users / 10,
        seeding.elapsed().as_secs_f64()
    );
    // The catalog change above happened behind the service's back.
    let restart = steward_integration_tests::quotas_client(&endpoint, Some(admin.clone()))
        .set_group_quotas(pb::SetGroupQuotasRequest {
            group: "post".into(),
            settings: vec![pb::QuotaSetting {
                key: "bench.extra0".into(),
                value: Some(pb::QuotaValue {
                    kind: Some(pb::quota_value::Kind::Value("1".into())),
                }),
            }],
            reason: "benchmark".into(),
            request_id: String::new(),
        })
        .await;
    restart.expect("a catalog change reloads every cache");

    // A replica started now finds the users in the database and loads them
    // all before it is asked (the cache's warm-up), as a replica restarted
    // in production does. The first replica, started before the seed,
    // fills its cache on first use.
    #[derive(QueryableByName)]
    struct Replica {
        #[diesel(sql_type = sql_types::Uuid)]
        replica_id: uuid::Uuid,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = sql_types::BigInt)]
        n: i64,
    }
    let members = diesel::sql_query("SELECT count(*) AS n FROM memberships")
        .get_result::<Count>(&mut conn)
        .await
        .expect("count")
        .n;
    let replicas = async |conn: &mut diesel_async::AsyncPgConnection| -> Vec<uuid::Uuid> {
        diesel::sql_query("SELECT replica_id FROM cache_replicas")
            .load::<Replica>(conn)
            .await
            .expect("replicas")
            .into_iter()
            .map(|r| r.replica_id)
            .collect()
    };
    let known = replicas(&mut conn).await;
    let warming = Instant::now();
    let warmed = app.start_quotas_replica().await;
    let replica = loop {
        if let Some(id) = replicas(&mut conn)
            .await
            .into_iter()
            .find(|id| !known.contains(id))
        {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let gauge = format!("steward_quotas_cache_users{{replica=\"{replica}\"}} {members}\n");
    while !steward_kit::metrics::render().contains(&gauge) {
        assert!(
            warming.elapsed() < Duration::from_secs(300),
            "the warm-up did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "a replica started now warmed its cache with {members} users in {:.1} s",
        warming.elapsed().as_secs_f64()
    );

    let clients_of = |endpoint: &str| -> Arc<Vec<QuotasClient>> {
        Arc::new(
            (0..CLIENTS)
                .map(|_| steward_integration_tests::quotas_client(endpoint, Some(platform.clone())))
                .collect(),
        )
    };
    let clients = clients_of(&endpoint);
    let warmed_clients = clients_of(&warmed);
    let check = |clients: Arc<Vec<QuotasClient>>| {
        move |client: usize, user: u64| {
            let mut c = clients[client].clone();
            async move {
                let r = c
                    .check_quotas(pb::CheckQuotasRequest {
                        user_id: user_id(user),
                        requests: KEYS
                            .iter()
                            .map(|k| pb::QuotaRequest {
                                key: (*k).into(),
                                amount: "2".into(),
                            })
                            .collect(),
                    })
                    .await
                    .expect("check quotas");
                assert_eq!(r.into_inner().checks.len(), 3);
            }
        }
    };

    println!("CheckQuotas, 3 keys, {CLIENTS} concurrent clients, uniform over {users} users:");
    let cold = load(seconds, users, check(clients.clone())).await;
    println!("  replica filling its cache on use     {cold}");
    let warm = load(seconds, users, check(warmed_clients.clone())).await;
    println!("  replica warmed at start              {warm}");

    let pool = steward_kit::db::pool(
        &app.db.url,
        "quotas",
        &steward_kit::db::PoolConfig {
            max_connections: CLIENTS as u32,
            ..Default::default()
        },
    )
    .await
    .expect("pool");
    let keys: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
    let sql = load(seconds, users, move |_, user| {
        let pool = pool.clone();
        let keys = keys.clone();
        async move {
            let id = uuid::Uuid::parse_str(&user_id(user)).expect("uuid");
            let mut conn = pool.get().await.expect("connection");
            let rows: Vec<Row> = diesel::sql_query(LOOKUP)
                .bind::<sql_types::Uuid, _>(id)
                .bind::<sql_types::Array<sql_types::Text>, _>(keys)
                .load(&mut *conn)
                .await
                .expect("lookup");
            assert_eq!(rows.len(), 3);
        }
    })
    .await;
    println!("  one SQL query, pooled connection     {sql}");
    println!(
        "  throughput, service / SQL: filling on use {:.2}x, warmed {:.2}x",
        cold.calls as f64
            / cold.elapsed.as_secs_f64()
            / (sql.calls as f64 / sql.elapsed.as_secs_f64()),
        warm.calls as f64
            / warm.elapsed.as_secs_f64()
            / (sql.calls as f64 / sql.elapsed.as_secs_f64())
    );

    let admins: Arc<Vec<QuotasClient>> = Arc::new(
        (0..CLIENTS)
            .map(|_| steward_integration_tests::quotas_client(&warmed, Some(admin.clone())))
            .collect(),
    );
    let a = admins.clone();
    let get = load(seconds.min(10), users, move |client, user| {
        let mut c = a[client].clone();
        async move {
            c.get_user_quotas(pb::GetUserQuotasRequest {
                user_id: user_id(user),
                key_contains: String::new(),
                page: None,
            })
            .await
            .expect("get user quotas");
        }
    })
    .await;
    println!("GetUserQuotas (30 keys)                {get}");
    let a = admins.clone();
    let preview = load(seconds.min(10), users, move |client, user| {
        let mut c = a[client].clone();
        async move {
            c.preview_group_change(pb::PreviewGroupChangeRequest {
                user_id: user_id(user),
                target_group: "billing".into(),
            })
            .await
            .expect("preview");
        }
    })
    .await;
    println!("PreviewGroupChange (to billing)        {preview}");
    app.stop().await;
}
