//! The error contract at the edges, as a client the project did not write
//! meets it: undecodable messages, NUL bytes, floods of violations, money
//! strings, a database that drops connections. Bad input is the caller's
//! fault (INVALID_ARGUMENT), a database going away is retryable
//! (UNAVAILABLE); neither is ever INTERNAL, and neither changes anything.

use steward_gateway::GatewayConfig;
use steward_integration_tests::{ADMIN_ID, Options, TestApp, raw, violated_fields};
use steward_kit::auth::Role;
use steward_proto::{accounts as pb, billing as bpb, common};
use tonic::{Code, transport::Channel};

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        billing: Some(Default::default()),
        gateway: Some(GatewayConfig::default()),
        ..Options::default()
    })
    .await
}

fn gateway(app: &TestApp) -> Channel {
    Channel::from_shared(app.gateway_endpoint.clone().unwrap())
        .unwrap()
        .connect_lazy()
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_at_the_service_and_the_gateway() {
    let app = spawn().await;
    let token = app.token(ADMIN_ID, &[Role::UserAdmin]);
    // GetUserRequest.user_id (field 1, a string) holding bytes that are not
    // UTF-8, then a length prefix promising more bytes than follow.
    let bodies: [Vec<u8>; 2] = [vec![0x0a, 0x02, 0xff, 0xfe], vec![0x0a, 0x10, b'a']];
    for channel in [app.channel(), gateway(&app)] {
        for body in &bodies {
            let status = raw::call(
                channel.clone(),
                "/steward.accounts.v1.AccountsService/GetUser",
                body.clone(),
                Some(&token),
            )
            .await
            .expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("does not decode"), "{status:?}");
        }
    }
    // Same through billing: the codec is shared by every service.
    let status = raw::call(
        app.billing_channel(),
        "/steward.billing.v1.BillingService/GetBalance",
        bodies[0].clone(),
        Some(&token),
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn nul_bytes_are_refused_as_the_callers_fault() {
    let app = spawn().await;
    let user = app.create_user("nul@contract.io").await;
    let err = app
        .admin()
        .list_users(pb::ListUsersRequest {
            query: "a\0b".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = app
        .admin()
        .set_notes(pb::SetNotesRequest {
            user_id: user.id.clone(),
            notes: "before\0after".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let after = app
        .admin()
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(after.notes, user.notes, "nothing changed");
    let err = app
        .billing()
        .refill(bpb::RefillRequest {
            request_id: "nul-1".into(),
            user_id: user.id.clone(),
            amount: Some(common::Decimal { value: "5".into() }),
            balance_type: bpb::BalanceType::Main as i32,
            notes: "a\0".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(violated_fields(&err), ["notes"]);
}

#[tokio::test]
async fn hundreds_of_violations_are_capped_so_the_answer_stays_small() {
    let app = spawn().await;
    let user = app.create_user("roles@contract.io").await;
    let request = pb::SetRolesRequest {
        user_id: user.id.clone(),
        roles: (1000..1300).collect(),
        etag: String::new(),
    };
    let direct = app
        .admin()
        .set_roles(request.clone())
        .await
        .expect_err("refused");
    let token = app.token(ADMIN_ID, &[Role::UserAdmin]);
    let through = app
        .gw_accounts(Some(token))
        .set_roles(request)
        .await
        .expect_err("refused");
    for status in [direct, through] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let fields = violated_fields(&status);
        assert_eq!(fields.len(), 21, "20 listed and one counting the rest");
        assert_eq!(fields[20], "*");
        assert!(status.details().len() < 16 * 1024);
    }
}

#[tokio::test]
async fn money_has_one_grammar_and_the_audit_records_the_amount_applied() {
    let app = spawn().await;
    let user = app.create_user("money@contract.io").await;
    for (i, bad) in [
        "5_00", "1_0.5", " 5", "+1", ".5", "1.", "5\u{a0}", "1,5", "0x10",
    ]
    .into_iter()
    .enumerate()
    {
        let err = app
            .billing()
            .refill(bpb::RefillRequest {
                request_id: format!("grammar-{i}"),
                user_id: user.id.clone(),
                amount: Some(common::Decimal { value: bad.into() }),
                balance_type: bpb::BalanceType::Main as i32,
                notes: String::new(),
            })
            .await
            .expect_err(bad);
        assert_eq!(violated_fields(&err), ["amount"], "{bad:?}");
    }
    let balance = app
        .billing()
        .get_balance(bpb::GetBalanceRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .unwrap();
    assert_eq!(balance.main.unwrap().value, "0", "nothing was applied");
    app.billing()
        .refill(bpb::RefillRequest {
            request_id: "grammar-ok".into(),
            user_id: user.id.clone(),
            amount: Some(common::Decimal {
                value: "007.50".into(),
            }),
            balance_type: bpb::BalanceType::Main as i32,
            notes: String::new(),
        })
        .await
        .expect("accepted");
    let events: Vec<steward_proto::audit::AuditEvent> =
        steward_integration_tests::outbox_in(&app, steward_billing::SCHEMA, "audit").await;
    let refill = events
        .iter()
        .find(|e| {
            e.action == "billing.balance.refilled" && e.result == common::Result::Success as i32
        })
        .expect("the refill is audited");
    assert_eq!(refill.comments["amount"], "7.5");
}

#[tokio::test]
async fn a_database_dropping_connections_is_unavailable_never_internal() {
    let app = spawn().await;
    app.create_user("drop@contract.io").await;
    for _ in 0..3 {
        // Every server connection of this test's database is cut, as an
        // administrator (or a failover) would.
        steward_integration_tests::exec(
            &app,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await;
        for _ in 0..4 {
            match app
                .admin()
                .list_users(pb::ListUsersRequest::default())
                .await
            {
                Ok(_) => {}
                Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
            }
        }
    }
    // The pool recovers: the next calls work.
    let mut recovered = false;
    for _ in 0..20 {
        if app
            .admin()
            .list_users(pb::ListUsersRequest::default())
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered);
}
