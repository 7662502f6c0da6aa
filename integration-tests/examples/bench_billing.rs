//! Billing benchmark (not a test): balance operations per second for
//! uniformly spread accounts and for one hot account — through the gRPC API
//! (Refill goes through the ledger batcher: one transaction per batch of a
//! shard's waiting operations, each with its key, entry and audit record),
//! and at the SQL level for the guarded single statement next to a naive
//! `SELECT ... FOR UPDATE` read-modify-write (one operation per transaction),
//! as ratios.
//!
//!     cargo run --release -p steward-integration-tests --example bench_billing

use std::{sync::Arc, time::Instant};

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use steward_billing::{
    domain::{BalanceType, Operation},
    ledger::store::{self as ledger, Change},
};
use steward_integration_tests::{Options, TestApp};
use steward_proto::{billing as pb, common};
use tokio::sync::Semaphore;

const CLIENTS: usize = 32;
const OPS: usize = 8000;

fn accounts(n: usize) -> Vec<uuid::Uuid> {
    (0..n).map(|_| uuid::Uuid::now_v7()).collect()
}

async fn api_rate(app: &TestApp, users: &[uuid::Uuid]) -> f64 {
    let users = Arc::new(users.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut billing = app.billing_own_connection();
        let users = users.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..OPS).step_by(CLIENTS) {
                let user = users[i % users.len()].to_string();
                billing
                    .refill(pb::RefillRequest {
                        request_id: format!("bench-{i}-{}", uuid::Uuid::now_v7()),
                        user_id: user,
                        amount: Some(common::Decimal {
                            value: "1.25".into(),
                        }),
                        balance_type: pb::BalanceType::Main as i32,
                        notes: String::new(),
                    })
                    .await
                    .expect("refill");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

/// The per-call ceiling of the same stack (tonic, auth, policy, one pooled
/// read): GetBalance, no transaction, no batch.
async fn read_rate(app: &TestApp, users: &[uuid::Uuid]) -> f64 {
    let users = Arc::new(users.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut billing = app.billing_own_connection();
        let users = users.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..OPS).step_by(CLIENTS) {
                billing
                    .get_balance(pb::GetBalanceRequest {
                        user_id: users[i % users.len()].to_string(),
                    })
                    .await
                    .expect("balance");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

/// The naive way: lock the row, read it, decide in the client, write.
async fn naive(
    conn: &mut AsyncPgConnection,
    user: uuid::Uuid,
    amount: Decimal,
) -> diesel::QueryResult<()> {
    #[derive(diesel::QueryableByName)]
    struct Main {
        #[diesel(sql_type = Text)]
        main: String,
    }
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let current: Main = diesel::sql_query(
            "SELECT main::text AS main FROM balances WHERE user_id = $1 FOR UPDATE",
        )
        .bind::<SqlUuid, _>(user)
        .get_result(conn)
        .await?;
        let after = current.main.parse::<Decimal>().unwrap() + amount;
        diesel::sql_query(
            "UPDATE balances SET main = $2::numeric, updated_at = now() WHERE user_id = $1",
        )
        .bind::<SqlUuid, _>(user)
        .bind::<Text, _>(after.to_string())
        .execute(conn)
        .await?;
        diesel::sql_query(
            "INSERT INTO ledger (entry_id, user_id, operation, balance_type, amount, balance_after)
             VALUES ($1, $2, 'FUNDING', 'MAIN', $3::numeric, $4::numeric)",
        )
        .bind::<SqlUuid, _>(uuid::Uuid::now_v7())
        .bind::<SqlUuid, _>(user)
        .bind::<Text, _>(amount.to_string())
        .bind::<Text, _>(after.to_string())
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

async fn sql_rate(pool: &steward_kit::db::Pool, users: &[uuid::Uuid], guarded: bool) -> f64 {
    let users = Arc::new(users.to_vec());
    let permits = Arc::new(Semaphore::new(CLIENTS));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..OPS {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let pool = pool.clone();
        let user = users[i % users.len()];
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.expect("connection");
            let amount = Decimal::new(125, 2);
            if guarded {
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    ledger::credit(
                        conn,
                        &Change {
                            user_id: user,
                            balance_type: BalanceType::Main,
                            operation: Operation::Funding,
                            amount,
                            actor_user_id: "",
                            notes: "",
                        },
                    )
                    .await
                    .map(|_| ())
                })
                .await
                .expect("guarded");
            } else {
                naive(&mut conn, user, amount).await.expect("naive");
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let app = TestApp::spawn_with(Options {
        billing: Some(steward_billing::BillingConfig::default()),
        ..Options::default()
    })
    .await;
    let pool = steward_kit::db::pool(
        &app.db.url,
        steward_billing::SCHEMA,
        &steward_kit::db::PoolConfig {
            max_connections: CLIENTS as u32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let uniform = accounts(1000);
    let hot = accounts(1);
    // Rows exist for the naive version (it has nothing to lock otherwise).
    let mut conn = pool.get().await.unwrap();
    for u in uniform.iter().chain(&hot) {
        diesel::sql_query("INSERT INTO balances (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind::<SqlUuid, _>(*u)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // A platform's billing holds many accounts: with only the benchmark's
    // 1,001 rows the planner would scan the whole table (and the dead
    // versions the hot row leaves) where production reads one index entry.
    for statement in [
        "INSERT INTO balances (user_id) SELECT gen_random_uuid() FROM generate_series(1, 100000)",
        "ANALYZE balances",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    drop(conn);

    println!("{OPS} balance credits, {CLIENTS} concurrent clients, 100,000 accounts in the table");
    println!("{:<42} {:>12} {:>12}", "", "1000 accounts", "1 hot account");
    let api = (api_rate(&app, &uniform).await, api_rate(&app, &hot).await);
    println!(
        "{:<42} {:>10.0}/s {:>10.0}/s",
        "gRPC Refill (idempotency, audit, ledger)", api.0, api.1
    );
    let reads = (read_rate(&app, &uniform).await, read_rate(&app, &hot).await);
    println!(
        "{:<42} {:>10.0}/s {:>10.0}/s",
        "gRPC GetBalance (per-call ceiling, a read)", reads.0, reads.1
    );
    let guarded = (
        sql_rate(&pool, &uniform, true).await,
        sql_rate(&pool, &hot, true).await,
    );
    println!(
        "{:<42} {:>10.0}/s {:>10.0}/s",
        "SQL: guarded single statement", guarded.0, guarded.1
    );
    let naive = (
        sql_rate(&pool, &uniform, false).await,
        sql_rate(&pool, &hot, false).await,
    );
    println!(
        "{:<42} {:>10.0}/s {:>10.0}/s",
        "SQL: naive SELECT ... FOR UPDATE", naive.0, naive.1
    );
    println!(
        "{:<42} {:>11.2}x {:>11.2}x",
        "guarded / naive",
        guarded.0 / naive.0,
        guarded.1 / naive.1
    );
    println!(
        "{:<42} {:>11.2}x {:>11.2}x",
        "gRPC Refill (batched) / naive",
        api.0 / naive.0,
        api.1 / naive.1
    );
    drop(pool);
    app.stop().await;
}
