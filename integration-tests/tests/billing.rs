//! Billing through its gRPC API: money commands, idempotency, concurrency,
//! usage charging, histories.

use std::{collections::HashSet, sync::Arc};

use chrono::{Duration, DurationRound, Utc};
use steward_integration_tests::{Options, TestApp, outbox_in, reason, violated_fields};
use steward_kit::auth::Role;
use steward_proto::{audit::AuditEvent, billing as pb, common};
use tonic::Code;

fn dec(s: &str) -> Option<common::Decimal> {
    Some(common::Decimal { value: s.into() })
}

fn val(d: &Option<common::Decimal>) -> String {
    d.as_ref().map(|d| d.value.clone()).unwrap_or_default()
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        billing: Some(steward_billing::BillingConfig {
            extra_bonus: vec![steward_billing::ExtraBonusRule {
                min_amount: "100".parse().unwrap(),
                percent: "10".parse().unwrap(),
            }],
            tariffs: steward_billing::Tariffs {
                groups: [(
                    "trial".to_string(),
                    steward_billing::Prices {
                        reserved_cloudlet_hour: "0".parse().unwrap(),
                        dynamic_cloudlet_hour: "0".parse().unwrap(),
                        storage_gb_hour: "0".parse().unwrap(),
                        traffic_gb: "0".parse().unwrap(),
                    },
                )]
                .into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Options::default()
    })
    .await
}

fn refill(user: &str, key: &str, amount: &str, balance: pb::BalanceType) -> pb::RefillRequest {
    pb::RefillRequest {
        request_id: key.into(),
        user_id: user.into(),
        amount: dec(amount),
        balance_type: balance as i32,
        notes: "manual adjustment".into(),
    }
}

fn withdraw(user: &str, key: &str, amount: &str, balance: pb::BalanceType) -> pb::WithdrawRequest {
    pb::WithdrawRequest {
        request_id: key.into(),
        user_id: user.into(),
        amount: dec(amount),
        balance_type: balance as i32,
        notes: "refund".into(),
    }
}

async fn balance(app: &TestApp, user: &str) -> (String, String) {
    let b = app
        .billing()
        .get_balance(pb::GetBalanceRequest {
            user_id: user.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .unwrap();
    (val(&b.main), val(&b.bonus))
}

#[tokio::test]
async fn refill_withdraw_exactly_once_never_below_zero() {
    let app = spawn().await;
    let user = uuid::Uuid::now_v7().to_string();
    let mut admin = app.billing();
    assert_eq!(balance(&app, &user).await, ("0".into(), "0".into()));

    let first = admin
        .refill(refill(&user, "r1", "50.10", pb::BalanceType::Main))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1);
    assert_eq!(first.entries[0].operation, pb::Operation::Funding as i32);
    assert_eq!(val(&first.balance.as_ref().unwrap().main), "50.1");
    // 0.1 + 0.2: exact.
    admin
        .refill(refill(&user, "r2", "0.1", pb::BalanceType::Main))
        .await
        .unwrap();
    admin
        .refill(refill(&user, "r3", "0.2", pb::BalanceType::Main))
        .await
        .unwrap();
    assert_eq!(balance(&app, &user).await.0, "50.4");

    // A retry returns the first result and changes nothing.
    let again = admin
        .refill(refill(&user, "r1", "50.10", pb::BalanceType::Main))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(balance(&app, &user).await.0, "50.4");
    let err = admin
        .refill(refill(&user, "r1", "99", pb::BalanceType::Main))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["request_id"]);

    let w = admin
        .withdraw(withdraw(&user, "w1", "20.4", pb::BalanceType::Main))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(val(&w.entry.as_ref().unwrap().amount), "-20.4");
    assert_eq!(val(&w.balance.unwrap().main), "30");
    let err = admin
        .withdraw(withdraw(&user, "w2", "30.000001", pb::BalanceType::Main))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "INSUFFICIENT_FUNDS");
    assert_eq!(balance(&app, &user).await.0, "30");
    // The refused key was not consumed: once funded, the same request works.
    admin
        .refill(refill(&user, "r4", "1", pb::BalanceType::Main))
        .await
        .unwrap();
    admin
        .withdraw(withdraw(&user, "w2", "30.000001", pb::BalanceType::Main))
        .await
        .unwrap();
    assert_eq!(balance(&app, &user).await.0, "0.999999");

    // Bonus balance.
    admin
        .refill(refill(&user, "b1", "5", pb::BalanceType::Bonus))
        .await
        .unwrap();
    let err = admin
        .withdraw(withdraw(&user, "b2", "6", pb::BalanceType::Bonus))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_FUNDS");
    admin
        .withdraw(withdraw(&user, "b3", "2", pb::BalanceType::Bonus))
        .await
        .unwrap();
    assert_eq!(balance(&app, &user).await, ("0.999999".into(), "3".into()));

    // Audited as ADMIN actions with amount and notes.
    let events: Vec<AuditEvent> = outbox_in(&app, "billing", "audit").await;
    let refills: Vec<_> = events
        .iter()
        .filter(|e| e.action == "billing.balance.refilled" && e.result == 1)
        .collect();
    assert_eq!(refills.len(), 5);
    // The amount applied, normalised (issue 9: not the raw string).
    assert_eq!(refills[0].comments["amount"], "50.1");
    assert_eq!(refills[0].comments["notes"], "manual adjustment");
    assert_eq!(
        refills[0].category,
        steward_proto::audit::Category::Admin as i32
    );
    assert!(
        events
            .iter()
            .any(|e| e.action == "billing.balance.withdrawn" && e.result == 2),
        "refusal audited"
    );
}

