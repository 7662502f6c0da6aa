//! Idempotency keys expire after their retention.

use std::time::Duration;

use steward_integration_tests::{TestApp, exec};
use steward_proto::accounts as pb;

#[tokio::test]
async fn expired_keys_are_purged_and_fresh_ones_kept() {
    let app = TestApp::spawn().await;
    for (key, email) in [("old", "old@idem.io"), ("new", "new@idem.io")] {
        app.admin()
            .create_user(pb::CreateUserRequest {
                request_id: key.into(),
                email: email.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    exec(
        &app,
        "UPDATE idempotency_keys SET created_at = now() - interval '8 days' WHERE key = 'old'",
    )
    .await;
    let mut conn = app.db.accounts().await;
    let purged = steward_kit::idempotency::purge(&mut conn, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(purged, 1);

    // The fresh key still replays; the expired one executes again (and is
    // refused because the user exists).
    let replay = app
        .admin()
        .create_user(pb::CreateUserRequest {
            request_id: "new".into(),
            email: "new@idem.io".into(),
            ..Default::default()
        })
        .await;
    assert!(replay.is_ok());
    let again = app
        .admin()
        .create_user(pb::CreateUserRequest {
            request_id: "old".into(),
            email: "old@idem.io".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
}
