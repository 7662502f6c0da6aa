//! Activity history, most active first, through the ranked trailing window:
//! the same rows, in the same order and pages, as aggregating the daily
//! rollup, when the window is current, after it shifts by a day, after it
//! is rebuilt, and for the ranges and filters it does not answer; and the
//! rollup, which follows the chain after ingest commits, counts every
//! acknowledged event exactly once while ingest and readers race it.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use steward_integration_tests::{Options, TestApp};
use steward_proto::{
    audit::{self as pb, Category},
    common::{self, PageRequest},
};

fn event(subject: &str, days_ago: i64) -> pb::AuditEvent {
    let at = Utc::now() - Duration::days(days_ago);
    pb::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        product: "common".into(),
        action: ["user.profile.updated", "user.signed_in"][(days_ago % 2) as usize].into(),
        category: Category::Public as i32,
        actor_user_id: subject.into(),
        subject_user_id: subject.into(),
        client_ip: "203.0.113.7".into(),
        result: common::Result::Success as i32,
        source: "test".into(),
        ..Default::default()
    }
}

/// (subject, days ago) of every event ingested so far.
type Sent = Vec<(String, i64)>;

async fn ingest(app: &TestApp, sent: &mut Sent, events: Vec<(String, i64)>) {
    app.ingest()
        .ingest_events(pb::IngestEventsRequest {
            events: events.iter().map(|(u, d)| event(u, *d)).collect(),
        })
        .await
        .unwrap();
    sent.extend(events);
}

/// Every page of the most-active-first history of [end - span, end].
async fn history(app: &TestApp, span: i64, end_ago: i64, users: &[&str]) -> Vec<(String, i64)> {
    let today = Utc::now().date_naive();
    let end = today - Duration::days(end_ago);
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit()
            .get_activity_history(pb::GetActivityHistoryRequest {
                start_date: (end - Duration::days(span)).to_string(),
                end_date: end.to_string(),
                user_ids: users.iter().map(|u| u.to_string()).collect(),
                page: Some(PageRequest {
                    page_size: 7,
                    page_token: token.clone(),
                }),
                order_by: pb::ActivityOrder::ActionsDesc as i32,
            })
            .await
            .unwrap()
            .into_inner();
        rows.extend(
            page.activities
                .into_iter()
                .map(|a| (a.user_id, a.actions_count)),
        );
        token = page.page.unwrap_or_default().next_page_token;
        if token.is_empty() {
            return rows;
        }
        assert!(rows.len() < 10_000, "paging does not end");
    }
}

/// What aggregating the sent events gives: most actions first, then user id.
fn expected(sent: &Sent, span: i64, end_ago: i64, users: &[&str]) -> Vec<(String, i64)> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (user, days_ago) in sent {
        if (end_ago..=end_ago + span).contains(days_ago)
            && (users.is_empty() || users.contains(&user.as_str()))
        {
            *counts.entry(user.clone()).or_default() += 1;
        }
    }
    let mut rows: Vec<(String, i64)> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

#[derive(QueryableByName)]
struct Span {
    #[diesel(sql_type = diesel::sql_types::Date)]
    first_day: NaiveDate,
    #[diesel(sql_type = diesel::sql_types::Date)]
    last_day: NaiveDate,
}

async fn span(app: &TestApp) -> Option<(NaiveDate, NaiveDate)> {
    use diesel::OptionalExtension;
    let mut conn = app.db.audit().await;
    diesel::sql_query("SELECT first_day, last_day FROM activity_window_span")
        .get_result::<Span>(&mut conn)
        .await
        .optional()
        .unwrap()
        .map(|s| (s.first_day, s.last_day))
}

async fn check_all(app: &TestApp, sent: &Sent) {
    // The window (30 days before today through today), ranges it does not
    // answer, and a user filter on the window's own range.
    for (span, end_ago, users) in [
        (30, 0, &[][..]),
        (29, 0, &[][..]),
        (30, 1, &[][..]),
        (60, 0, &[][..]),
        (30, 0, &["u03", "u10", "u17", "nobody"][..]),
    ] {
        assert_eq!(
            history(app, span, end_ago, users).await,
            expected(sent, span, end_ago, users),
            "span {span}, ending {end_ago} days ago, users {users:?}"
        );
    }
}

