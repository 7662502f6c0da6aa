//! Refusals the services decide themselves are in the audit trail: once,
//! and a flood as a sample plus one summary (issue 10). Calls go straight
//! to the services, as platform services make them.

use std::time::Duration;

use steward_integration_tests::{ADMIN_ID, Options, TestApp, outbox_in};
use steward_kit::auth::{Claims, Role, refusals::SAMPLE};
use steward_proto::{accounts as pb, audit::AuditEvent, billing as bpb, common};
use tonic::Code;

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        billing: Some(Default::default()),
        ..Options::default()
    })
    .await
}

async fn refusals(app: &TestApp, schema: &str, action: &str) -> Vec<AuditEvent> {
    outbox_in::<AuditEvent>(app, schema, "audit")
        .await
        .into_iter()
        .filter(|e| e.action == action && e.result == common::Result::Failure as i32)
        .collect()
}

/// Waits for the refusal writer (asynchronous, off the call's path).
async fn eventually(app: &TestApp, schema: &str, action: &str, n: usize) -> Vec<AuditEvent> {
    for _ in 0..100 {
        let found = refusals(app, schema, action).await;
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refusals(app, schema, action).await
}

#[tokio::test]
async fn direct_refusals_are_recorded_with_who_asked() {
    let app = spawn().await;
    let user = app.create_user("self@refusals.io").await;
    let other = app.create_user("other@refusals.io").await;
    // A USER on an admin method: refused by the policy, with the caller known.
    let err = app
        .as_user(&user.id)
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // No token at all.
    let err = app
        .client(None)
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let accounts = eventually(
        &app,
        steward_accounts::SCHEMA,
        "accounts.request.refused",
        2,
    )
    .await;
    assert_eq!(accounts.len(), 2, "{accounts:#?}");
    let by_user = accounts
        .iter()
        .find(|e| e.actor_user_id == user.id)
        .expect("the USER's refusal names them");
    assert_eq!(
        by_user.comments["method"],
        "/steward.accounts.v1.AccountsService/ListUsers"
    );
    assert_eq!(by_user.comments["code"], "PermissionDenied");
    assert!(accounts.iter().any(|e| e.actor_user_id.is_empty()));

    // A SELF read of another user's balance: refused by the handler.
    let token = app.token(&user.id, &[Role::User]);
    let err = app
        .billing_as(Some(token.clone()))
        .get_balance(bpb::GetBalanceRequest {
            user_id: other.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let billing = eventually(&app, steward_billing::SCHEMA, "billing.request.refused", 1).await;
    assert_eq!(billing.len(), 1);
    assert_eq!(billing[0].actor_user_id, user.id);
    assert_eq!(
        billing[0].comments["method"],
        "/steward.billing.v1.BillingService/GetBalance"
    );

    // A USER on Refill (admin only).
    let err = app
        .billing_as(Some(token))
        .refill(bpb::RefillRequest {
            request_id: "r-1".into(),
            user_id: user.id.clone(),
            amount: Some(common::Decimal { value: "1".into() }),
            balance_type: bpb::BalanceType::Main as i32,
            notes: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        eventually(&app, steward_billing::SCHEMA, "billing.request.refused", 2)
            .await
            .len(),
        2
    );

    // An impersonation token where impersonating is forbidden.
    let mut claims = Claims::new(&user.id, &[Role::User], Duration::from_secs(60));
    claims.act = Some(steward_kit::auth::Actor {
        sub: ADMIN_ID.into(),
    });
    claims.sid = Some(uuid::Uuid::now_v7().to_string());
    let impersonating = app.signer.sign(&claims);
    let err = app
        .auth(Some(impersonating))
        .change_password(pb::ChangePasswordRequest {
            user_id: user.id.clone(),
            current_password: "irrelevant-password".into(),
            new_password: "another-long-password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let accounts = eventually(
        &app,
        steward_accounts::SCHEMA,
        "accounts.request.refused",
        3,
    )
    .await;
    let forbidden = accounts
        .iter()
        .find(|e| e.comments["method"].ends_with("/ChangePassword"))
        .expect("the impersonator's refusal is recorded");
    assert_eq!(forbidden.impersonator_user_id, ADMIN_ID);
}

#[tokio::test]
async fn a_refused_command_is_recorded_once() {
    let app = spawn().await;
    let user = app.create_user("once@refusals.io").await;
    let other = app.create_user("twice@refusals.io").await;
    // SELF may subscribe only themselves: the command runner refuses and
    // audits billing.subscription.created FAILURE; the layer must not add
    // a second record.
    let err = app
        .billing_as(Some(app.token(&user.id, &[Role::User])))
        .create_subscription(bpb::CreateSubscriptionRequest {
            request_id: "s-1".into(),
            user_id: other.id.clone(),
            plan_id: uuid::Uuid::now_v7().to_string(),
            environments: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        eventually(
            &app,
            steward_billing::SCHEMA,
            "billing.subscription.created",
            1
        )
        .await
        .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        refusals(&app, steward_billing::SCHEMA, "billing.request.refused")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_flood_is_sampled_and_summarised() {
    let app = spawn().await;
    let user = app.create_user("flood@refusals.io").await;
    let mut client = app.as_user(&user.id);
    const CALLS: u64 = 150;
    for _ in 0..CALLS {
        let err = client
            .list_users(pb::ListUsersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    // The sample at once, a summary when the window (10 s) closes; the
    // calls may straddle two windows.
    let accounted = |events: &[AuditEvent]| -> (u64, u64) {
        let single = events
            .iter()
            .filter(|e| !e.comments.contains_key("summary"))
            .count() as u64;
        let counted = events
            .iter()
            .filter_map(|e| e.comments.get("count")?.parse::<u64>().ok())
            .sum::<u64>();
        (single, counted)
    };
    let mut events = Vec::new();
    for _ in 0..250 {
        events = refusals(&app, steward_accounts::SCHEMA, "accounts.request.refused").await;
        let (single, counted) = accounted(&events);
        if single + counted >= CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (single, counted) = accounted(&events);
    assert!((SAMPLE..=2 * SAMPLE).contains(&single), "sampled: {single}");
    assert!(counted > 0, "the rest is summarised");
    assert_eq!(single + counted, CALLS, "every refusal accounted for");
}

#[tokio::test]
async fn impersonators_may_not_delete_tokens_cancel_subscriptions_or_change_the_profile() {
    let app = spawn().await;
    let user = app.create_user("impersonated@refusals.io").await;
    let mut claims = Claims::new(&user.id, &[Role::User], Duration::from_secs(60));
    claims.act = Some(steward_kit::auth::Actor {
        sub: ADMIN_ID.into(),
    });
    claims.sid = Some(uuid::Uuid::now_v7().to_string());
    let token = app.signer.sign(&claims);
    let some_id = uuid::Uuid::now_v7().to_string();
    let refused = [
        app.auth(Some(token.clone()))
            .delete_api_token(pb::DeleteApiTokenRequest {
                token_id: some_id.clone(),
            })
            .await
            .unwrap_err(),
        app.billing_as(Some(token.clone()))
            .cancel_subscription(bpb::CancelSubscriptionRequest {
                subscription_id: some_id,
            })
            .await
            .unwrap_err(),
        app.client(Some(token))
            .update_user(pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: user.id.clone(),
                    phone: Some("+15551234567".into()),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["phone".into()],
                }),
            })
            .await
            .unwrap_err(),
    ];
    for status in refused {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(
            steward_integration_tests::reason(&status),
            "FORBIDDEN_WHILE_IMPERSONATING"
        );
    }
}
