//! Status, group, email, roles and notes commands; batch semantics.

use std::collections::HashMap;

use steward_integration_tests::{TestApp, audit_events, outbox, reason, violated_fields};
use steward_proto::{accounts as pb, audit::AuditEvent, common, notifications::Notification};
use tonic::Code;

async fn change_status(
    app: &TestApp,
    ids: &[&str],
    action: pb::StatusAction,
) -> Vec<pb::UserResult> {
    app.admin()
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            user_ids: ids.iter().map(|s| s.to_string()).collect(),
            action: action as i32,
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .results
}

/// Puts a fresh user into `status` through the API.
async fn user_in(app: &TestApp, email: &str, status: pb::UserStatus) -> pb::User {
    let user = app.create_user(email).await;
    let action = match status {
        pb::UserStatus::Active => return user,
        pb::UserStatus::Inactive => pb::StatusAction::Deactivate,
        pb::UserStatus::Suspended => pb::StatusAction::Suspend,
        pb::UserStatus::Destroyed => pb::StatusAction::Destroy,
        pb::UserStatus::Deleted => {
            app.admin()
                .batch_delete_personal_data(pb::BatchDeletePersonalDataRequest {
                    request_id: uuid::Uuid::now_v7().to_string(),
                    user_ids: vec![user.id.clone()],
                })
                .await
                .unwrap();
            return user;
        }
        pb::UserStatus::Unspecified => unreachable!(),
    };
    let results = change_status(app, &[&user.id], action).await;
    assert_eq!(results[0].result, common::Result::Success as i32);
    user
}

#[tokio::test]
async fn every_status_transition_is_allowed_or_refused_with_a_reason() {
    use pb::{StatusAction as A, UserStatus as S};
    let app = TestApp::spawn().await;
    let statuses = [
        S::Active,
        S::Inactive,
        S::Suspended,
        S::Destroyed,
        S::Deleted,
    ];
    let actions = [A::Activate, A::Suspend, A::Deactivate, A::Destroy];
    let expected = |from: S, action: A| -> Result<S, &'static str> {
        let target = match action {
            A::Activate => S::Active,
            A::Suspend => S::Suspended,
            A::Deactivate => S::Inactive,
            A::Destroy => S::Destroyed,
            A::Unspecified => unreachable!(),
        };
        match from {
            _ if from == target => Err("STATUS_UNCHANGED"),
            S::Deleted => Err("USER_DELETED"),
            S::Destroyed => Err("USER_DESTROYED"),
            _ => Ok(target),
        }
    };
    let mut n = 0;
    for from in statuses {
        for action in actions {
            n += 1;
            let user = user_in(&app, &format!("t{n}@status.io"), from).await;
            let result = change_status(&app, &[&user.id], action).await.remove(0);
            match expected(from, action) {
                Ok(target) => {
                    assert_eq!(
                        result.result,
                        common::Result::Success as i32,
                        "{from:?} {action:?}"
                    );
                    assert_eq!(result.user.unwrap().status, target as i32);
                }
                Err(why) => {
                    assert_eq!(
                        result.result,
                        common::Result::Failure as i32,
                        "{from:?} {action:?}"
                    );
                    assert_eq!(result.reason, why, "{from:?} {action:?}");
                    assert!(!result.message.is_empty());
                    assert_eq!(result.user.unwrap().status, from as i32, "unchanged");
                }
            }
        }
    }
}

#[tokio::test]
async fn batch_reports_each_user_and_audits_each_outcome() {
    let app = TestApp::spawn().await;
    let a = app.create_user("a@batch.io").await;
    let b = user_in(&app, "b@batch.io", pb::UserStatus::Suspended).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let results = change_status(&app, &[&a.id, &b.id, &missing], pb::StatusAction::Suspend).await;
    let by_id: HashMap<_, _> = results.iter().map(|r| (r.user_id.clone(), r)).collect();
    assert_eq!(by_id[&a.id].result, common::Result::Success as i32);
    assert_eq!(by_id[&b.id].reason, "STATUS_UNCHANGED");
    assert_eq!(by_id[&missing].reason, "USER_NOT_FOUND");

    let events: Vec<AuditEvent> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "user.status.suspended")
        .collect();
    // b's own suspension earlier, then one event per user of this batch.
    assert_eq!(events.len(), 4);
    let last: Vec<_> = events[1..]
        .iter()
        .map(|e| (e.subject_user_id.clone(), e.result))
        .collect();
    assert!(last.contains(&(a.id.clone(), common::Result::Success as i32)));
    assert!(last.contains(&(b.id.clone(), common::Result::Failure as i32)));
    assert!(last.contains(&(missing.clone(), common::Result::Failure as i32)));
    assert_eq!(
        events[1].comments.get("reason").map(String::as_str),
        Some("test")
    );
}

