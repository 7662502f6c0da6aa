//! The transactional outbox: rows exist iff the change committed, and the
//! relay delivers them to a real gRPC receiver, retrying on failure.

use std::time::Duration;

use steward_integration_tests::{Options, TestApp, audit_events, receiver::AuditReceiver};
use steward_proto::{accounts as pb, common};

/// Accounts' rows for the audit service (other destinations, such as
/// quotas' membership sync, have rows of their own).
async fn outbox_rows(app: &TestApp) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE destination = 'audit'")
        .get_result::<Count>(&mut app.db.accounts().await)
        .await
        .unwrap()
        .n
}

#[tokio::test]
async fn committed_change_leaves_exactly_one_row_rolled_back_leaves_none() {
    let app = TestApp::spawn().await;
    let user = app.create_user("one@outbox.io").await;
    assert_eq!(outbox_rows(&app).await, 1);

    // A change that fails mid-transaction (the email is taken: detected
    // after the row lock, before the update) rolls back: no success row;
    // only the FAILURE record written after the rollback.
    app.create_user("taken@outbox.io").await;
    let before = outbox_rows(&app).await;
    let err = app
        .admin()
        .change_email(pb::ChangeEmailRequest {
            request_id: String::new(),
            user_id: user.id.clone(),
            new_email: "taken@outbox.io".into(),
            notify: true,
        })
        .await;
    assert!(err.is_err());
    assert_eq!(outbox_rows(&app).await, before + 1);
    let events = audit_events(&app).await;
    let email_events: Vec<_> = events
        .iter()
        .filter(|e| e.action == "user.email.changed")
        .collect();
    assert_eq!(email_events.len(), 1);
    assert_eq!(email_events[0].result, common::Result::Failure as i32);
    assert!(
        steward_integration_tests::outbox::<steward_proto::notifications::Notification>(
            &app,
            "notifications"
        )
        .await
        .is_empty(),
        "no notification for a change that did not happen"
    );

    // A change whose transaction fails at commit, after its outbox row was
    // written: a deferred trigger refuses it. Nothing of it survives.
    steward_integration_tests::exec(
        &app,
        "CREATE FUNCTION refuse_notes() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.notes = 'fail-at-commit' THEN RAISE EXCEPTION 'secret_internal_detail'; END IF;
           RETURN NEW;
         END $$;
         CREATE CONSTRAINT TRIGGER refuse_notes AFTER UPDATE ON users
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_notes();",
    )
    .await;
    let before = outbox_rows(&app).await;
    let err = app
        .admin()
        .set_notes(pb::SetNotesRequest {
            user_id: user.id.clone(),
            notes: "fail-at-commit".into(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(!err.message().contains("secret_internal_detail"));
    assert_eq!(
        outbox_rows(&app).await,
        before,
        "rolled back: no outbox row"
    );
    let still = app
        .admin()
        .get_user(pb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(still.notes, "");

    // A committed change: exactly one more row.
    let before = outbox_rows(&app).await;
    app.admin()
        .set_notes(pb::SetNotesRequest {
            user_id: user.id,
            notes: "hello".into(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(outbox_rows(&app).await, before + 1);
}

async fn wait_until(mut done: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn relay_delivers_to_the_audit_ingest_service_and_retries() {
    let (receiver, endpoint) = AuditReceiver::start().await;
    // The first two deliveries are refused: rows must stay and be retried.
    receiver.fail_next(2);
    let app = TestApp::spawn_with(Options {
        audit_endpoint: Some(endpoint),
        ..Options::default()
    })
    .await;
    let user = app.create_user("relay@outbox.io").await;
    app.admin()
        .batch_change_status(pb::BatchChangeStatusRequest {
            request_id: "r1".into(),
            user_ids: vec![user.id.clone()],
            action: pb::StatusAction::Suspend as i32,
            reason: String::new(),
        })
        .await
        .unwrap();

    assert!(
        wait_until(async || receiver.events().len() == 2).await,
        "events delivered: {:?}",
        receiver.events()
    );
    assert!(receiver.calls() >= 3, "failed deliveries were retried");
    let actions: Vec<_> = receiver.events().iter().map(|e| e.action.clone()).collect();
    assert_eq!(actions, ["user.created", "user.status.suspended"]);
    assert!(wait_until(async || outbox_rows(&app).await == 0).await);
}

#[tokio::test]
async fn without_a_destination_rows_wait() {
    let app = TestApp::spawn().await;
    app.create_user("wait@outbox.io").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbox_rows(&app).await, 1);
}

#[tokio::test]
async fn a_rejected_row_is_parked_and_does_not_block_the_others() {
    let (receiver, endpoint) = AuditReceiver::start().await;
    let app = TestApp::spawn_with(Options {
        audit_endpoint: Some(endpoint),
        ..Options::default()
    })
    .await;
    // A row whose payload is not an AuditEvent, inserted without a NOTIFY:
    // the relay meets it in the same batch as the next good row.
    steward_integration_tests::exec(
        &app,
        "INSERT INTO outbox (destination, event_id, payload)
         VALUES ('audit', gen_random_uuid(), '\\xffffffffff')",
    )
    .await;
    app.create_user("after@outbox.io").await;
    assert!(wait_until(async || receiver.events().len() == 1).await);
    assert_eq!(receiver.events()[0].action, "user.created");
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Parked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        parked: bool,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        last_error: Option<String>,
    }
    let mut parked = Vec::new();
    for _ in 0..50 {
        parked =
            diesel::sql_query("SELECT parked_at IS NOT NULL AS parked, last_error FROM outbox WHERE destination = 'audit'")
                .load::<Parked>(&mut app.db.accounts().await)
                .await
                .unwrap();
        if parked.len() == 1 && parked[0].parked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(parked.len(), 1, "only the bad row is left");
    // Parked at once for its content (issue 10), not after N attempts.
    assert!(parked[0].parked, "parked");
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("does not decode")
    );
}
