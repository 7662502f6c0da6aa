//! Users through the public gRPC API: create, get, update, list, paging.

use steward_integration_tests::{TestApp, audit_events, reason, violated_fields};
use steward_proto::{
    accounts::{self as pb},
    audit::Category,
    common::{self, PageRequest},
};
use tonic::Code;

#[tokio::test]
async fn create_and_get_user() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    let created = admin
        .create_user(pb::CreateUserRequest {
            email: "  Ann@Example.COM ".into(),
            group: "beta".into(),
            phone: Some("+1 555 123 4567".into()),
            reseller: "acme-reseller".into(),
            ext_billing_id: "ext-42".into(),
            notes: "vip".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(created.email, "ann@example.com");
    assert_eq!(created.group, "beta");
    assert_eq!(created.status, pb::UserStatus::Active as i32);
    assert_eq!(created.roles, [pb::Role::User as i32]);
    assert_eq!(created.phone.as_deref(), Some("+15551234567"));
    assert_eq!(created.reseller, "acme-reseller");
    assert_eq!(created.ext_billing_id, "ext-42");
    assert_eq!(
        created.two_factor_state,
        pb::TwoFactorState::Disabled as i32
    );
    assert!(!created.upgrade_in_progress);
    assert!(created.signup_time.is_some());
    assert!(
        uuid::Uuid::parse_str(&created.id)
            .unwrap()
            .get_version_num()
            == 7
    );

    let fetched = admin
        .get_user(pb::GetUserRequest {
            user_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(fetched, created);

    // The creation is audited in the same transaction, as ADMIN.
    let events = audit_events(&app).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.action, "user.created");
    assert_eq!(event.category, Category::Admin as i32);
    assert_eq!(event.subject_user_id, created.id);
    assert_eq!(event.modified_user_id, created.id);
    assert_eq!(event.actor_user_id, steward_integration_tests::ADMIN_ID);
    assert_eq!(event.result, common::Result::Success as i32);
    assert_eq!(event.client_ip, "127.0.0.1");
    assert!(!event.request_id.is_empty());
    assert_eq!(event.source, "accounts");
}

#[tokio::test]
async fn create_user_refuses_bad_input_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    let err = admin
        .create_user(pb::CreateUserRequest {
            email: "not-an-email".into(),
            phone: Some("12".into()),
            notes: "x".repeat(4097),
            roles: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        ["email", "phone", "notes", "roles[0]"]
    );

    let err = admin
        .create_user(pb::CreateUserRequest {
            email: "bob@example.com".into(),
            group: "no-such-group".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["group"]);

    let listed = admin
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.users.is_empty(), "nothing was created");

    // Refusals are audited as FAILURE, nothing else is written.
    let events = audit_events(&app).await;
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.result == common::Result::Failure as i32
                && e.action == "user.created"
                && !e.error_message.is_empty())
    );
}

#[tokio::test]
async fn email_is_unique_among_live_users() {
    let app = TestApp::spawn().await;
    app.create_user("dup@example.com").await;
    let err = app
        .admin()
        .create_user(pb::CreateUserRequest {
            email: "DUP@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(reason(&err), "EMAIL_TAKEN");
}

#[tokio::test]
async fn create_user_retry_with_same_request_id_applies_once() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    let request = pb::CreateUserRequest {
        request_id: "create-1".into(),
        email: "once@example.com".into(),
        ..Default::default()
    };
    let first = admin
        .create_user(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = admin
        .create_user(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    let err = admin
        .create_user(pb::CreateUserRequest {
            email: "other@example.com".into(),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["request_id"]);
    let created: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.result == common::Result::Success as i32)
        .collect();
    assert_eq!(created.len(), 1);
}

#[tokio::test]
async fn get_unknown_user_is_not_found_and_bad_id_is_invalid() {
    let app = TestApp::spawn().await;
    let err = app
        .admin()
        .get_user(pb::GetUserRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .admin()
        .get_user(pb::GetUserRequest {
            user_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["user_id"]);
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test]
async fn update_user_applies_mask_and_refuses_immutable_fields() {
    let app = TestApp::spawn().await;
    let user = app.create_user("upd@example.com").await;
    let mut admin = app.admin();
    let updated = admin
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: user.id.clone(),
                phone: Some("+4915112345678".into()),
                notes: "ignored: not in mask".into(),
                upgrade_in_progress: true,
                ..Default::default()
            }),
            update_mask: mask(&["phone", "upgrade_in_progress"]),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.phone.as_deref(), Some("+4915112345678"));
    assert!(updated.upgrade_in_progress);
    assert_eq!(updated.notes, "");
    assert_ne!(updated.etag, user.etag);

    for (path, expected) in [
        ("reseller", "user.reseller"),
        ("ext_billing_id", "user.ext_billing_id"),
        ("signup_time", "user.signup_time"),
        ("id", "user.id"),
        ("email", "user.email"),
        ("status", "user.status"),
        ("group", "user.group"),
        ("bogus", "user.bogus"),
    ] {
        let err = admin
            .update_user(pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: user.id.clone(),
                    reseller: "new".into(),
                    ..Default::default()
                }),
                update_mask: mask(&[path]),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}");
        assert_eq!(violated_fields(&err), [expected]);
    }

    // An administrator may only disable two-factor authentication.
    let err = admin
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: user.id.clone(),
                two_factor_state: pb::TwoFactorState::Enabled as i32,
                ..Default::default()
            }),
            update_mask: mask(&["two_factor_state"]),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["user.two_factor_state"]);

    let unchanged = admin
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(unchanged, updated);
}