#[tokio::test]
async fn batch_input_is_validated() {
    let app = TestApp::spawn().await;
    let a = app.create_user("v@batch.io").await;
    let err = app
        .admin()
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: String::new(),
            user_ids: vec![a.id.clone(), a.id.clone(), "x".into()],
            action: pb::StatusAction::Unspecified as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        ["request_id", "user_ids[2]", "user_ids", "action"]
    );
    let err = app
        .admin()
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: "r".into(),
            user_ids: vec![],
            action: pb::StatusAction::Suspend as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["user_ids"]);
}

#[tokio::test]
async fn retried_batch_applies_once_even_concurrently() {
    let app = TestApp::spawn().await;
    let a = app.create_user("retry@batch.io").await;
    let request = pb::BatchChangeStatusRequest {
        request_id: "batch-retry-1".into(),
        user_ids: vec![a.id.clone()],
        action: pb::StatusAction::Suspend as i32,
        reason: String::new(),
    };
    let mut c1 = app.admin();
    let mut c2 = app.admin();
    let (r1, r2) = tokio::join!(
        c1.batch_change_status(request.clone()),
        c2.batch_change_status(request.clone())
    );
    let (r1, r2) = (r1.unwrap().into_inner(), r2.unwrap().into_inner());
    // Both callers see the first execution's result: success, not
    // STATUS_UNCHANGED for the second.
    assert_eq!(r1, r2);
    assert_eq!(r1.results[0].result, common::Result::Success as i32);
    let r3 = c1.batch_change_status(request).await.unwrap().into_inner();
    assert_eq!(r3, r1);
    let suspensions = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "user.status.suspended")
        .count();
    assert_eq!(suspensions, 1);
}

#[tokio::test]
async fn destroy_sets_destroy_time() {
    let app = TestApp::spawn().await;
    let user = user_in(&app, "gone@status.io", pb::UserStatus::Destroyed).await;
    let now = app
        .admin()
        .get_user(pb::GetUserRequest { user_id: user.id })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(now.status, pb::UserStatus::Destroyed as i32);
    assert!(now.destroy_time.is_some());
}