#[tokio::test]
async fn bad_money_input_is_refused() {
    let app = spawn().await;
    let mut admin = app.billing();
    let user = uuid::Uuid::now_v7().to_string();
    for (amount, why) in [
        ("abc", "amount"),
        ("0", "amount"),
        ("-5", "amount"),
        ("1.0000001", "amount"),
        ("1e5", "amount"),
    ] {
        let err = admin
            .refill(refill(&user, "k", amount, pb::BalanceType::Main))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&err), [why], "{amount}");
    }
    let err = admin
        .refill(pb::RefillRequest {
            request_id: String::new(),
            user_id: "x".into(),
            amount: None,
            balance_type: 0,
            notes: "n".repeat(2000),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["request_id", "notes", "user_id", "amount", "balance_type"]
    );
    assert_eq!(balance(&app, &user).await.0, "0");
}

#[tokio::test]
async fn extra_and_registration_bonuses() {
    let app = spawn().await;
    let user = uuid::Uuid::now_v7().to_string();
    let mut admin = app.billing();
    let small = admin
        .refill(refill(&user, "s", "99.99", pb::BalanceType::Main))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(small.entries.len(), 1);
    let big = admin
        .refill(refill(&user, "b", "250", pb::BalanceType::Main))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(big.entries.len(), 2);
    assert_eq!(big.entries[1].operation, pb::Operation::ExtraBonus as i32);
    assert_eq!(val(&big.entries[1].amount), "25");
    let reg = app
        .billing_as(Some(
            app.token("service:accounts", &[Role::PlatformService]),
        ))
        .grant_registration_bonus(pb::GrantRegistrationBonusRequest {
            request_id: "conv-1".into(),
            user_id: user.clone(),
            amount: dec("10"),
            notes: "trial converted".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reg.entry.unwrap().operation,
        pb::Operation::RegistrationBonus as i32
    );
    assert_eq!(balance(&app, &user).await, ("349.99".into(), "35".into()));
}

#[tokio::test]
async fn funding_history_pages_and_totals() {
    let app = spawn().await;
    let user = uuid::Uuid::now_v7().to_string();
    let mut admin = app.billing();
    for i in 0..7 {
        admin
            .refill(refill(&user, &format!("r{i}"), "10", pb::BalanceType::Main))
            .await
            .unwrap();
    }
    admin
        .withdraw(withdraw(&user, "w", "15", pb::BalanceType::Main))
        .await
        .unwrap();
    admin
        .refill(refill(&user, "bonus", "3", pb::BalanceType::Bonus))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut totals;
    loop {
        let page = admin
            .list_funding_history(pb::ListFundingHistoryRequest {
                user_id: user.clone(),
                page: Some(common::PageRequest {
                    page_size: 4,
                    page_token: token.clone(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entries.iter().map(|e| (e.operation, val(&e.amount))));
        totals = page.totals;
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 9);
    assert_eq!(
        seen[0],
        (pb::Operation::BonusFunding as i32, "3".to_string()),
        "newest first"
    );
    let totals: Vec<_> = totals
        .iter()
        .map(|t| (t.operation, t.count, val(&t.amount)))
        .collect();
    assert!(totals.contains(&(pb::Operation::Funding as i32, 7, "70".into())));
    assert!(totals.contains(&(pb::Operation::Withdrawal as i32, 1, "-15".into())));
    let only = admin
        .list_funding_history(pb::ListFundingHistoryRequest {
            user_id: user.clone(),
            operations: vec![pb::Operation::Withdrawal as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only.entries.len(), 1);
    assert_eq!(only.totals.len(), 1);
}

#[tokio::test]
async fn many_concurrent_clients_with_retries_lose_nothing_and_never_overdraw() {
    let app = Arc::new(spawn().await);
    let user = uuid::Uuid::now_v7().to_string();
    app.billing()
        .refill(refill(&user, "seed", "100", pb::BalanceType::Main))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for client in 0..64 {
        let app = app.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let mut billing = app.billing();
            let mut applied = Vec::new();
            for op in 0..6 {
                let key = format!("c{client}-op{op}");
                // Every request is sent twice at once: a client retrying.
                if op % 2 == 0 {
                    let r = refill(&user, &key, "3", pb::BalanceType::Main);
                    let mut twin = billing.clone();
                    let (a, b) = tokio::join!(twin.refill(r.clone()), billing.refill(r));
                    assert_eq!(a.unwrap().into_inner(), b.unwrap().into_inner());
                    applied.push(3i64);
                } else {
                    let w = withdraw(&user, &key, "7", pb::BalanceType::Main);
                    let mut twin = billing.clone();
                    let (a, b) = tokio::join!(twin.withdraw(w.clone()), billing.withdraw(w));
                    // A refused withdrawal leaves no trace, so its twin may
                    // be a fresh attempt that succeeds; either way it
                    // applies at most once.
                    match (a, b) {
                        (Ok(a), Ok(b)) => {
                            assert_eq!(a.into_inner(), b.into_inner());
                            applied.push(-7);
                        }
                        (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
                            assert_eq!(reason(&e), "INSUFFICIENT_FUNDS");
                            applied.push(-7);
                        }
                        (Err(a), Err(b)) => {
                            assert_eq!(reason(&a), "INSUFFICIENT_FUNDS");
                            assert_eq!(reason(&b), "INSUFFICIENT_FUNDS");
                        }
                    }
                }
            }
            applied
        }));
    }
    let mut expected: i64 = 100;
    for t in tasks {
        expected += t.await.unwrap().iter().sum::<i64>();
    }
    let (main, _) = balance(&app, &user).await;
    assert_eq!(
        main,
        expected.to_string(),
        "balance equals the distinct operations"
    );
    let history = app
        .billing()
        .list_funding_history(pb::ListFundingHistoryRequest {
            user_id: user.clone(),
            // The main balance's operations (the seed also earned an extra bonus).
            operations: vec![
                pb::Operation::Funding as i32,
                pb::Operation::Withdrawal as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ledger_sum: rust_decimal::Decimal = history
        .totals
        .iter()
        .map(|t| val(&t.amount).parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(
        ledger_sum.normalize().to_string(),
        expected.to_string(),
        "balance equals the ledger"
    );
    let entries: i64 = history.totals.iter().map(|t| t.count).sum();
    assert_eq!(
        entries,
        1 + 64 * 3 + (expected - 100 - 64 * 9) / -7,
        "one entry per distinct operation"
    );
    assert!(expected >= 0);
}

fn usage(
    id: &str,
    user: &str,
    group: &str,
    (env, node, layer): (&str, &str, &str),
    start: chrono::DateTime<Utc>,
    reserved: &str,
    traffic: &str,
) -> pb::UsageRecord {
    pb::UsageRecord {
        usage_id: id.into(),
        user_id: user.into(),
        group: group.into(),
        environment: env.into(),
        node_id: node.into(),
        layer: layer.into(),
        slot_start: Some(prost_types::Timestamp {
            seconds: start.timestamp(),
            nanos: 0,
        }),
        slot_end: Some(prost_types::Timestamp {
            seconds: (start + Duration::hours(1)).timestamp(),
            nanos: 0,
        }),
        reserved_cloudlets: dec(reserved),
        dynamic_cloudlets: dec("0"),
        storage: dec("0"),
        traffic: dec(traffic),
    }
}

#[tokio::test]
async fn usage_is_priced_charged_bonus_first_once_and_summarised() {
    let app = spawn().await;
    let user = uuid::Uuid::now_v7().to_string();
    app.billing()
        .refill(refill(&user, "m", "10", pb::BalanceType::Main))
        .await
        .unwrap();
    app.billing()
        .refill(refill(&user, "b", "0.01", pb::BalanceType::Bonus))
        .await
        .unwrap();
    // Two days back, so that the slot 25 hours later has ended at any time
    // of day (one day back failed between 00:00 and 02:00 UTC).
    let day = Utc::now().duration_trunc(Duration::days(1)).unwrap() - Duration::days(2);
    let records = vec![
        // 4 reserved cloudlets for an hour at 0.004 = 0.016 each.
        usage(
            "u1",
            &user,
            "billing",
            ("shop", "node-1", "cp"),
            day,
            "4",
            "0",
        ),
        usage(
            "u2",
            &user,
            "billing",
            ("shop", "node-2", "cp"),
            day,
            "4",
            "0",
        ),
        usage(
            "u3",
            &user,
            "billing",
            ("shop", "node-3", "sqldb"),
            day + Duration::hours(1),
            "4",
            "1",
        ),
        usage(
            "u4",
            &user,
            "billing",
            ("blog", "node-4", "cp"),
            day + Duration::hours(25),
            "4",
            "0",
        ),
    ];
    let mut platform = app.billing_as(Some(
        app.token("service:jelastic", &[Role::PlatformService]),
    ));
    let charged = platform
        .record_usage(pb::RecordUsageRequest {
            records: records.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((charged.accepted, charged.duplicates), (4, 0));
    // 4 * 0.016 + 1 GB * 0.05 = 0.114
    assert_eq!(val(&charged.charged), "0.114");
    // Bonus (0.01) first, then main: 10 - 0.104.
    assert_eq!(balance(&app, &user).await, ("9.896".into(), "0".into()));
    // Redelivery charges nothing.
    let again = platform
        .record_usage(pb::RecordUsageRequest { records })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.accepted, again.duplicates), (0, 4));
    assert_eq!(balance(&app, &user).await.0, "9.896");

    // Trial tariff is free.
    let free = platform
        .record_usage(pb::RecordUsageRequest {
            records: vec![usage(
                "t1",
                &user,
                "trial",
                ("shop", "node-1", "cp"),
                day,
                "100",
                "100",
            )],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(val(&free.charged), "0");

    let history = |group_by_node: bool, interval: pb::Interval| pb::GetBillingHistoryRequest {
        user_id: user.clone(),
        start_time: Some(prost_types::Timestamp {
            seconds: (day - Duration::days(1)).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: Utc::now().timestamp(),
            nanos: 0,
        }),
        interval: interval as i32,
        group_by_node,
        environment: String::new(),
    };
    let by_node = app
        .billing()
        .get_billing_history(history(false, pb::Interval::Day))
        .await
        .unwrap()
        .into_inner();
    let items: Vec<(String, String, String)> = by_node
        .rows
        .iter()
        .map(|r| (r.environment.clone(), r.item.clone(), val(&r.cost)))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("shop", "node-1", "0.016"),
        ("shop", "node-2", "0.016"),
        ("shop", "node-3", "0.066"),
        ("blog", "node-4", "0.016"),
    ]
    .iter()
    .map(|(e, i, c)| (e.to_string(), i.to_string(), c.to_string()))
    .collect();
    let mut sorted_items = items.clone();
    sorted_items.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    // The trial node-1 record costs 0: node-1 stays at 0.016.
    assert_eq!(sorted_items, sorted_expected);
    assert_eq!(val(&by_node.totals.as_ref().unwrap().cost), "0.114");
    assert_eq!(val(&by_node.totals.unwrap().traffic), "101");

    // Grouped by node: same-layer nodes of an environment become one item.
    let grouped = app
        .billing()
        .get_billing_history(history(true, pb::Interval::Month))
        .await
        .unwrap()
        .into_inner();
    let layers: HashSet<(String, String, String)> = grouped
        .rows
        .iter()
        .map(|r| (r.environment.clone(), r.item.clone(), val(&r.cost)))
        .collect();
    assert!(
        layers.contains(&("shop".into(), "cp".into(), "0.032".into())),
        "{layers:?}"
    );

    let envs = app
        .billing()
        .list_environments(pb::ListEnvironmentsRequest {
            user_id: user.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .environments;
    let names: Vec<_> = envs
        .iter()
        .map(|e| (e.name.as_str(), e.node_ids.len()))
        .collect();
    assert_eq!(names, [("blog", 1), ("shop", 3)]);

    // Bad records are refused with their index; nothing is charged.
    let mut bad = usage("x1", &user, "billing", ("shop", "n", "cp"), day, "-1", "0");
    bad.slot_end = bad.slot_start;
    let err = platform
        .record_usage(pb::RecordUsageRequest {
            records: vec![
                usage("ok", &user, "billing", ("shop", "n", "cp"), day, "1", "0"),
                bad,
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["records[1].slot_end", "records[1].reserved_cloudlets"]
    );
    assert_eq!(balance(&app, &user).await.0, "9.896");
}

#[tokio::test]
async fn users_see_only_their_own_money_and_only_admins_move_it() {
    let app = spawn().await;
    let me = uuid::Uuid::now_v7().to_string();
    let other = uuid::Uuid::now_v7().to_string();
    let mut mine = app.billing_as(Some(app.token(&me, &[Role::User])));
    mine.get_balance(pb::GetBalanceRequest {
        user_id: me.clone(),
    })
    .await
    .unwrap();
    let err = mine
        .get_balance(pb::GetBalanceRequest {
            user_id: other.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mine
        .list_funding_history(pb::ListFundingHistoryRequest {
            user_id: other.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mine
        .refill(refill(&me, "self", "1000", pb::BalanceType::Main))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mine
        .record_usage(pb::RecordUsageRequest { records: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let balances = app
        .billing()
        .batch_get_balances(pb::BatchGetBalancesRequest {
            user_ids: vec![me.clone(), other.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .balances;
    assert_eq!(
        balances
            .iter()
            .map(|b| b.user_id.clone())
            .collect::<Vec<_>>(),
        [me, other]
    );
    assert!(
        balances
            .iter()
            .all(|b| val(&b.main) == "0" && b.currency_code == "USD")
    );
}

#[tokio::test]
async fn subscriptions_invoice_charge_renew_and_cancel() {
    let app = TestApp::spawn_with(Options {
        billing: Some(steward_billing::BillingConfig {
            renewal_interval: std::time::Duration::from_millis(100),
            ..Default::default()
        }),
        ..Options::default()
    })
    .await;
    let user = uuid::Uuid::now_v7().to_string();
    let mut admin = app.billing();
    admin
        .refill(refill(&user, "fund", "100", pb::BalanceType::Main))
        .await
        .unwrap();
    let plan = admin
        .create_plan(pb::CreatePlanRequest {
            product: "Managed PostgreSQL".into(),
            name: "Small".into(),
            price: dec("19.99"),
            period_days: 30,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let err = admin
        .create_plan(pb::CreatePlanRequest {
            product: "Managed PostgreSQL".into(),
            name: "Small".into(),
            price: dec("1"),
            period_days: 30,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = admin
        .create_plan(pb::CreatePlanRequest {
            product: String::new(),
            name: "x".into(),
            price: dec("-1"),
            period_days: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["product", "price", "period_days"]);

    // The user subscribes themselves; the first period is charged at once.
    let mut mine = app.billing_as(Some(app.token(&user, &[Role::User])));
    let request = pb::CreateSubscriptionRequest {
        request_id: "sub-1".into(),
        user_id: user.clone(),
        plan_id: plan.id.clone(),
        environments: vec!["shop".into()],
    };
    let created = mine
        .create_subscription(request.clone())
        .await
        .unwrap()
        .into_inner();
    let sub = created.subscription.clone().unwrap();
    assert_eq!(sub.status, pb::SubscriptionStatus::Active as i32);
    assert_eq!(
        (sub.product.as_str(), sub.plan.as_str(), val(&sub.cost)),
        ("Managed PostgreSQL", "Small", "19.99".into())
    );
    assert_eq!(val(&created.invoice.as_ref().unwrap().amount), "19.99");
    assert_eq!(balance(&app, &user).await.0, "80.01");
    // Retried: same subscription, charged once.
    assert_eq!(
        mine.create_subscription(request)
            .await
            .unwrap()
            .into_inner(),
        created
    );
    assert_eq!(balance(&app, &user).await.0, "80.01");
    // Not for someone else.
    let err = mine
        .create_subscription(pb::CreateSubscriptionRequest {
            request_id: "x".into(),
            user_id: uuid::Uuid::now_v7().to_string(),
            plan_id: plan.id.clone(),
            environments: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mine
        .create_subscription(pb::CreateSubscriptionRequest {
            request_id: "y".into(),
            user_id: user.clone(),
            plan_id: uuid::Uuid::now_v7().to_string(),
            environments: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["plan_id"]);

    // The period ends: the job invoices and charges the next one.
    {
        use diesel_async::SimpleAsyncConnection;
        steward_kit::db::connect(&app.db.url, "billing")
            .await
            .unwrap()
            .batch_execute(&format!(
                "UPDATE subscriptions SET current_period_start = now() - interval '30 days', current_period_end = now() WHERE id = '{}'",
                sub.id
            ))
            .await
            .unwrap();
    }
    let mut invoices = Vec::new();
    for _ in 0..100 {
        invoices = mine
            .list_invoices(pb::ListInvoicesRequest {
                subscription_id: sub.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .invoices;
        if invoices.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(invoices.len(), 2);
    assert_eq!(balance(&app, &user).await.0, "60.02");

    // Cancelled: no more renewals; it expires at the end of the paid period.
    let cancelled = mine
        .cancel_subscription(pb::CancelSubscriptionRequest {
            subscription_id: sub.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(cancelled.status, pb::SubscriptionStatus::Cancelled as i32);
    let err = mine
        .cancel_subscription(pb::CancelSubscriptionRequest {
            subscription_id: sub.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "SUBSCRIPTION_NOT_ACTIVE");
    {
        use diesel_async::SimpleAsyncConnection;
        steward_kit::db::connect(&app.db.url, "billing")
            .await
            .unwrap()
            .batch_execute(&format!(
                "UPDATE subscriptions SET current_period_end = now() WHERE id = '{}'",
                sub.id
            ))
            .await
            .unwrap();
    }
    let mut status = 0;
    for _ in 0..100 {
        status = mine
            .list_subscriptions(pb::ListSubscriptionsRequest {
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .subscriptions[0]
            .status;
        if status == pb::SubscriptionStatus::Expired as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, pb::SubscriptionStatus::Expired as i32);
    assert_eq!(
        balance(&app, &user).await.0,
        "60.02",
        "no charge after cancelling"
    );
    let history = admin
        .list_funding_history(pb::ListFundingHistoryRequest {
            user_id: user.clone(),
            operations: vec![pb::Operation::Charge as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 2);
    assert!(
        history.entries[0]
            .notes
            .starts_with("Managed PostgreSQL Small")
    );
}

fn fields<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Vec<String> {
    violated_fields(&result.unwrap_err())
}

#[tokio::test]
async fn every_read_and_command_refuses_bad_input() {
    let app = spawn().await;
    let mut admin = app.billing();
    let mut platform = app.billing_as(Some(app.token("service:p", &[Role::PlatformService])));

    assert_eq!(
        fields(
            admin
                .get_balance(pb::GetBalanceRequest {
                    user_id: "nope".into()
                })
                .await
        ),
        ["user_id"]
    );
    assert_eq!(
        fields(
            admin
                .batch_get_balances(pb::BatchGetBalancesRequest {
                    user_ids: vec!["x".into()]
                })
                .await
        ),
        ["user_ids[0]"]
    );
    let too_many = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    assert_eq!(
        fields(
            admin
                .batch_get_balances(pb::BatchGetBalancesRequest { user_ids: too_many })
                .await
        ),
        ["user_ids"]
    );
    assert_eq!(
        fields(
            platform
                .grant_registration_bonus(pb::GrantRegistrationBonusRequest {
                    request_id: "g".into(),
                    user_id: uuid::Uuid::now_v7().to_string(),
                    amount: dec("0"),
                    notes: String::new(),
                })
                .await
        ),
        ["amount"]
    );
    let user = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        fields(
            admin
                .list_funding_history(pb::ListFundingHistoryRequest {
                    user_id: user.clone(),
                    operations: vec![99],
                    start_time: Some(prost_types::Timestamp {
                        seconds: Utc::now().timestamp() + 100,
                        nanos: 0
                    }),
                    ..Default::default()
                })
                .await
        ),
        ["start_time", "operations[0]"]
    );
    assert_eq!(
        fields(
            admin
                .get_billing_history(pb::GetBillingHistoryRequest {
                    user_id: user.clone(),
                    start_time: Some(prost_types::Timestamp {
                        seconds: (Utc::now() - Duration::days(200)).timestamp(),
                        nanos: 0
                    }),
                    interval: pb::Interval::Hour as i32,
                    ..Default::default()
                })
                .await
        ),
        ["interval"]
    );
    assert_eq!(
        fields(
            admin
                .list_environments(pb::ListEnvironmentsRequest {
                    user_id: "x".into()
                })
                .await
        ),
        ["user_id"]
    );
    assert_eq!(
        fields(
            platform
                .record_usage(pb::RecordUsageRequest { records: vec![] })
                .await
        ),
        ["records"]
    );
    assert_eq!(
        fields(
            admin
                .list_invoices(pb::ListInvoicesRequest {
                    subscription_id: "x".into()
                })
                .await
        ),
        ["subscription_id"]
    );
    let missing = uuid::Uuid::now_v7().to_string();
    let err = admin
        .list_invoices(pb::ListInvoicesRequest {
            subscription_id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = admin
        .cancel_subscription(pb::CancelSubscriptionRequest {
            subscription_id: missing,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        fields(
            admin
                .list_subscriptions(pb::ListSubscriptionsRequest {
                    user_id: "x".into()
                })
                .await
        ),
        ["user_id"]
    );
    assert!(
        admin
            .list_plans(pb::ListPlansRequest {})
            .await
            .unwrap()
            .into_inner()
            .plans
            .is_empty()
    );
}

#[tokio::test]
async fn no_debt_from_subscriptions_no_double_bonus_no_double_usage() {
    let app = TestApp::spawn_with(Options {
        billing: Some(steward_billing::BillingConfig {
            renewal_interval: std::time::Duration::from_millis(100),
            ..Default::default()
        }),
        ..Options::default()
    })
    .await;
    let user = uuid::Uuid::now_v7().to_string();
    let mut admin = app.billing();
    let plan = admin
        .create_plan(pb::CreatePlanRequest {
            product: "VPS".into(),
            name: "M".into(),
            price: dec("10"),
            period_days: 30,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let subscribe = |key: &str| pb::CreateSubscriptionRequest {
        request_id: key.into(),
        user_id: user.clone(),
        plan_id: plan.id.clone(),
        environments: vec![],
    };
    let err = admin
        .create_subscription(subscribe("s0"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_FUNDS");
    let subs = admin
        .list_subscriptions(pb::ListSubscriptionsRequest {
            user_id: user.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert!(subs.is_empty(), "nothing created");

    // Bonus and main together pay; the renewal cannot: the subscription ends, no debt.
    admin
        .refill(refill(&user, "m", "6", pb::BalanceType::Main))
        .await
        .unwrap();
    admin
        .refill(refill(&user, "b", "5", pb::BalanceType::Bonus))
        .await
        .unwrap();
    let sub = admin
        .create_subscription(subscribe("s1"))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(balance(&app, &user).await, ("1".into(), "0".into()));
    {
        use diesel_async::SimpleAsyncConnection;
        steward_kit::db::connect(&app.db.url, "billing")
            .await
            .unwrap()
            .batch_execute(&format!(
                "UPDATE subscriptions SET current_period_end = now() WHERE id = '{}'",
                sub.id
            ))
            .await
            .unwrap();
    }
    let mut status = 0;
    for _ in 0..100 {
        status = admin
            .list_subscriptions(pb::ListSubscriptionsRequest {
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .subscriptions[0]
            .status;
        if status == pb::SubscriptionStatus::Expired as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, pb::SubscriptionStatus::Expired as i32);
    assert_eq!(balance(&app, &user).await.0, "1", "no charge into debt");
    let invoices = admin
        .list_invoices(pb::ListInvoicesRequest {
            subscription_id: sub.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert_eq!(invoices.len(), 1, "the unpaid period was not invoiced");

    // The registration bonus is granted once per user, whatever the key.
    let mut platform = app.billing_as(Some(
        app.token("service:accounts", &[Role::PlatformService]),
    ));
    let grant = |key: &str| pb::GrantRegistrationBonusRequest {
        request_id: key.into(),
        user_id: user.clone(),
        amount: dec("5"),
        notes: String::new(),
    };
    platform
        .grant_registration_bonus(grant("g1"))
        .await
        .unwrap();
    let err = platform
        .grant_registration_bonus(grant("g2"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "REGISTRATION_BONUS_GRANTED");

    // A usage id twice in one batch is refused rather than charged twice.
    let day = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(2);
    let record = usage("dup", &user, "billing", ("e", "n", "cp"), day, "1", "0");
    let err = platform
        .record_usage(pb::RecordUsageRequest {
            records: vec![record.clone(), record],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["records[1].usage_id"]);
}
