//! The ledger batcher under contention: 64 clients on one account, with
//! concurrent duplicates, a key reused for another request, and withdrawals
//! the balance cannot cover. Nothing is lost, applied twice, taken below
//! zero or recorded out of order, and every call is audited once.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use steward_integration_tests::{Options, TestApp, outbox_in, reason};
use steward_proto::{audit::AuditEvent, billing as pb, common};
use tonic::Code;

const CLIENTS: usize = 64;
const OPS: usize = 384;

#[derive(Clone, Debug)]
enum Op {
    Refill(pb::RefillRequest),
    Withdraw(pb::WithdrawRequest),
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Refill(r) => &r.request_id,
            Op::Withdraw(w) => &w.request_id,
        }
    }
}

/// The entries an applied call reports, or its error.
type Outcome = Result<Vec<pb::LedgerEntry>, tonic::Status>;

fn money(s: &str) -> Option<common::Decimal> {
    Some(common::Decimal { value: s.into() })
}

fn plan(user: &str) -> Vec<Op> {
    let mut ops = Vec::new();
    for g in 0..OPS {
        let (main, bonus) = (pb::BalanceType::Main as i32, pb::BalanceType::Bonus as i32);
        let key = format!("op-{g}");
        let refill = |amount: &str, balance_type| {
            Op::Refill(pb::RefillRequest {
                request_id: key.clone(),
                user_id: user.into(),
                amount: money(amount),
                balance_type,
                notes: format!("refill {g}"),
            })
        };
        let withdraw = |amount: &str, balance_type| {
            Op::Withdraw(pb::WithdrawRequest {
                request_id: key.clone(),
                user_id: user.into(),
                amount: money(amount),
                balance_type,
                notes: format!("withdraw {g}"),
            })
        };
        ops.push(match g % 8 {
            0 | 3 => refill("1.25", main),
            1 | 4 => withdraw("2.5", main),
            2 => withdraw("40", main),
            5 => refill("0.5", bonus),
            6 => withdraw("0.75", bonus),
            _ => refill("3.000001", main),
        });
        // Every fifth request is sent twice, by different clients at once.
        if g % 5 == 0 {
            let again = ops.last().unwrap().clone();
            ops.push(again);
        }
    }
    // One key used for two different requests at the same time.
    for amount in ["1", "2"] {
        ops.push(Op::Refill(pb::RefillRequest {
            request_id: "reused".into(),
            user_id: user.into(),
            amount: money(amount),
            balance_type: pb::BalanceType::Main as i32,
            notes: String::new(),
        }));
    }
    ops
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        billing: Some(steward_billing::BillingConfig::default()),
        ..Options::default()
    })
    .await
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    entry_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    balance_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    amount: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    balance_after: String,
}