#[tokio::test]
async fn most_active_first_window_matches_the_aggregation() {
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        ..Options::default()
    })
    .await;
    let today = Utc::now().date_naive();
    let mut sent = Sent::new();
    // 40 users, counts with many ties, on days inside the window, on its
    // oldest day (which leaves it first) and outside it.
    let mut events = Vec::new();
    for i in 0..40i64 {
        let user = format!("u{i:02}");
        for k in 0..(i % 7) + 1 {
            events.push((user.clone(), (i + k) % 31));
        }
        if i % 4 == 0 {
            events.push((user.clone(), 30));
            events.push((user.clone(), 30));
        }
        for _ in 0..i % 3 {
            events.push((user.clone(), 35));
        }
        if i % 5 == 0 {
            events.push((user.clone(), 31));
        }
    }
    // Only on the day that leaves the window when it shifts to today.
    events.push(("gone".into(), 31));
    ingest(&app, &mut sent, events).await;
    // Reading catches the rollup up with what was acknowledged.
    check_all(&app, &sent).await;
    assert_eq!(span(&app).await, Some((today - Duration::days(30), today)));

    // As if the window had been kept since yesterday: the next ingest
    // shifts it (day 30 out, today in) instead of rebuilding.
    let mut conn = app.db.audit().await;
    diesel::sql_query("SELECT activity_window_rebuild($1)")
        .bind::<diesel::sql_types::Date, _>(today - Duration::days(1))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(span(&app).await.unwrap().1, today - Duration::days(1));
    // Stale window: the query for today's window aggregates instead.
    check_all(&app, &sent).await;
    ingest(&app, &mut sent, vec![("u05".into(), 0), ("u39".into(), 3)]).await;
    // Reading catches the rollup up with what was acknowledged.
    check_all(&app, &sent).await;
    assert_eq!(span(&app).await, Some((today - Duration::days(30), today)));

    // No window at all: the next ingest builds it from the rollup.
    diesel::sql_query("DELETE FROM activity_window_span")
        .execute(&mut conn)
        .await
        .unwrap();
    ingest(&app, &mut sent, vec![("u00".into(), 1), ("new".into(), 0)]).await;
    // Reading catches the rollup up with what was acknowledged.
    check_all(&app, &sent).await;
    assert_eq!(span(&app).await, Some((today - Duration::days(30), today)));

    // The window holds no user without actions in it.
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        subject_user_id: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let rows: Vec<Row> = diesel::sql_query("SELECT subject_user_id, count FROM activity_window")
        .load(&mut conn)
        .await
        .unwrap();
    let window: HashMap<String, i64> = rows
        .into_iter()
        .map(|r| (r.subject_user_id, r.count))
        .collect();
    let want: HashMap<String, i64> = expected(&sent, 30, 0, &[]).into_iter().collect();
    assert_eq!(window, want);
}

#[tokio::test]
async fn the_rollup_counts_every_acknowledged_event_once_under_concurrency() {
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        ..Options::default()
    })
    .await;
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let mut ingest = app.ingest();
        writers.push(tokio::spawn(async move {
            let mut sent = Sent::new();
            for b in 0..25i64 {
                let events: Vec<(String, i64)> = (0..20i64)
                    .map(|i| (format!("c{:02}", (w * 7 + b + i) % 13), (w + b + i) % 40))
                    .collect();
                ingest
                    .ingest_events(pb::IngestEventsRequest {
                        events: events.iter().map(|(u, d)| event(u, *d)).collect(),
                    })
                    .await
                    .unwrap();
                sent.extend(events);
            }
            sent
        }));
    }
    // Readers catch the rollup up while the worker does too.
    let mut readers = Vec::new();
    for _ in 0..3 {
        let app_audit = app.audit();
        readers.push(tokio::spawn(async move {
            let mut audit = app_audit;
            let today = Utc::now().date_naive();
            for _ in 0..30 {
                audit
                    .get_activity_history(pb::GetActivityHistoryRequest {
                        start_date: (today - Duration::days(30)).to_string(),
                        end_date: today.to_string(),
                        user_ids: vec![],
                        page: None,
                        order_by: pb::ActivityOrder::ActionsDesc as i32,
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    let mut sent = Sent::new();
    for w in writers {
        sent.extend(w.await.unwrap());
    }
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(sent.len(), 8 * 25 * 20);
    // Read right after the last acknowledgement: nothing missing, nothing
    // counted twice, in the window and outside it.
    check_all(&app, &sent).await;
    assert_eq!(history(&app, 60, 0, &[]).await, expected(&sent, 60, 0, &[]));
}

/// A progress row deleted by hand does not break the history: the rollup
/// restarts from the chain head and counts what arrives after.
#[tokio::test]
async fn a_deleted_progress_row_restarts_the_rollup_from_the_head() {
    let app = TestApp::spawn_with(Options {
        with_audit: true,
        ..Options::default()
    })
    .await;
    let mut sent = Sent::new();
    ingest(&app, &mut sent, vec![("d1".into(), 0), ("d2".into(), 1)]).await;
    check_all(&app, &sent).await;
    let mut conn = app.db.audit().await;
    diesel::sql_query("DELETE FROM rollup_progress")
        .execute(&mut conn)
        .await
        .unwrap();
    check_all(&app, &sent).await;
    ingest(&app, &mut sent, vec![("d1".into(), 0), ("d3".into(), 2)]).await;
    check_all(&app, &sent).await;
}
