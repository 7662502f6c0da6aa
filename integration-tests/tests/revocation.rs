//! Prompt revocation: once a change is acknowledged, the tokens it revokes
//! are refused everywhere a token is checked (accounts, billing, the
//! gateway) within a second, not when they expire. Each test polls every
//! 50 ms from the acknowledgement and prints the latency it measured.

use std::time::{Duration, Instant};

use steward_gateway::GatewayConfig;
use steward_integration_tests::{ADMIN_ID, Options, TestApp, reason};
use steward_kit::auth::Role;
use steward_proto::{accounts as pb, billing as bpb};
use tonic::{Code, Status};

const PASSWORD: &str = "correct horse battery";
const LIMIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

/// The gateway as shipped, except for sign-in rate limits (tests sign in
/// often from one address). Its API token cache (60 s) and session check
/// cache (5 s) stay on: revocation must not depend on them expiring.
fn gateway_config() -> GatewayConfig {
    let mut config = GatewayConfig::default();
    config.rate_limits.sign_in_burst = 1000;
    config
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        billing: Some(steward_billing::BillingConfig::default()),
        gateway: Some(gateway_config()),
        ..Options::default()
    })
    .await
}

async fn user_with_password(app: &TestApp, email: &str) -> pb::User {
    app.admin()
        .create_user(pb::CreateUserRequest {
            email: email.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("user")
}

async fn sign_in(app: &TestApp, email: &str) -> String {
    app.gw_auth(None)
        .sign_in(pb::SignInRequest {
            email: email.into(),
            password: PASSWORD.into(),
            totp_code: String::new(),
            device: "revocation test".into(),
        })
        .await
        .expect("sign in")
        .into_inner()
        .tokens
        .expect("tokens")
        .access_token
}

/// Where a token is checked.
#[derive(Debug, Clone, Copy)]
enum At {
    Accounts,
    Billing,
    Gateway,
}

/// A SELF call with `token` at `at`: GetUser (accounts, directly or through
/// the gateway) or GetBalance (billing, directly).
async fn call(app: &TestApp, at: At, token: &str, user_id: &str) -> Result<(), Status> {
    let get_user = pb::GetUserRequest {
        user_id: user_id.into(),
    };
    match at {
        At::Accounts => app
            .client(Some(token.into()))
            .get_user(get_user)
            .await
            .map(drop),
        At::Gateway => app
            .gw_accounts(Some(token.into()))
            .get_user(get_user)
            .await
            .map(drop),
        At::Billing => app
            .billing_as(Some(token.into()))
            .get_balance(bpb::GetBalanceRequest {
                user_id: user_id.into(),
            })
            .await
            .map(drop),
    }
}

/// Polls `at` every 50 ms from now until the token is refused
/// UNAUTHENTICATED; fails past one second. Returns the latency.
async fn refused_within_a_second(
    app: &TestApp,
    at: At,
    token: &str,
    user_id: &str,
    acknowledged: Instant,
) -> Duration {
    loop {
        match call(app, at, token, user_id).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                let latency = acknowledged.elapsed();
                assert!(latency < LIMIT, "{at:?} refused only after {latency:?}");
                return latency;
            }
            Err(status) => panic!("{at:?}: unexpected refusal {status:?}"),
            Ok(()) => {}
        }
        assert!(
            acknowledged.elapsed() < LIMIT,
            "{at:?} still accepts the token after {:?}",
            acknowledged.elapsed()
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn change_status(app: &TestApp, user_id: &str, action: pb::StatusAction) {
    let results = app
        .admin()
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            user_ids: vec![user_id.into()],
            action: action as i32,
            reason: "revocation test".into(),
        })
        .await
        .expect("change status")
        .into_inner()
        .results;
    assert!(
        results.iter().all(|r| r.reason.is_empty()),
        "status change refused: {results:?}"
    );
}

#[tokio::test]
async fn a_suspended_users_token_is_refused_everywhere_within_a_second() {
    let app = spawn().await;
    let user = user_with_password(&app, "suspended@example.com").await;
    let token = sign_in(&app, "suspended@example.com").await;
    for at in [At::Accounts, At::Billing, At::Gateway] {
        call(&app, at, &token, &user.id)
            .await
            .unwrap_or_else(|s| panic!("{at:?} accepts the token before: {s:?}"));
    }

    change_status(&app, &user.id, pb::StatusAction::Suspend).await;
    let acknowledged = Instant::now();
    for at in [At::Accounts, At::Billing, At::Gateway] {
        let latency = refused_within_a_second(&app, at, &token, &user.id, acknowledged).await;
        eprintln!("revocation latency: suspend -> {at:?}: {latency:?}");
    }
    let refused = call(&app, At::Billing, &token, &user.id).await.unwrap_err();
    assert_eq!(reason(&refused), "TOKEN_REVOKED");
    let refused = call(&app, At::Gateway, &token, &user.id).await.unwrap_err();
    assert_eq!(reason(&refused), "TOKEN_REVOKED");

    // Reactivated, the user signs in again and the new token works: only
    // tokens issued before the suspension are revoked.
    change_status(&app, &user.id, pb::StatusAction::Activate).await;
    let fresh = sign_in(&app, "suspended@example.com").await;
    for at in [At::Accounts, At::Billing, At::Gateway] {
        call(&app, at, &fresh, &user.id)
            .await
            .unwrap_or_else(|s| panic!("{at:?} refuses the new token: {s:?}"));
        assert_eq!(
            call(&app, at, &token, &user.id).await.unwrap_err().code(),
            Code::Unauthenticated,
            "the old token stays revoked at {at:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn deactivated_destroyed_and_erased_users_tokens_are_refused_within_a_second() {
    let app = spawn().await;
    let mut users = Vec::new();
    for name in ["deactivated", "destroyed", "erased"] {
        let email = format!("{name}@example.com");
        let user = user_with_password(&app, &email).await;
        let token = sign_in(&app, &email).await;
        call(&app, At::Accounts, &token, &user.id)
            .await
            .expect("works before");
        users.push((name, user, token));
    }
    let bystander = user_with_password(&app, "bystander@example.com").await;
    let bystander_token = sign_in(&app, "bystander@example.com").await;

    for (name, user, token) in &users {
        match *name {
            "deactivated" => change_status(&app, &user.id, pb::StatusAction::Deactivate).await,
            "destroyed" => change_status(&app, &user.id, pb::StatusAction::Destroy).await,
            _ => {
                let results = app
                    .admin()
                    .batch_delete_personal_data(pb::BatchDeletePersonalDataRequest {
                        request_id: uuid::Uuid::now_v7().to_string(),
                        user_ids: vec![user.id.clone()],
                    })
                    .await
                    .expect("erase")
                    .into_inner()
                    .results;
                assert!(results.iter().all(|r| r.reason.is_empty()), "{results:?}");
            }
        }
        let acknowledged = Instant::now();
        for at in [At::Accounts, At::Billing, At::Gateway] {
            let latency = refused_within_a_second(&app, at, token, &user.id, acknowledged).await;
            eprintln!("revocation latency: {name} -> {at:?}: {latency:?}");
        }
    }
    for at in [At::Accounts, At::Billing, At::Gateway] {
        call(&app, at, &bystander_token, &bystander.id)
            .await
            .unwrap_or_else(|s| panic!("another user's token is refused at {at:?}: {s:?}"));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stopped_impersonation_sessions_token_is_refused_directly_at_the_services() {
    let app = spawn().await;
    let user = user_with_password(&app, "customer@example.com").await;
    let admin_token = app.token(ADMIN_ID, &[Role::UserAdmin]);
    let mut admin = app.auth(Some(admin_token.clone()));
    let started = admin
        .start_impersonation(pb::StartImpersonationRequest {
            user_id: user.id.clone(),
            reason: "ticket 7".into(),
            ttl: None,
        })
        .await
        .expect("start")
        .into_inner();
    let session = started.session.expect("session");
    let token = started.tokens.expect("tokens").access_token;
    for at in [At::Accounts, At::Billing, At::Gateway] {
        call(&app, at, &token, &user.id)
            .await
            .unwrap_or_else(|s| panic!("{at:?} accepts the session before: {s:?}"));
    }

    admin
        .stop_impersonation(pb::StopImpersonationRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("stop");
    let acknowledged = Instant::now();
    for at in [At::Accounts, At::Billing, At::Gateway] {
        let latency = refused_within_a_second(&app, at, &token, &user.id, acknowledged).await;
        eprintln!("revocation latency: impersonation stopped -> {at:?}: {latency:?}");
    }
    let refused = call(&app, At::Accounts, &token, &user.id)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "TOKEN_REVOKED");

    // The user's own sign-in is not affected.
    let own = sign_in(&app, "customer@example.com").await;
    call(&app, At::Accounts, &own, &user.id)
        .await
        .expect("the user's own token still works");
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_api_tokens_access_is_refused_through_the_gateway_within_a_second() {
    let app = spawn().await;
    let user = user_with_password(&app, "script@example.com").await;
    let access = sign_in(&app, "script@example.com").await;
    let mut auth = app.gw_auth(Some(access));
    let created = auth
        .create_api_token(pb::CreateApiTokenRequest {
            user_id: user.id.clone(),
            name: "ci".into(),
            ttl: None,
        })
        .await
        .expect("create api token")
        .into_inner();
    let token_id = created.token.expect("token").id;
    let secret = created.secret;
    // The secret as the bearer: the gateway exchanges and caches (60 s).
    call(&app, At::Gateway, &secret, &user.id)
        .await
        .expect("the API token works through the gateway");
    // An access token minted from it, used directly at the services.
    let minted = app
        .auth(None)
        .exchange_api_token(pb::ExchangeApiTokenRequest {
            secret: secret.clone(),
        })
        .await
        .expect("exchange")
        .into_inner()
        .tokens
        .expect("tokens")
        .access_token;
    call(&app, At::Billing, &minted, &user.id)
        .await
        .expect("the minted token works at billing");

    auth.delete_api_token(pb::DeleteApiTokenRequest {
        token_id: token_id.clone(),
    })
    .await
    .expect("delete");
    let acknowledged = Instant::now();
    let latency = refused_within_a_second(&app, At::Gateway, &secret, &user.id, acknowledged).await;
    eprintln!("revocation latency: API token deleted -> Gateway: {latency:?}");
    for at in [At::Accounts, At::Billing, At::Gateway] {
        let latency = refused_within_a_second(&app, at, &minted, &user.id, acknowledged).await;
        eprintln!("revocation latency: API token deleted, minted token -> {at:?}: {latency:?}");
    }
    // The user's session is not affected.
    let own = sign_in(&app, "script@example.com").await;
    call(&app, At::Gateway, &own, &user.id)
        .await
        .expect("the user's own token still works");
    app.stop().await;
}