#[tokio::test]
async fn hot_account_batches_lose_nothing_and_apply_once() {
    let app = spawn().await;
    let user = uuid::Uuid::now_v7().to_string();
    app.billing()
        .refill(pb::RefillRequest {
            request_id: "seed".into(),
            user_id: user.clone(),
            amount: money("10"),
            balance_type: pb::BalanceType::Main as i32,
            notes: String::new(),
        })
        .await
        .unwrap();

    let ops = plan(&user);
    // Round robin, so a duplicate (next in the list) lands on another client.
    let mut lists: Vec<Vec<Op>> = vec![Vec::new(); CLIENTS];
    for (i, op) in ops.iter().enumerate() {
        lists[i % CLIENTS].push(op.clone());
    }
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for list in lists {
        let mut billing = app.billing();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut done: Vec<(Op, Outcome)> = Vec::new();
            for op in list {
                let outcome = match &op {
                    Op::Refill(r) => billing
                        .refill(r.clone())
                        .await
                        .map(|r| r.into_inner().entries),
                    Op::Withdraw(w) => billing
                        .withdraw(w.clone())
                        .await
                        .map(|w| w.into_inner().entry.into_iter().collect()),
                };
                done.push((op, outcome));
            }
            done
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.unwrap());
    }
    assert_eq!(results.len(), ops.len());

    // Per key: every success reports the same entries; errors are only the
    // refusals the plan allows.
    let mut applied: HashMap<String, Vec<pb::LedgerEntry>> = HashMap::new();
    let (mut refused, mut reused_ok, mut reused_invalid) = (0, 0, 0);
    for (op, outcome) in &results {
        match outcome {
            Ok(entries) => {
                assert_eq!(entries.len(), 1, "{op:?}");
                if op.key() == "reused" {
                    reused_ok += 1;
                }
                if let Some(first) = applied.get(op.key()) {
                    assert_eq!(first, entries, "a duplicate answered differently: {op:?}");
                } else {
                    applied.insert(op.key().to_owned(), entries.clone());
                }
            }
            Err(status) if op.key() == "reused" => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                reused_invalid += 1;
            }
            Err(status) => {
                assert!(matches!(op, Op::Withdraw(_)), "{op:?}: {status:?}");
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(reason(status), "INSUFFICIENT_FUNDS");
                refused += 1;
            }
        }
    }
    assert_eq!((reused_ok, reused_invalid), (1, 1));
    assert!(refused > 0, "the plan must meet refusals");
    let withdrawn = applied
        .keys()
        .filter(|k| {
            results
                .iter()
                .any(|(op, _)| op.key() == *k && matches!(op, Op::Withdraw(_)))
        })
        .count();
    assert!(withdrawn > 0, "the plan must meet applied withdrawals");

    // The ledger holds exactly the applied entries, once each, and in id
    // order every entry's balance_after is the running sum, never below zero.
    let mut conn = steward_kit::db::connect(&app.db.url, steward_billing::SCHEMA)
        .await
        .unwrap();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT entry_id, balance_type, amount::text AS amount, balance_after::text AS balance_after
         FROM ledger WHERE user_id = $1::uuid ORDER BY id",
    )
    .bind::<diesel::sql_types::Text, _>(&user)
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        applied.len() + 1,
        "seed + one entry per applied key"
    );
    let reported: HashSet<String> = applied.values().flatten().map(|e| e.id.clone()).collect();
    let stored: HashSet<String> = rows
        .iter()
        .skip(1)
        .map(|r| r.entry_id.to_string())
        .collect();
    assert_eq!(reported, stored);
    let mut running: HashMap<String, Decimal> = HashMap::new();
    for r in &rows {
        let slot = running.entry(r.balance_type.clone()).or_default();
        *slot += r.amount.parse::<Decimal>().unwrap();
        assert_eq!(
            *slot,
            r.balance_after.parse::<Decimal>().unwrap(),
            "entry {}",
            r.entry_id
        );
        assert!(*slot >= Decimal::ZERO, "below zero at {}", r.entry_id);
    }
    for entry in applied.values().flatten() {
        let row = rows
            .iter()
            .find(|r| r.entry_id.to_string() == entry.id)
            .unwrap();
        assert_eq!(
            entry
                .balance_after
                .as_ref()
                .unwrap()
                .value
                .parse::<Decimal>()
                .unwrap(),
            row.balance_after.parse::<Decimal>().unwrap()
        );
    }
    let balance = app
        .billing()
        .get_balance(pb::GetBalanceRequest {
            user_id: user.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .unwrap();
    let main = running.get("MAIN").copied().unwrap_or_default();
    let bonus = running.get("BONUS").copied().unwrap_or_default();
    assert_eq!(
        balance.main.unwrap().value.parse::<Decimal>().unwrap(),
        main
    );
    assert_eq!(
        balance.bonus.unwrap().value.parse::<Decimal>().unwrap(),
        bonus
    );

    // Audited once per call that did something: a SUCCESS per applied key
    // (the seed included), a FAILURE per refused or invalid call; replays
    // write nothing.
    let events: Vec<AuditEvent> = outbox_in(&app, steward_billing::SCHEMA, "audit").await;
    let money_events: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| {
            e.action == "billing.balance.refilled" || e.action == "billing.balance.withdrawn"
        })
        .collect();
    let ok = money_events
        .iter()
        .filter(|e| e.result == common::Result::Success as i32)
        .count();
    let failed = money_events
        .iter()
        .filter(|e| e.result == common::Result::Failure as i32)
        .count();
    assert_eq!(ok, applied.len() + 1);
    assert_eq!(failed, refused + 1);

    // A retry afterwards replays, changing nothing.
    let (op, _) = results
        .iter()
        .find(|(op, o)| o.is_ok() && matches!(op, Op::Withdraw(_)))
        .unwrap();
    let Op::Withdraw(w) = op else { unreachable!() };
    let again = app
        .billing()
        .withdraw(w.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.entry.into_iter().collect::<Vec<_>>(),
        applied[op.key()]
    );
    let count: i64 = {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT count(*) AS n FROM ledger WHERE user_id = $1::uuid")
            .bind::<diesel::sql_types::Text, _>(&user)
            .get_result::<N>(&mut conn)
            .await
            .unwrap()
            .n
    };
    assert_eq!(count as usize, rows.len());
}

/// First refills of accounts that sort below an account the same batch
/// already holds: the batch starts again creating them first (rows are
/// always locked in account order), and every refill lands once.
#[tokio::test]
async fn new_accounts_sorting_below_locked_ones_are_created_in_order() {
    let app = spawn().await;
    // All in one shard (`shard_of`: the id modulo 4), the existing account
    // highest.
    let high = "ffffffff-ffff-7fff-bfff-fffffffffff0".to_string();
    let lows: Vec<String> = (1..=8)
        .map(|i| format!("00000000-0000-7000-8000-0000000000{:02x}", i * 4))
        .collect();
    let refill = |user: &str, key: String| pb::RefillRequest {
        request_id: key,
        user_id: user.into(),
        amount: money("1.5"),
        balance_type: pb::BalanceType::Main as i32,
        notes: String::new(),
    };
    app.billing()
        .refill(refill(&high, "seed".into()))
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for c in 0..32 {
        let mut billing = app.billing();
        let start = start.clone();
        let user = if c % 2 == 0 {
            high.clone()
        } else {
            lows[(c / 2) % lows.len()].clone()
        };
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for k in 0..4 {
                billing
                    .refill(refill(&user, format!("r-{c}-{k}")))
                    .await
                    .expect("refill");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let balance = |user: String| {
        let mut billing = app.billing();
        async move {
            billing
                .get_balance(pb::GetBalanceRequest { user_id: user })
                .await
                .unwrap()
                .into_inner()
                .balance
                .unwrap()
                .main
                .unwrap()
                .value
        }
    };
    // 1 seed + 16 clients x 4 on the high account; 2 clients x 4 on each low.
    assert_eq!(
        balance(high.clone()).await.parse::<Decimal>().unwrap(),
        Decimal::new(975, 1)
    );
    for low in &lows {
        assert_eq!(
            balance(low.clone()).await.parse::<Decimal>().unwrap(),
            Decimal::new(120, 1)
        );
    }
    app.stop().await;
}
