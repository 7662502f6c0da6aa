//! Sharing accounts: create, accept, revoke, list in both directions.

use steward_integration_tests::{TestApp, reason, violated_fields};
use steward_proto::accounts as pb;
use tonic::Code;

async fn list(
    app: &TestApp,
    user: &str,
    direction: pb::CollaborationDirection,
) -> Vec<pb::Collaboration> {
    app.admin()
        .list_collaborations(pb::ListCollaborationsRequest {
            user_id: user.into(),
            direction: direction as i32,
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .collaborations
}

#[tokio::test]
async fn owner_shares_collaborator_accepts_and_either_revokes() {
    let app = TestApp::spawn().await;
    let owner = app.create_user("owner@collab.io").await;
    let friend = app.create_user("friend@collab.io").await;
    let stranger = app.create_user("stranger@collab.io").await;

    // The owner shares their own account (SELF).
    let share = app
        .as_user(&owner.id)
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: "Friend@collab.io".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .collaboration
        .unwrap();
    assert_eq!(share.status, pb::CollaborationStatus::Pending as i32);
    assert_eq!(share.collaborator_user_id, friend.id);
    assert_eq!(share.owner_email, "owner@collab.io");

    // Nobody may share someone else's account without a role.
    let err = app
        .as_user(&stranger.id)
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: "stranger@collab.io".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Twice: refused.
    let err = app
        .admin()
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: "friend@collab.io".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "COLLABORATION_EXISTS");
    let err = app
        .admin()
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: "owner@collab.io".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["collaborator_email"]);

    // Only the invited user accepts.
    let err = app
        .as_user(&stranger.id)
        .accept_collaboration(pb::AcceptCollaborationRequest {
            collaboration_id: share.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let accepted = app
        .as_user(&friend.id)
        .accept_collaboration(pb::AcceptCollaborationRequest {
            collaboration_id: share.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .collaboration
        .unwrap();
    assert_eq!(accepted.status, pb::CollaborationStatus::Active as i32);

    let by = list(&app, &owner.id, pb::CollaborationDirection::SharedByUser).await;
    assert_eq!(by.len(), 1);
    assert_eq!(by[0].collaborator_email, "friend@collab.io");
    assert!(
        list(&app, &owner.id, pb::CollaborationDirection::SharedWithUser)
            .await
            .is_empty()
    );
    let with = list(&app, &friend.id, pb::CollaborationDirection::SharedWithUser).await;
    assert_eq!(with.len(), 1);
    assert_eq!(with[0].owner_user_id, owner.id);

    // The collaborator may list their own view (SELF).
    let own = app
        .as_user(&friend.id)
        .list_collaborations(pb::ListCollaborationsRequest {
            user_id: friend.id.clone(),
            direction: pb::CollaborationDirection::SharedWithUser as i32,
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .collaborations;
    assert_eq!(own.len(), 1);

    let err = app
        .as_user(&stranger.id)
        .revoke_collaboration(pb::RevokeCollaborationRequest {
            collaboration_id: share.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let revoked = app
        .as_user(&friend.id)
        .revoke_collaboration(pb::RevokeCollaborationRequest {
            collaboration_id: share.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .collaboration
        .unwrap();
    assert_eq!(revoked.status, pb::CollaborationStatus::Revoked as i32);
    let err = app
        .admin()
        .revoke_collaboration(pb::RevokeCollaborationRequest {
            collaboration_id: share.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "COLLABORATION_REVOKED");

    // Once revoked, sharing again is possible.
    app.admin()
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id.clone(),
            collaborator_email: "friend@collab.io".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        list(&app, &owner.id, pb::CollaborationDirection::SharedByUser)
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn unknown_collaborator_is_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.create_user("o@collab.io").await;
    let err = app
        .admin()
        .create_collaboration(pb::CreateCollaborationRequest {
            owner_user_id: owner.id,
            collaborator_email: "nobody@collab.io".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .admin()
        .accept_collaboration(pb::AcceptCollaborationRequest {
            collaboration_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