#[tokio::test]
async fn change_group_moves_users_and_queues_notifications() {
    let app = TestApp::spawn().await;
    let a = app.create_user("g1@group.io").await;
    let b = app.create_user("g2@group.io").await;
    let results = app
        .admin()
        .batch_change_group(pb::BatchChangeGroupRequest {
            request_id: "grp-1".into(),
            user_ids: vec![a.id.clone(), b.id.clone()],
            group: "billing".into(),
            notify: true,
            mail_template_id: "welcome-billing".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.result == common::Result::Success as i32
                && r.user.as_ref().unwrap().group == "billing")
    );

    let mails: Vec<Notification> = outbox(&app, "notifications").await;
    assert_eq!(mails.len(), 2);
    let mut recipients: Vec<_> = mails.iter().map(|m| m.recipients.join(",")).collect();
    recipients.sort();
    assert_eq!(recipients, ["g1@group.io", "g2@group.io"]);
    assert!(mails.iter().all(|m| m.template_id == "welcome-billing"
        && m.params["old_group"] == "trial"
        && m.params["new_group"] == "billing"));

    // Again: already there.
    let again = app
        .admin()
        .batch_change_group(pb::BatchChangeGroupRequest {
            request_id: "grp-2".into(),
            user_ids: vec![a.id.clone()],
            group: "billing".into(),
            notify: false,
            mail_template_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(again[0].reason, "GROUP_UNCHANGED");
}

#[tokio::test]
async fn change_group_validates_group_and_template() {
    let app = TestApp::spawn().await;
    let a = app.create_user("gv@group.io").await;
    let err = app
        .admin()
        .batch_change_group(pb::BatchChangeGroupRequest {
            request_id: "g".into(),
            user_ids: vec![a.id.clone()],
            group: "nonexistent".into(),
            notify: false,
            mail_template_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["group"]);
    let err = app
        .admin()
        .batch_change_group(pb::BatchChangeGroupRequest {
            request_id: "g".into(),
            user_ids: vec![a.id.clone()],
            group: "beta".into(),
            notify: true,
            mail_template_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["mail_template_id"]);
    let user = app
        .admin()
        .get_user(pb::GetUserRequest { user_id: a.id })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.group, "trial");
}

#[tokio::test]
async fn change_email_is_unique_and_notifies_both_addresses() {
    let app = TestApp::spawn().await;
    let a = app.create_user("old@mail.io").await;
    app.create_user("taken@mail.io").await;
    let mut admin = app.admin();

    let err = admin
        .change_email(pb::ChangeEmailRequest {
            request_id: String::new(),
            user_id: a.id.clone(),
            new_email: "Taken@mail.io".into(),
            notify: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(reason(&err), "EMAIL_TAKEN");

    let err = admin
        .change_email(pb::ChangeEmailRequest {
            request_id: String::new(),
            user_id: a.id.clone(),
            new_email: "bad address".into(),
            notify: true,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["new_email"]);
    assert!(
        outbox::<Notification>(&app, "notifications")
            .await
            .is_empty()
    );

    let user = admin
        .change_email(pb::ChangeEmailRequest {
            request_id: String::new(),
            user_id: a.id.clone(),
            new_email: "New@Mail.io".into(),
            notify: true,
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "new@mail.io");
    assert_eq!(user.id, a.id);
    let mails: Vec<Notification> = outbox(&app, "notifications").await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipients, ["old@mail.io", "new@mail.io"]);
    assert_eq!(mails[0].template_id, "user.email.changed");

    // The old address is free again.
    app.create_user("old@mail.io").await;
}

#[tokio::test]
async fn set_roles_and_notes() {
    let app = TestApp::spawn().await;
    let a = app.create_user("roles@x.io").await;
    let mut admin = app.admin();
    let user = admin
        .set_roles(pb::SetRolesRequest {
            user_id: a.id.clone(),
            roles: vec![pb::Role::UserAdmin as i32, pb::Role::User as i32],
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let mut roles = user.roles.clone();
    roles.sort();
    assert_eq!(roles, [pb::Role::User as i32, pb::Role::UserAdmin as i32]);
    let err = admin
        .set_roles(pb::SetRolesRequest {
            user_id: a.id.clone(),
            roles: vec![],
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["roles"]);

    let user = admin
        .set_notes(pb::SetNotesRequest {
            user_id: a.id.clone(),
            notes: "Company: ACME".into(),
            etag: user.etag,
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.notes, "Company: ACME");
    let err = admin
        .set_notes(pb::SetNotesRequest {
            user_id: a.id.clone(),
            notes: "n".repeat(5000),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["notes"]);
    let actions: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .map(|e| (e.action, e.result))
        .collect();
    assert!(actions.contains(&("user.roles.updated".into(), common::Result::Success as i32)));
    assert!(actions.contains(&("user.notes.updated".into(), common::Result::Success as i32)));
    assert!(actions.contains(&("user.notes.updated".into(), common::Result::Failure as i32)));
}

#[tokio::test]
async fn groups_are_listed_and_created() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    let groups = admin
        .list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups;
    let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["beta", "billing", "post", "trial"]);
    assert!(groups.iter().all(|g| g.built_in));

    let created = admin
        .create_group(pb::CreateGroupRequest {
            name: "enterprise".into(),
            display_name: "Enterprise".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert!(!created.built_in);
    let err = admin
        .create_group(pb::CreateGroupRequest {
            name: "enterprise".into(),
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = admin
        .create_group(pb::CreateGroupRequest {
            name: "Bad Name".into(),
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["name"]);

    // Pages of two.
    let first = admin
        .list_groups(pb::ListGroupsRequest {
            page: Some(common::PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let second = admin
        .list_groups(pb::ListGroupsRequest {
            page: Some(common::PageRequest {
                page_size: 2,
                page_token: first.page.unwrap().next_page_token,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = first
        .groups
        .iter()
        .chain(&second.groups)
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["beta", "billing", "enterprise", "post"]);

    // The new group can be used.
    admin
        .create_user(pb::CreateUserRequest {
            email: "e@ent.io".into(),
            group: "enterprise".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}
