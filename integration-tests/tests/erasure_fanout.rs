//! Erasing a user's personal data reaches every service that keeps free
//! text about them (issue 10): billing's ledger notes through accounts'
//! outbox, and the audit trail's free-text comments.

use std::time::Duration;

use steward_integration_tests::{Options, TestApp};
use steward_proto::{accounts as pb, audit as apb, billing as bpb, common};

const NOTES: &str = "called ann@example.com at +15551234567";

#[tokio::test]
async fn erasure_blanks_billing_notes_and_audit_comments() {
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        billing: Some(Default::default()),
        ..Options::default()
    })
    .await;
    let user = app.create_user("ann@example.com").await;
    app.billing()
        .refill(bpb::RefillRequest {
            request_id: "fanout-1".into(),
            user_id: user.id.clone(),
            amount: Some(common::Decimal { value: "10".into() }),
            balance_type: bpb::BalanceType::Main as i32,
            notes: NOTES.into(),
        })
        .await
        .expect("refilled");
    let notes = async || {
        app.billing()
            .list_funding_history(bpb::ListFundingHistoryRequest {
                user_id: user.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .map(|e| e.notes)
            .collect::<Vec<_>>()
    };
    assert_eq!(notes().await, [NOTES]);
    let results = app
        .admin()
        .batch_delete_personal_data(pb::BatchDeletePersonalDataRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            user_ids: vec![user.id.clone()],
        })
        .await
        .expect("erased")
        .into_inner()
        .results;
    assert_eq!(results[0].result, common::Result::Success as i32);

    let mut blanked = false;
    for _ in 0..100 {
        if notes().await.iter().all(String::is_empty) {
            blanked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        blanked,
        "billing's notes still hold the user's contact data"
    );

    // The refill's audit event keeps no trace of the notes either.
    let mut clean = false;
    for _ in 0..100 {
        let events = app
            .audit()
            .list_events(apb::ListEventsRequest {
                filter: Some(apb::EventFilter {
                    subject_user_id: user.id.clone(),
                    actions: vec!["billing.balance.refilled".into()],
                    ..Default::default()
                }),
                page: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let text = format!("{events:?}");
        if !events.is_empty() && !text.contains("ann@example.com") && !text.contains("5551234567") {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(clean, "the audit event still quotes the notes");
}