#[tokio::test]
async fn stale_etag_loses_no_update() {
    let app = TestApp::spawn().await;
    let user = app.create_user("race@example.com").await;
    let mut first = app.admin();
    let mut second = app.admin();
    // Both admins read the same version, both try to write.
    first
        .set_notes(pb::SetNotesRequest {
            user_id: user.id.clone(),
            notes: "first".into(),
            etag: user.etag.clone(),
        })
        .await
        .unwrap();
    let err = second
        .set_notes(pb::SetNotesRequest {
            user_id: user.id.clone(),
            notes: "second".into(),
            etag: user.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    let now = first
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(now.notes, "first");
}

#[tokio::test]
async fn concurrent_updates_without_etag_both_apply() {
    let app = TestApp::spawn().await;
    let user = app.create_user("both@example.com").await;
    let mut a = app.admin();
    let mut b = app.admin();
    let id = user.id.clone();
    let (ra, rb) = tokio::join!(
        a.update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: id.clone(),
                phone: Some("+15550000001".into()),
                ..Default::default()
            }),
            update_mask: mask(&["phone"]),
        }),
        b.set_notes(pb::SetNotesRequest {
            user_id: id.clone(),
            notes: "kept".into(),
            etag: String::new(),
        })
    );
    ra.unwrap();
    rb.unwrap();
    let now = a
        .get_user(pb::GetUserRequest { user_id: id })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(now.phone.as_deref(), Some("+15550000001"));
    assert_eq!(now.notes, "kept");
    assert_eq!(now.etag, "v3");
}

async fn list(app: &TestApp, request: pb::ListUsersRequest) -> pb::ListUsersResponse {
    app.admin().list_users(request).await.unwrap().into_inner()
}

fn emails(response: &pb::ListUsersResponse) -> Vec<String> {
    response.users.iter().map(|u| u.email.clone()).collect()
}

#[tokio::test]
async fn list_filters_by_group_status_and_query() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    for (email, group) in [
        ("alice@corp.io", "billing"),
        ("bob@corp.io", "trial"),
        ("carol@home.net", "billing"),
        ("dave@Corp.io", "beta"),
    ] {
        admin
            .create_user(pb::CreateUserRequest {
                email: email.into(),
                group: group.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let carol = list(
        &app,
        pb::ListUsersRequest {
            query: "carol".into(),
            ..Default::default()
        },
    )
    .await
    .users
    .remove(0);
    admin
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: "s1".into(),
            user_ids: vec![carol.id.clone()],
            action: pb::StatusAction::Suspend as i32,
            reason: String::new(),
        })
        .await
        .unwrap();

    let billing = list(
        &app,
        pb::ListUsersRequest {
            group: "billing".into(),
            order_by: pb::UserOrderBy::EmailAsc as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(emails(&billing), ["alice@corp.io", "carol@home.net"]);

    let suspended = list(
        &app,
        pb::ListUsersRequest {
            status: pb::UserStatus::Suspended as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(emails(&suspended), ["carol@home.net"]);

    let corp = list(
        &app,
        pb::ListUsersRequest {
            query: "CORP.IO".into(),
            order_by: pb::UserOrderBy::EmailDesc as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        emails(&corp),
        ["dave@corp.io", "bob@corp.io", "alice@corp.io"]
    );

    let by_id = list(
        &app,
        pb::ListUsersRequest {
            query: carol.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(emails(&by_id), ["carol@home.net"]);

    // LIKE wildcards in the query are literal.
    let none = list(
        &app,
        pb::ListUsersRequest {
            query: "%".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.users.is_empty());

    let billing_active = list(
        &app,
        pb::ListUsersRequest {
            group: "billing".into(),
            status: pb::UserStatus::Active as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(emails(&billing_active), ["alice@corp.io"]);
}

#[tokio::test]
async fn list_pages_with_keyset_tokens() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(app.create_user(&format!("u{i}@page.io")).await.email);
    }
    for order in [
        pb::UserOrderBy::SignupTimeAsc,
        pb::UserOrderBy::SignupTimeDesc,
        pb::UserOrderBy::EmailAsc,
        pb::UserOrderBy::EmailDesc,
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = list(
                &app,
                pb::ListUsersRequest {
                    page: Some(PageRequest {
                        page_size: 3,
                        page_token: token.clone(),
                    }),
                    order_by: order as i32,
                    ..Default::default()
                },
            )
            .await;
            pages += 1;
            seen.extend(emails(&page));
            token = page.page.unwrap().next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let mut expected = created.clone();
        if matches!(
            order,
            pb::UserOrderBy::SignupTimeDesc | pb::UserOrderBy::EmailDesc
        ) {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
        assert_eq!(pages, 3);
    }
}

#[tokio::test]
async fn page_tokens_are_bound_to_their_query() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.create_user(&format!("t{i}@tok.io")).await;
    }
    let first = list(
        &app,
        pb::ListUsersRequest {
            page: Some(PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            group: "trial".into(),
            ..Default::default()
        },
    )
    .await;
    let token = first.page.unwrap().next_page_token;
    assert!(!token.is_empty());

    let mut admin = app.admin();
    let other_query = admin
        .list_users(pb::ListUsersRequest {
            page: Some(PageRequest {
                page_size: 1,
                page_token: token.clone(),
            }),
            group: "billing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other_query.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&other_query), ["page.page_token"]);

    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let err = admin
        .list_users(pb::ListUsersRequest {
            page: Some(PageRequest {
                page_size: 1,
                page_token: tampered,
            }),
            group: "trial".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page.page_token"]);

    let err = admin
        .list_users(pb::ListUsersRequest {
            page: Some(PageRequest {
                page_size: -1,
                page_token: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page.page_size"]);
}
