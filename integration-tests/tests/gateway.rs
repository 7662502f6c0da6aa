//! The whole path through the gateway: sign-in, policy at the edge, SELF,
//! lockout, TOTP, refresh rotation, API tokens, impersonation, refusal
//! audit, rate limits, metrics.

use std::time::Duration;

use steward_accounts::domain::totp;
use steward_gateway::GatewayConfig;
use steward_integration_tests::{ADMIN_ID, Options, TestApp, outbox, reason, violated_fields};
use steward_kit::auth::{Role, TokenSigner};
use steward_proto::{accounts as pb, audit as apb, notifications::Notification};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

fn gateway_config() -> GatewayConfig {
    let mut config = GatewayConfig::default();
    // Tests sign in often from one address, and must see a stopped
    // session or a deleted API token at once.
    config.rate_limits.sign_in_burst = 1000;
    config.session_check_ttl = Duration::ZERO;
    config.api_token_cache_ttl = Duration::ZERO;
    config
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        with_audit: true,
        gateway: Some(gateway_config()),
        identity: Some(steward_accounts::IdentityConfig {
            lockout_threshold: 3,
            ..Default::default()
        }),
        ..Options::default()
    })
    .await
}

/// A user with a password (and `roles`), created by an administrator.
async fn user_with_password(app: &TestApp, email: &str, roles: &[pb::Role]) -> pb::User {
    app.admin()
        .create_user(pb::CreateUserRequest {
            email: email.into(),
            password: PASSWORD.into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("user")
}

async fn sign_in(
    app: &TestApp,
    email: &str,
    password: &str,
    code: &str,
) -> Result<pb::TokenPair, tonic::Status> {
    app.gw_auth(None)
        .sign_in(pb::SignInRequest {
            email: email.into(),
            password: password.into(),
            totp_code: code.into(),
            device: "integration test".into(),
        })
        .await
        .map(|r| r.into_inner().tokens.expect("tokens"))
}

/// Audit events stored by the audit service matching `action`, waiting for
/// relays and the gateway's shipper.
async fn stored_events(app: &TestApp, action: &str, subject: &str) -> Vec<apb::AuditEvent> {
    at_least(app, action, subject, 1).await
}

/// Waits until the audit service holds `min` events of `action` on
/// `subject`'s log (up to 10 s), and returns them.
async fn at_least(app: &TestApp, action: &str, subject: &str, min: usize) -> Vec<apb::AuditEvent> {
    let mut events = Vec::new();
    for _ in 0..100 {
        events = app
            .audit()
            .list_events(apb::ListEventsRequest {
                filter: Some(apb::EventFilter {
                    actions: vec![action.into()],
                    subject_user_id: subject.into(),
                    ..Default::default()
                }),
                page: None,
            })
            .await
            .expect("list events")
            .into_inner()
            .events
            .into_iter()
            .filter_map(|stored| stored.event)
            .collect::<Vec<_>>();
        if events.len() >= min {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    events
}

#[tokio::test]
async fn signed_in_admin_lists_users_and_a_plain_user_is_refused_and_audited() {
    let app = spawn().await;
    user_with_password(&app, "root@example.com", &[pb::Role::UserAdmin]).await;
    let plain = user_with_password(&app, "plain@example.com", &[]).await;

    let admin = sign_in(&app, "root@example.com", PASSWORD, "")
        .await
        .unwrap();
    assert!(!admin.refresh_token.is_empty());
    let response = app
        .gw_accounts(Some(admin.access_token.clone()))
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("admin lists users through the gateway");
    assert!(
        response.metadata().get("x-request-id").is_some(),
        "the gateway returns the request id"
    );
    assert_eq!(response.into_inner().users.len(), 2);

    let user = sign_in(&app, "plain@example.com", PASSWORD, "")
        .await
        .unwrap();
    let refused = app
        .gw_accounts(Some(user.access_token.clone()))
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "ROLE_REQUIRED");

    let audited = stored_events(&app, "gateway.request.refused", &plain.id).await;
    assert_eq!(audited.len(), 1, "the refusal is in the audit log");
    let event = &audited[0];
    assert_eq!(event.result, steward_proto::common::Result::Failure as i32);
    assert_eq!(
        event.comments.get("method").map(String::as_str),
        Some("/steward.accounts.v1.AccountsService/ListUsers")
    );
    assert_eq!(event.client_ip, "127.0.0.1");
    let signed_in = stored_events(&app, "user.signed_in", &plain.id).await;
    assert!(
        signed_in[0].user_agent.starts_with("tonic/") && !signed_in[0].user_agent.contains(' '),
        "the end client's user agent reaches the service, not the gateway's ({})",
        signed_in[0].user_agent
    );

    // No token at all: UNAUTHENTICATED, also counted.
    let anonymous = app
        .gw_accounts(None)
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // Sign-in is audited with the device.
    let signed_in = stored_events(&app, "user.signed_in", &plain.id).await;
    assert_eq!(
        signed_in[0].comments.get("device").map(String::as_str),
        Some("integration test")
    );
    app.stop().await;
}

#[tokio::test]
async fn self_access_to_own_user_only() {
    let app = spawn().await;
    let me = user_with_password(&app, "me@example.com", &[]).await;
    let other = app.create_user("other@example.com").await;
    let token = sign_in(&app, "me@example.com", PASSWORD, "")
        .await
        .unwrap()
        .access_token;
    let mut client = app.gw_accounts(Some(token));
    let own = client
        .get_user(pb::GetUserRequest {
            user_id: me.id.clone(),
        })
        .await
        .expect("own user");
    assert_eq!(own.into_inner().user.unwrap().email, "me@example.com");
    let foreign = client
        .get_user(pb::GetUserRequest {
            user_id: other.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    assert_eq!(reason(&foreign), "NOT_YOUR_RESOURCE");
    app.stop().await;
}

#[tokio::test]
async fn lockout_after_failures_and_unblock() {
    let app = spawn().await;
    let user = user_with_password(&app, "victim@example.com", &[]).await;
    for _ in 0..3 {
        let wrong = sign_in(&app, "victim@example.com", "not the password", "")
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
    }
    let locked = sign_in(&app, "victim@example.com", PASSWORD, "")
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::FailedPrecondition);
    assert_eq!(reason(&locked), "ACCOUNT_LOCKED");
    let locked_out = stored_events(&app, "user.account.locked_out", &user.id).await;
    assert_eq!(locked_out.len(), 1, "lockout is audited");
    let failures = at_least(&app, "user.signed_in", &user.id, 4).await;
    assert_eq!(
        failures
            .iter()
            .filter(|e| e.result == steward_proto::common::Result::Failure as i32)
            .count(),
        4,
        "three wrong passwords and one attempt while locked"
    );

    // A plain user may not unblock; an administrator may.
    let user_token = app.token(&user.id, &[Role::User]);
    let denied = app
        .gw_auth(Some(user_token))
        .unblock_user(pb::UnblockUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.gw_auth(Some(app.token(ADMIN_ID, &[Role::UserAdmin])))
        .unblock_user(pb::UnblockUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("unblock");
    sign_in(&app, "victim@example.com", PASSWORD, "")
        .await
        .expect("signs in after unblock");
    let unblocked = stored_events(&app, "user.account.unblocked", &user.id).await;
    assert_eq!(unblocked[0].actor_user_id, ADMIN_ID);
    // Unknown accounts answer like wrong passwords.
    let unknown = sign_in(&app, "nobody@example.com", PASSWORD, "")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn totp_enrollment_sign_in_and_admin_disable() {
    let app = spawn().await;
    let user = user_with_password(&app, "otp@example.com", &[]).await;
    let token = sign_in(&app, "otp@example.com", PASSWORD, "")
        .await
        .unwrap()
        .access_token;
    let mut auth = app.gw_auth(Some(token));
    let enrolled = auth
        .enroll_totp(pb::EnrollTotpRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("enroll")
        .into_inner();
    assert!(enrolled.otpauth_uri.starts_with("otpauth://totp/Steward:"));
    let bad = auth
        .confirm_totp(pb::ConfirmTotpRequest {
            user_id: user.id.clone(),
            code: "000000".into(),
        })
        .await;
    // One in a million the random secret's code is 000000.
    if let Err(bad) = bad {
        assert_eq!(violated_fields(&bad), ["code"]);
    }
    let now = chrono::Utc::now().timestamp();
    let code = totp::current_code(&enrolled.secret, now).unwrap();
    auth.confirm_totp(pb::ConfirmTotpRequest {
        user_id: user.id.clone(),
        code,
    })
    .await
    .expect("confirm with the current code");
    let user_now = app
        .admin()
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        user_now.two_factor_state,
        pb::TwoFactorState::Enabled as i32
    );

    let missing = sign_in(&app, "otp@example.com", PASSWORD, "")
        .await
        .unwrap_err();
    assert_eq!(reason(&missing), "TOTP_REQUIRED");
    let wrong = sign_in(&app, "otp@example.com", PASSWORD, "12345x")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    // The next step's code (one step of drift is accepted); the one used
    // to confirm cannot be replayed.
    let next = totp::current_code(&enrolled.secret, chrono::Utc::now().timestamp() + 30).unwrap();
    sign_in(&app, "otp@example.com", PASSWORD, &next)
        .await
        .expect("password + code");
    let replayed = sign_in(&app, "otp@example.com", PASSWORD, &next)
        .await
        .unwrap_err();
    assert_eq!(replayed.code(), Code::Unauthenticated, "a code works once");

    app.gw_auth(Some(app.token(ADMIN_ID, &[Role::UserAdmin])))
        .disable_two_factor(pb::DisableTwoFactorRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("admin disables 2fa");
    sign_in(&app, "otp@example.com", PASSWORD, "")
        .await
        .expect("password alone again");
    app.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn().await;
    let user = user_with_password(&app, "rot@example.com", &[]).await;
    let first = sign_in(&app, "rot@example.com", PASSWORD, "")
        .await
        .unwrap();
    let mut auth = app.gw_auth(None);
    let second = auth
        .refresh(pb::RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    app.gw_accounts(Some(second.access_token.clone()))
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("the new access token works");

    let reused = auth
        .refresh(pb::RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    assert_eq!(reason(&reused), "REFRESH_TOKEN_REUSED");
    let revoked = auth
        .refresh(pb::RefreshRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        revoked.code(),
        Code::Unauthenticated,
        "the whole family is revoked"
    );
    assert_eq!(
        stored_events(&app, "user.session.refresh_token_reused", &user.id)
            .await
            .len(),
        1
    );

    // Sign-out ends a session.
    let session = sign_in(&app, "rot@example.com", PASSWORD, "")
        .await
        .unwrap();
    auth.sign_out(pb::SignOutRequest {
        refresh_token: session.refresh_token.clone(),
    })
    .await
    .expect("sign out");
    let after = auth
        .refresh(pb::RefreshRequest {
            refresh_token: session.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);
    assert_eq!(
        stored_events(&app, "user.signed_out", &user.id).await.len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn api_token_lifecycle_and_actions_carry_the_token_id() {
    let app = spawn().await;
    let user = user_with_password(&app, "api@example.com", &[]).await;
    let access = sign_in(&app, "api@example.com", PASSWORD, "")
        .await
        .unwrap()
        .access_token;
    let mut auth = app.gw_auth(Some(access));
    let bad = auth
        .create_api_token(pb::CreateApiTokenRequest {
            user_id: user.id.clone(),
            name: " ".into(),
            ttl: Some(prost_types::Duration {
                seconds: 400 * 24 * 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["name", "ttl"]);
    let created = auth
        .create_api_token(pb::CreateApiTokenRequest {
            user_id: user.id.clone(),
            name: "ci".into(),
            ttl: None,
        })
        .await
        .expect("create api token")
        .into_inner();
    let token = created.token.unwrap();
    assert!(created.secret.starts_with("stw_"));
    let listed = auth
        .list_api_tokens(pb::ListApiTokensRequest {
            user_id: user.id.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, token.id);

    // The secret itself is the bearer at the gateway.
    app.gw_accounts(Some(created.secret.clone()))
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: user.id.clone(),
                phone: Some("+15550001111".into()),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phone".into()],
            }),
        })
        .await
        .expect("update with the api token");
    let update = stored_events(&app, "user.profile.updated", &user.id).await;
    assert_eq!(
        update[0].token_id, token.id,
        "the action carries the token id"
    );
    let created_event = stored_events(&app, "api_token.created", &user.id).await;
    assert_eq!(created_event[0].token_id, token.id);

    let refreshed = auth
        .refresh_api_token(pb::RefreshApiTokenRequest {
            token_id: token.id.clone(),
        })
        .await
        .expect("refresh api token")
        .into_inner();
    assert_ne!(refreshed.secret, created.secret);
    let old = app
        .gw_accounts(Some(created.secret.clone()))
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated, "the old secret is dead");
    app.gw_accounts(Some(refreshed.secret.clone()))
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("the new secret works");

    auth.delete_api_token(pb::DeleteApiTokenRequest {
        token_id: token.id.clone(),
    })
    .await
    .expect("delete");
    let gone = app
        .gw_accounts(Some(refreshed.secret))
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn impersonation_is_recorded_limited_and_stoppable() {
    let app = spawn().await;
    let user = user_with_password(&app, "customer@example.com", &[]).await;
    let other_admin = user_with_password(&app, "admin2@example.com", &[pb::Role::UserAdmin]).await;
    let admin_token = app.token(ADMIN_ID, &[Role::UserAdmin]);
    let mut admin = app.gw_auth(Some(admin_token.clone()));

    let onto_admin = admin
        .start_impersonation(pb::StartImpersonationRequest {
            user_id: other_admin.id.clone(),
            reason: "curious".into(),
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(onto_admin.code(), Code::PermissionDenied);
    assert_eq!(reason(&onto_admin), "CANNOT_IMPERSONATE_PRIVILEGED");
    let no_reason = admin
        .start_impersonation(pb::StartImpersonationRequest {
            user_id: user.id.clone(),
            reason: String::new(),
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_reason), ["reason"]);

    let started = admin
        .start_impersonation(pb::StartImpersonationRequest {
            user_id: user.id.clone(),
            reason: "ticket 42: dashboard broken".into(),
            ttl: None,
        })
        .await
        .expect("start")
        .into_inner();
    let session = started.session.unwrap();
    let as_user = started.tokens.unwrap().access_token;
    let notices: Vec<Notification> = outbox(&app, "notifications").await;
    assert!(
        notices
            .iter()
            .any(|n| n.template_id == "impersonation.started"
                && n.recipients == ["customer@example.com"]),
        "the user is told"
    );

    // An action under impersonation records admin and session: the user
    // accepts a share (changing the profile is refused to impersonators).
    let owner = app.create_user("owner@impersonation.io").await;
    let share = app
        .as_user(&owner.id)
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: user.email.clone(),
        })
        .await
        .expect("shared")
        .into_inner()
        .collaboration
        .unwrap();
    app.gw_accounts(Some(as_user.clone()))
        .accept_collaboration(pb::AcceptCollaborationRequest {
            collaboration_id: share.id.clone(),
        })
        .await
        .expect("act as the user");
    let accepted = stored_events(&app, "collaboration.accepted", &owner.id)
        .await
        .pop()
        .expect("audited");
    assert_eq!(accepted.actor_user_id, user.id);
    assert_eq!(accepted.impersonator_user_id, ADMIN_ID);
    assert_eq!(accepted.impersonation_session_id, session.id);
    let profile = app
        .gw_accounts(Some(as_user.clone()))
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: user.id.clone(),
                phone: Some("+15550002222".into()),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phone".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&profile), "FORBIDDEN_WHILE_IMPERSONATING");

    // Forbidden while impersonating: minting credentials for the user.
    let forbidden = app
        .gw_auth(Some(as_user.clone()))
        .create_api_token(pb::CreateApiTokenRequest {
            user_id: user.id.clone(),
            name: "sneaky".into(),
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(forbidden.code(), Code::PermissionDenied);
    assert_eq!(reason(&forbidden), "FORBIDDEN_WHILE_IMPERSONATING");
    let refused = stored_events(&app, "gateway.request.refused", &user.id).await;
    assert_eq!(refused[0].impersonator_user_id, ADMIN_ID);

    let listed = admin
        .list_impersonation_sessions(pb::ListImpersonationSessionsRequest {
            active_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].active);

    let stopped = admin
        .stop_impersonation(pb::StopImpersonationRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner()
        .session
        .unwrap();
    assert!(!stopped.active);
    let after = app
        .gw_accounts(Some(as_user))
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);
    // The revocation list usually arrives first (TOKEN_REVOKED); the
    // gateway's own session check says the same thing otherwise.
    assert!(
        ["TOKEN_REVOKED", "IMPERSONATION_ENDED"].contains(&reason(&after).as_str()),
        "{after:?}"
    );
    for action in ["impersonation.started", "impersonation.stopped"] {
        let event = stored_events(&app, action, &user.id)
            .await
            .into_iter()
            .find(|e| e.result == steward_proto::common::Result::Success as i32)
            .unwrap_or_else(|| panic!("{action} audited"));
        assert_eq!(event.subject_user_id, user.id);
        assert_eq!(event.impersonation_session_id, session.id, "{event:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn jwks_publishes_current_and_retired_keys_and_old_tokens_still_work() {
    let old = TokenSigner::generate();
    let app = TestApp::spawn_with(Options {
        gateway: Some(gateway_config()),
        retired_keys: vec![old.clone()],
        ..Options::default()
    })
    .await;
    let jwks = app
        .gw_auth(None)
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("jwks is public")
        .into_inner()
        .keys;
    let kids: Vec<String> = jwks.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(jwks.len(), 2);
    assert!(kids.contains(&steward_kit::auth::token::key_id(&old.verifying_key())));
    assert!(kids.contains(&steward_kit::auth::token::key_id(
        &app.signer.verifying_key()
    )));
    // A token signed before the rotation is still accepted.
    let old_token = old.sign(&steward_kit::auth::Claims::new(
        ADMIN_ID,
        &[Role::UserAdmin],
        Duration::from_secs(60),
    ));
    app.gw_accounts(Some(old_token))
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("retired key still verifies");
    // A key nobody published is not.
    let stranger = TokenSigner::generate().sign(&steward_kit::auth::Claims::new(
        ADMIN_ID,
        &[Role::UserAdmin],
        Duration::from_secs(60),
    ));
    let refused = app
        .gw_accounts(Some(stranger))
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address_and_metrics_are_served() {
    let mut config = gateway_config();
    config.rate_limits.sign_in_burst = 2;
    let app = TestApp::spawn_with(Options {
        gateway: Some(config),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        let wrong = sign_in(&app, "x@example.com", "whatever", "")
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
    }
    let limited = sign_in(&app, "x@example.com", "whatever", "")
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(reason(&limited), "RATE_LIMITED");

    // Other methods are not under the sign-in limit.
    app.gw_auth(None)
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("jwks");

    let text = http_get(app.gateway_endpoint.as_deref().unwrap(), "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(
        "steward_gateway_calls_total{method=\"/steward.accounts.v1.AuthService/SignIn\",code=\"Unauthenticated\"} 2"
    ), "{text}");
    assert!(text.contains(
        "steward_gateway_calls_total{method=\"/steward.accounts.v1.AuthService/SignIn\",code=\"ResourceExhausted\"} 1"
    ));
    assert!(text.contains(
        "steward_gateway_calls_total{method=\"/steward.accounts.v1.AuthService/GetJwks\",code=\"Ok\"} 1"
    ));
    assert!(text.contains("steward_gateway_refused_total{reason=\"RATE_LIMITED\"} 1"));
    app.stop().await;
}

/// A plain HTTP/1.1 GET, as a Prometheus scraper does.
async fn http_get(endpoint: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
