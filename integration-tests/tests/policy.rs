//! Authentication and method policy enforced by every server.

use std::time::Duration;

use steward_integration_tests::{TestApp, reason};
use steward_kit::auth::{Claims, Role, TokenSigner};
use steward_proto::accounts as pb;
use tonic::Code;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let err = app
        .client(None)
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut expired = Claims::new("admin", &[Role::UserAdmin], Duration::from_secs(60));
    expired.exp -= 3600;
    let err = app
        .client(Some(app.signer.sign(&expired)))
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"));

    let foreign = TokenSigner::generate().sign(&Claims::new(
        "admin",
        &[Role::UserAdmin],
        Duration::from_secs(60),
    ));
    let err = app
        .client(Some(foreign))
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let err = app
        .client(Some("garbage".into()))
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn wrong_role_is_permission_denied_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.create_user("plain@policy.io").await;
    let mut plain = app.as_user(&user.id);
    let err = plain
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    let err = plain
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: "x".into(),
            user_ids: vec![user.id.clone()],
            action: pb::StatusAction::Destroy as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A platform service may not do what only USER_ADMIN may.
    let service = app.client(Some(app.token("service:billing", &[Role::PlatformService])));
    let err = service
        .clone()
        .set_roles(pb::SetRolesRequest {
            user_id: user.id.clone(),
            roles: vec![pb::Role::UserAdmin as i32],
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // ...but may read.
    service
        .clone()
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap();

    let still = app
        .admin()
        .get_user(pb::GetUserRequest { user_id: user.id })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(still.status, pb::UserStatus::Active as i32);
    assert_eq!(still.roles, [pb::Role::User as i32]);
}

#[tokio::test]
async fn self_access_is_limited_to_the_callers_own_user() {
    let app = TestApp::spawn().await;
    let me = app.create_user("me@policy.io").await;
    let other = app.create_user("other@policy.io").await;
    let mut client = app.as_user(&me.id);

    let mine = client
        .get_user(pb::GetUserRequest {
            user_id: me.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(mine.email, "me@policy.io");

    let err = client
        .get_user(pb::GetUserRequest {
            user_id: other.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "NOT_YOUR_RESOURCE");

    // SELF may change its own phone, but not admin-only fields, and not
    // anyone else's.
    let mask = |p: &str| {
        Some(prost_types::FieldMask {
            paths: vec![p.into()],
        })
    };
    client
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: me.id.clone(),
                phone: Some("+15557654321".into()),
                ..Default::default()
            }),
            update_mask: mask("phone"),
        })
        .await
        .unwrap();
    let err = client
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: me.id.clone(),
                notes: "self-praise".into(),
                ..Default::default()
            }),
            update_mask: mask("notes"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: other.id.clone(),
                phone: Some("+15550000000".into()),
                ..Default::default()
            }),
            update_mask: mask("phone"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .list_collaborations(pb::ListCollaborationsRequest {
            user_id: other.id.clone(),
            direction: 0,
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The user's own phone change is audited as PUBLIC.
    let event = steward_integration_tests::audit_events(&app)
        .await
        .into_iter()
        .find(|e| e.action == "user.profile.updated" && e.result == 1)
        .unwrap();
    assert_eq!(
        event.category,
        steward_proto::audit::Category::Public as i32
    );
    assert_eq!(event.actor_user_id, me.id);
    assert!(event.modified_user_id.is_empty());
}

#[tokio::test]
async fn impersonated_actions_record_the_impersonator() {
    let app = TestApp::spawn().await;
    let me = app.create_user("imp@policy.io").await;
    let mut claims = Claims::new(me.id.clone(), &[Role::User], Duration::from_secs(60));
    claims.act = Some(steward_kit::auth::token::Actor {
        sub: "admin-7".into(),
    });
    claims.sid = Some("session-9".into());
    // Accepting a share is open to impersonators (changing the profile is
    // not: see the policy of UpdateUser).
    let owner = app.create_user("owner@policy.io").await;
    let share = app
        .as_user(&owner.id)
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: me.email.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .collaboration
        .unwrap();
    app.client(Some(app.signer.sign(&claims)))
        .accept_collaboration(pb::AcceptCollaborationRequest {
            collaboration_id: share.id,
        })
        .await
        .unwrap();
    let event = steward_integration_tests::audit_events(&app)
        .await
        .into_iter()
        .find(|e| e.action == "collaboration.accepted")
        .unwrap();
    assert_eq!(event.impersonator_user_id, "admin-7");
    assert_eq!(event.impersonation_session_id, "session-9");
    assert_eq!(event.actor_user_id, me.id);
}

#[tokio::test]
async fn health_needs_no_token() {
    let app = TestApp::spawn().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "steward.accounts.v1.AccountsService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_service_without_a_token() {
    use futures_util::StreamExt;
    use tonic_reflection::pb::{v1, v1alpha};
    let app = TestApp::spawn().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection response");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "steward.accounts.v1.AccountsService")
    );

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "steward.accounts.v1.AccountsService".into(),
            ),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.next().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

#[tokio::test]
async fn only_an_admin_creates_users_with_power() {
    let app = TestApp::spawn().await;
    let mut service = app.client(Some(app.token("service:signup", &[Role::PlatformService])));
    let err = service
        .create_user(pb::CreateUserRequest {
            email: "sneaky@policy.io".into(),
            roles: vec![pb::Role::UserAdmin as i32],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ROLE_GRANT_REQUIRES_ADMIN");
    // A plain user is fine for a platform service.
    service
        .create_user(pb::CreateUserRequest {
            email: "plain@policy.io".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.admin()
        .create_user(pb::CreateUserRequest {
            email: "second-admin@policy.io".into(),
            roles: vec![pb::Role::UserAdmin as i32],
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_caller() {
    let app = TestApp::spawn().await;
    let request = |email: &str| pb::CreateUserRequest {
        request_id: "same-key".into(),
        email: email.into(),
        ..Default::default()
    };
    let mut first = app.client(Some(app.token("service:one", &[Role::PlatformService])));
    let mut second = app.client(Some(app.token("service:two", &[Role::PlatformService])));
    let a = first
        .create_user(request("one@idem.io"))
        .await
        .unwrap()
        .into_inner();
    // The same key from another caller is a different request, not a replay
    // of someone else's response.
    let b = second
        .create_user(request("two@idem.io"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.user.unwrap().id, b.user.unwrap().id);
}
