//! Personal-data erasure in both modes, settings, and the delayed job.

use std::time::Duration;

use steward_integration_tests::{Options, TestApp, audit_events, exec, reason, violated_fields};
use steward_proto::{accounts as pb, audit::Category, common};
use tonic::Code;

async fn set_settings(app: &TestApp, settings: pb::Settings, paths: &[&str]) -> pb::Settings {
    app.admin()
        .update_settings(pb::UpdateSettingsRequest {
            settings: Some(settings),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap()
}

async fn erase(app: &TestApp, id: &str) -> pb::UserResult {
    app.admin()
        .batch_delete_personal_data(pb::BatchDeletePersonalDataRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            user_ids: vec![id.to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0)
}

async fn register(app: &TestApp, email: &str) -> Result<pb::User, tonic::Status> {
    app.admin()
        .create_user(pb::CreateUserRequest {
            email: email.into(),
            phone: Some("+15551112222".into()),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test]
async fn anonymization_erases_and_the_person_may_register_again() {
    let app = TestApp::spawn().await;
    let defaults = app
        .admin()
        .get_settings(pb::GetSettingsRequest {})
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(defaults.erasure_mode, pb::ErasureMode::Anonymization as i32);
    assert!(!defaults.auto_erase_enabled);
    assert_eq!(defaults.auto_erase_delay_days, 0);

    let user = register(&app, "anon@erase.io").await.unwrap();
    let result = erase(&app, &user.id).await;
    assert_eq!(result.result, common::Result::Success as i32);
    let erased = result.user.unwrap();
    assert_eq!(erased.status, pb::UserStatus::Deleted as i32);
    assert!(is_md5_hex(&erased.email), "{}", erased.email);
    assert!(is_md5_hex(erased.phone.as_deref().unwrap()));
    assert!(erased.destroy_time.is_some());

    // Again: refused, nothing changes.
    let again = erase(&app, &user.id).await;
    assert_eq!(again.reason, "ALREADY_DELETED");
    assert_eq!(again.user.unwrap().email, erased.email);

    let back = register(&app, "anon@erase.io").await.unwrap();
    assert_ne!(back.id, user.id);
}

#[tokio::test]
async fn pseudoanonymization_blocks_the_same_email() {
    let app = TestApp::spawn().await;
    let settings = set_settings(
        &app,
        pb::Settings {
            erasure_mode: pb::ErasureMode::Pseudoanonymization as i32,
            ..Default::default()
        },
        &["erasure_mode"],
    )
    .await;
    assert_eq!(
        settings.erasure_mode,
        pb::ErasureMode::Pseudoanonymization as i32
    );

    let user = register(&app, "pseudo@erase.io").await.unwrap();
    let erased = erase(&app, &user.id).await.user.unwrap();
    assert!(is_md5_hex(&erased.email));

    let err = register(&app, "Pseudo@Erase.io").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "EMAIL_BLOCKED");
    // Other people are unaffected, and changing to the blocked email fails.
    let other = register(&app, "someone@erase.io").await.unwrap();
    let err = app
        .admin()
        .change_email(pb::ChangeEmailRequest {
            request_id: String::new(),
            user_id: other.id,
            new_email: "pseudo@erase.io".into(),
            notify: false,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "EMAIL_BLOCKED");

    // An erasure made under ANONYMIZATION never blocks, whatever the mode now.
    set_settings(
        &app,
        pb::Settings {
            erasure_mode: pb::ErasureMode::Anonymization as i32,
            ..Default::default()
        },
        &["erasure_mode"],
    )
    .await;
    let user = register(&app, "free@erase.io").await.unwrap();
    erase(&app, &user.id).await;
    set_settings(
        &app,
        pb::Settings {
            erasure_mode: pb::ErasureMode::Pseudoanonymization as i32,
            ..Default::default()
        },
        &["erasure_mode"],
    )
    .await;
    register(&app, "free@erase.io").await.unwrap();
}

#[tokio::test]
async fn erasure_revokes_collaborations_and_is_audited() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@erase.io").await.unwrap();
    app.create_user("friend@erase.io").await;
    app.admin()
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: "friend@erase.io".into(),
        })
        .await
        .unwrap();
    erase(&app, &owner.id).await;
    let shares = app
        .admin()
        .list_collaborations(pb::ListCollaborationsRequest {
            user_id: owner.id.clone(),
            direction: pb::CollaborationDirection::SharedByUser as i32,
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .collaborations;
    assert_eq!(shares[0].status, pb::CollaborationStatus::Revoked as i32);
    let event = audit_events(&app)
        .await
        .into_iter()
        .find(|e| e.action == "user.personal_data.deleted")
        .unwrap();
    assert_eq!(event.subject_user_id, owner.id);
    assert_eq!(event.category, Category::Admin as i32);
    assert_eq!(event.comments["previous_status"], "ACTIVE");
}

#[tokio::test]
async fn settings_are_validated() {
    let app = TestApp::spawn().await;
    let err = app
        .admin()
        .update_settings(pb::UpdateSettingsRequest {
            settings: Some(pb::Settings {
                erasure_mode: pb::ErasureMode::Unspecified as i32,
                auto_erase_enabled: true,
                auto_erase_delay_days: -1,
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "erasure_mode".into(),
                    "auto_erase_delay_days".into(),
                    "nope".into(),
                ],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "settings.erasure_mode",
            "settings.auto_erase_delay_days",
            "update_mask.nope"
        ]
    );
    let unchanged = app
        .admin()
        .get_settings(pb::GetSettingsRequest {})
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(!unchanged.auto_erase_enabled);
}

async fn wait_for_status(app: &TestApp, id: &str, status: pb::UserStatus) -> bool {
    for _ in 0..100 {
        let user = app
            .admin()
            .get_user(pb::GetUserRequest {
                user_id: id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        if user.status == status as i32 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn the_job_erases_destroyed_accounts_after_the_delay() {
    let app = TestApp::spawn_with(Options {
        erasure_interval: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    let soon = register(&app, "soon@job.io").await.unwrap();
    let later = register(&app, "later@job.io").await.unwrap();
    let live = register(&app, "live@job.io").await.unwrap();
    app.admin()
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: "destroy".into(),
            user_ids: vec![soon.id.clone(), later.id.clone()],
            action: pb::StatusAction::Destroy as i32,
            reason: String::new(),
        })
        .await
        .unwrap();

    // Disabled: nothing happens.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(wait_for_status(&app, &soon.id, pb::UserStatus::Destroyed).await);

    // Enabled with a 30-day delay: only accounts destroyed 30+ days ago go.
    exec(
        &app,
        &format!(
            "UPDATE users SET destroyed_at = now() - interval '31 days' WHERE id = '{}'",
            soon.id
        ),
    )
    .await;
    set_settings(
        &app,
        pb::Settings {
            auto_erase_enabled: true,
            auto_erase_delay_days: 30,
            ..Default::default()
        },
        &["auto_erase_enabled", "auto_erase_delay_days"],
    )
    .await;
    assert!(wait_for_status(&app, &soon.id, pb::UserStatus::Deleted).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(wait_for_status(&app, &later.id, pb::UserStatus::Destroyed).await);

    // Delay 0: at once.
    set_settings(
        &app,
        pb::Settings {
            auto_erase_delay_days: 0,
            ..Default::default()
        },
        &["auto_erase_delay_days"],
    )
    .await;
    assert!(wait_for_status(&app, &later.id, pb::UserStatus::Deleted).await);
    assert!(wait_for_status(&app, &live.id, pb::UserStatus::Active).await);

    let job_events: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "user.personal_data.deleted")
        .collect();
    assert_eq!(job_events.len(), 2);
    assert!(
        job_events
            .iter()
            .all(|e| e.category == Category::System as i32
                && e.actor_user_id.is_empty()
                && e.comments["trigger"] == "automatic erasure")
    );
}
