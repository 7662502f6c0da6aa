//! ListUsers by email substring through the suffix index: every needle, in
//! every order, paged, returns exactly the users whose email contains it, in
//! keyset order (what the LIKE alone returned before the index changed).

use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use steward_integration_tests::{TestApp, exec};
use steward_proto::{accounts as pb, common::PageRequest};

/// (email, group, status), signup i seconds ago for the i-th row.
fn seed() -> Vec<(String, &'static str, &'static str)> {
    let mut rows = Vec::new();
    let domains = ["corp.io", "home.net", "mail.org"];
    for i in 0..240 {
        let status = ["ACTIVE", "INACTIVE", "SUSPENDED", "DESTROYED"][i % 4];
        let group = ["trial", "billing", "beta", "post"][i % 4];
        rows.push((format!("user{i}@{}", domains[i % 3]), group, status));
    }
    // Characters that mean something to LIKE or to tsquery.
    for odd in [
        "o'brien@quote.io",
        "back\\slash@odd.io",
        "per%cent@odd.io",
        "under_score@odd.io",
        "colon:star*@odd.io",
        "amp&bar|not!@odd.io",
        "sp ace@odd.io",
        "userx42@odd.io",
        "42@odd.io",
    ] {
        rows.push((odd.to_owned(), "trial", "ACTIVE"));
    }
    rows
}

#[derive(QueryableByName)]
struct Plan {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

#[tokio::test]
async fn email_substring_pages_match_a_scan_in_every_order() {
    let app = TestApp::spawn().await;
    let rows = seed();
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (email, group, status))| {
            format!(
                "(gen_random_uuid(), '{}', '{status}', '{group}', now() - make_interval(secs => {i}))",
                email.replace('\'', "''")
            )
        })
        .collect();
    exec(
        &app,
        &format!(
            "INSERT INTO users (id, email, status, group_name, signup_at) VALUES {}; ANALYZE users;",
            values.join(",")
        ),
    )
    .await;

    // Seeded order: row i signed up i seconds ago, so newest first is i asc.
    let needles = [
        "user4",
        "user42",
        "@corp",
        "corp.io",
        "o'b",
        "k\\s",
        "%",
        "_",
        "r%c",
        ":star*",
        "&bar|",
        "p a",
        "42",
        "2@",
        "x",
        "nobody",
        "user239@mail.org",
    ];
    let orders = [
        pb::UserOrderBy::SignupTimeDesc,
        pb::UserOrderBy::SignupTimeAsc,
        pb::UserOrderBy::EmailAsc,
        pb::UserOrderBy::EmailDesc,
    ];
    let mut client = app.admin();
    for needle in needles {
        for order in orders {
            for (group, status) in [("", 0), ("trial", pb::UserStatus::Active as i32)] {
                let mut expected: Vec<(usize, &String)> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, (email, g, s))| {
                        email.contains(needle)
                            && (group.is_empty() || *g == group)
                            && (status == 0 || *s == "ACTIVE")
                    })
                    .map(|(i, (email, _, _))| (i, email))
                    .collect();
                match order {
                    pb::UserOrderBy::SignupTimeDesc => expected.sort_by_key(|(i, _)| *i),
                    pb::UserOrderBy::SignupTimeAsc => {
                        expected.sort_by_key(|(i, _)| std::cmp::Reverse(*i))
                    }
                    pb::UserOrderBy::EmailAsc => expected.sort_by(|a, b| a.1.cmp(b.1)),
                    _ => expected.sort_by(|a, b| b.1.cmp(a.1)),
                }
                let expected: Vec<String> = expected.into_iter().map(|(_, e)| e.clone()).collect();

                let mut got = Vec::new();
                let mut token = String::new();
                loop {
                    let page = client
                        .list_users(pb::ListUsersRequest {
                            query: needle.to_uppercase(),
                            group: group.into(),
                            status,
                            order_by: order as i32,
                            page: Some(PageRequest {
                                page_size: 7,
                                page_token: token.clone(),
                            }),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    got.extend(page.users.into_iter().map(|u| u.email));
                    token = page.page.unwrap_or_default().next_page_token;
                    if token.is_empty() {
                        break;
                    }
                    assert!(got.len() <= rows.len(), "paging does not end");
                }
                assert_eq!(
                    got, expected,
                    "needle {needle:?}, order {order:?}, group {group:?}, status {status}"
                );
            }
        }
    }

    // The predicate the store writes is answered by the suffix index.
    let mut conn = app.db.accounts().await;
    conn.batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<Plan> = diesel::sql_query(
        "EXPLAIN SELECT id FROM users
         WHERE email_suffixes(email) @@ '''user42'':*'::tsquery AND email LIKE '%user42%'
         ORDER BY signup_at DESC, id DESC LIMIT 50",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
    assert!(
        plan.iter().any(|l| l.contains("users_email_suffixes")),
        "{plan:#?}"
    );
}
