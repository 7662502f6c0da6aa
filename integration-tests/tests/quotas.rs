//! The quotas service through its gRPC API: effective values and their
//! sources, unlimited vs inherit, reset, bulk edits, group membership fed by
//! accounts' events (the real relay), the preview, cache coherence across
//! two replicas, registration by a platform service, refusals that change
//! nothing, audit events, and the erasure delay taken from the quota.

use std::time::Duration;

use steward_integration_tests::{
    Options, QuotasClient, TestApp, audit_events, exec, outbox_in, quotas_client, reason,
    violated_fields,
};
use steward_kit::auth::Role;
use steward_proto::{accounts as apb, audit::AuditEvent, quotas as pb};
use tonic::Code;

fn v(text: &str) -> Option<pb::QuotaValue> {
    Some(pb::QuotaValue {
        kind: Some(pb::quota_value::Kind::Value(text.into())),
    })
}

fn unlimited() -> Option<pb::QuotaValue> {
    Some(pb::QuotaValue {
        kind: Some(pb::quota_value::Kind::Unlimited(true)),
    })
}

fn setting(key: &str, value: Option<pb::QuotaValue>) -> pb::QuotaSetting {
    pb::QuotaSetting {
        key: key.into(),
        value,
    }
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        with_quotas: true,
        ..Options::default()
    })
    .await
}

fn platform(app: &TestApp) -> QuotasClient {
    app.quotas_as(Some(
        app.token("service:platform", &[Role::PlatformService]),
    ))
}

async fn quota(client: &mut QuotasClient, user: &str, key: &str) -> pb::UserQuota {
    client
        .get_user_quotas(pb::GetUserQuotasRequest {
            user_id: user.into(),
            key_contains: key.into(),
            page: None,
        })
        .await
        .expect("get user quotas")
        .into_inner()
        .quotas
        .into_iter()
        .find(|q| q.key == key)
        .expect("the key is listed")
}

async fn set_users(
    client: &mut QuotasClient,
    users: &[&str],
    settings: Vec<pb::QuotaSetting>,
) -> Result<pb::SetUserQuotasResponse, tonic::Status> {
    client
        .set_user_quotas(pb::SetUserQuotasRequest {
            user_ids: users.iter().map(|u| u.to_string()).collect(),
            settings,
            reason: "ticket 42".into(),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Waits until accounts' outbox has delivered every membership event to
/// quotas (each invalidates its user in the caches when it arrives).
async fn memberships_delivered(app: &TestApp) {
    for _ in 0..200 {
        let pending: Vec<steward_proto::quotas::MembershipEvent> =
            steward_integration_tests::outbox_in(app, steward_accounts::SCHEMA, "quotas").await;
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_in(app: &TestApp, email: &str, group: &str) -> apb::User {
    app.admin()
        .create_user(apb::CreateUserRequest {
            email: email.into(),
            group: group.into(),
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("user")
}

async fn quota_audit(app: &TestApp, action: &str) -> Vec<AuditEvent> {
    outbox_in::<AuditEvent>(app, "quotas", "audit")
        .await
        .into_iter()
        .filter(|e| e.action == action && e.result == steward_proto::common::Result::Success as i32)
        .collect()
}

#[tokio::test]
async fn effective_values_come_from_override_group_or_default() {
    let app = spawn().await;
    let trial = create_in(&app, "trial@q.io", "trial").await;
    let beta = create_in(&app, "beta@q.io", "beta").await;
    let mut q = app.quotas();

    // trial sets environment.maxcount (2); beta inherits the default (10).
    let t = quota(&mut q, &trial.id, "environment.maxcount").await;
    assert_eq!(t.source, pb::QuotaSource::Group as i32);
    assert_eq!(t.effective_value, v("2"));
    assert_eq!(t.override_value, None);
    let b = quota(&mut q, &beta.id, "environment.maxcount").await;
    assert_eq!(b.source, pb::QuotaSource::Default as i32);
    assert_eq!(b.effective_value, v("10"));
    assert_eq!(b.group_value, v("10"));

    // The bulk edit: both users get unlimited environments and 3 nodes.
    let done = set_users(
        &mut q,
        &[&trial.id, &beta.id],
        vec![
            setting("environment.maxcount", unlimited()),
            setting("environment.maxnodescount", v("3")),
        ],
    )
    .await
    .unwrap();
    assert_eq!(done.changes.len(), 4);
    // trial's group value is 4 nodes, beta's default 16: both lowered, said.
    assert!(
        done.changes
            .iter()
            .filter(|c| c.key == "environment.maxnodescount")
            .all(|c| c.below_group_value)
    );
    let t = quota(&mut q, &trial.id, "environment.maxcount").await;
    assert_eq!(t.source, pb::QuotaSource::Override as i32);
    assert_eq!(t.effective_value, unlimited());
    assert_eq!(t.override_value, unlimited());
    assert_eq!(t.group_value, v("2"));

    // An override equal to the group value stays an override (not inherit).
    set_users(
        &mut q,
        &[&trial.id],
        vec![setting("disk.limitation", v("5"))],
    )
    .await
    .unwrap();
    let d = quota(&mut q, &trial.id, "disk.limitation").await;
    assert_eq!(d.source, pb::QuotaSource::Override as i32);
    assert_eq!(d.override_value, v("5"));

    // Reset to group value: one key for both users.
    let reset = q
        .reset_user_quotas(pb::ResetUserQuotasRequest {
            user_ids: vec![trial.id.clone(), beta.id.clone()],
            keys: vec!["environment.maxcount".into()],
            reason: "back to normal".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.changes.len(), 2);
    let t = quota(&mut q, &trial.id, "environment.maxcount").await;
    assert_eq!(
        (t.source, t.effective_value, t.override_value),
        (pb::QuotaSource::Group as i32, v("2"), None)
    );
    let b = quota(&mut q, &beta.id, "environment.maxcount").await;
    assert_eq!(b.source, pb::QuotaSource::Default as i32);
    // The other override is untouched.
    let n = quota(&mut q, &beta.id, "environment.maxnodescount").await;
    assert_eq!(n.effective_value, v("3"));

    // Search by key substring, keyset pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = q
            .get_user_quotas(pb::GetUserQuotasRequest {
                user_id: trial.id.clone(),
                key_contains: "EXTERNALIP".into(),
                page: Some(steward_proto::common::PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.quotas.len() <= 2);
        seen.extend(page.quotas.into_iter().map(|q| q.key));
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|k| k.contains("externalip")));

    // Audited in each user's log with old and new values and the reason.
    let events = quota_audit(&app, "quotas.user.updated").await;
    let trial_count = events
        .iter()
        .find(|e| e.subject_user_id == trial.id && e.comments["key"] == "environment.maxcount")
        .expect("audited");
    assert_eq!(trial_count.comments["old_value"], "2");
    assert_eq!(trial_count.comments["old_source"], "GROUP");
    assert_eq!(trial_count.comments["new_value"], "unlimited");
    assert_eq!(trial_count.comments["reason"], "ticket 42");
    assert_eq!(events.len(), 5);
    let resets = quota_audit(&app, "quotas.user.reset").await;
    assert_eq!(resets.len(), 2);
    let beta_reset = resets
        .iter()
        .find(|e| e.subject_user_id == beta.id)
        .unwrap();
    assert_eq!(
        (
            beta_reset.comments["old_value"].as_str(),
            beta_reset.comments["new_value"].as_str()
        ),
        ("unlimited", "10")
    );
    app.stop().await;
}

#[tokio::test]
async fn groups_defaults_copies_and_the_platform_check() {
    let app = spawn().await;
    let user = create_in(&app, "check@q.io", "beta").await;
    let mut q = app.quotas();
    let mut p = platform(&app);
    let check = |requests: Vec<(&str, &str)>| pb::CheckQuotasRequest {
        user_id: user.id.clone(),
        requests: requests
            .into_iter()
            .map(|(k, a)| pb::QuotaRequest {
                key: k.into(),
                amount: a.into(),
            })
            .collect(),
    };
    let r = p
        .check_quotas(check(vec![
            ("environment.maxcount", "10"),
            ("environment.maxcount", "11"),
            ("environment.externalip.enabled", ""),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.checks.iter().map(|c| c.allowed).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert!(!r.allowed);
    assert_eq!(r.group, "beta");

    // The group's value applies to its members, at once.
    let changes = q
        .set_group_quotas(pb::SetGroupQuotasRequest {
            group: "beta".into(),
            settings: vec![
                setting("environment.maxcount", v("20")),
                setting("environment.externalip.enabled", v("1")),
            ],
            reason: "beta testers".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert_eq!(changes[0].old_value, v("10"));
    let r = p
        .check_quotas(check(vec![
            ("environment.maxcount", "11"),
            ("environment.externalip.enabled", ""),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    assert!(
        r.checks
            .iter()
            .all(|c| c.source == pb::QuotaSource::Group as i32)
    );

    // A new group copies beta's values.
    q.copy_group_quotas(pb::CopyGroupQuotasRequest {
        group: "partners".into(),
        source_group: "beta".into(),
        reason: "partners start as beta".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let partners = q
        .get_group_quotas(pb::GetGroupQuotasRequest {
            group: "partners".into(),
            key_contains: "environment.maxcount".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partners.quotas[0].value, v("20"));
    assert_eq!(partners.quotas[0].source, pb::QuotaSource::Group as i32);

    // Reset to the default.
    let reset = q
        .reset_group_quota(pb::ResetGroupQuotaRequest {
            group: "beta".into(),
            key: "environment.maxcount".into(),
            reason: "done".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .change
        .unwrap();
    assert_eq!((reset.old_value, reset.new_value), (v("20"), v("10")));
    let r = p
        .check_quotas(check(vec![("environment.maxcount", "11")]))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);

    // Many users and keys in one call.
    let other = create_in(&app, "other@q.io", "trial").await;
    let batch = p
        .batch_get_effective_quotas(pb::BatchGetEffectiveQuotasRequest {
            user_ids: vec![user.id.clone(), other.id.clone()],
            keys: vec!["environment.maxcount".into(), "disk.limitation".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.users[1].group, "trial");
    assert_eq!(batch.users[1].quotas[0].value, v("2"));
    assert_eq!(batch.users[1].quotas[1].value, v("5"));

    // The check is for platform services only.
    let denied = q.check_quotas(check(vec![("disk.limitation", "1")])).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    let group_events = quota_audit(&app, "quotas.group.updated").await;
    assert_eq!(group_events.len(), 2);
    let e = group_events
        .iter()
        .find(|e| e.comments["key"] == "environment.maxcount")
        .unwrap();
    assert_eq!(
        (
            e.comments["group"].as_str(),
            e.comments["old_value"].as_str(),
            e.comments["new_value"].as_str(),
            e.comments["reason"].as_str()
        ),
        ("beta", "10", "20", "beta testers")
    );
    assert_eq!(quota_audit(&app, "quotas.group.copied").await.len(), 2);
    assert_eq!(quota_audit(&app, "quotas.group.reset").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn every_bad_input_is_refused_and_changes_nothing() {
    let app = spawn().await;
    let user = create_in(&app, "bad@q.io", "trial").await;
    let mut q = app.quotas();
    let before = q
        .get_user_quotas(pb::GetUserQuotasRequest {
            user_id: user.id.clone(),
            key_contains: String::new(),
            page: Some(steward_proto::common::PageRequest {
                page_size: 100,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .quotas;

    let err = set_users(
        &mut q,
        &[&user.id],
        vec![
            // A valid setting in the same request is not applied either.
            setting("disk.limitation", v("7")),
            setting("environment.maxcount", v("abc")),
            setting("environment.maxnodescount", v("-1")),
            setting("no.such.key", v("1")),
            setting("account.charge.balance.first", v("cash")),
            setting("firewall.enabled", unlimited()),
            setting("account.minbalance", v("1.1234567")),
            setting("environment.vds.enabled", None),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        [
            "settings[1].value",
            "settings[2].value",
            "settings[3].key",
            "settings[4].value",
            "settings[5].value",
            "settings[6].value",
            "settings[7].value",
        ]
    );
    assert!(err.message().contains("negative"), "{}", err.message());

    // No reason, bad user ids, repeated keys.
    let err = q
        .set_user_quotas(pb::SetUserQuotasRequest {
            user_ids: vec!["nope".into()],
            settings: vec![
                setting("disk.limitation", v("1")),
                setting("disk.limitation", v("2")),
            ],
            reason: " ".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["user_ids[0]", "settings[1].key", "reason"]
    );

    // A user accounts does not know.
    let err = set_users(
        &mut q,
        &[&uuid::Uuid::now_v7().to_string()],
        vec![setting("disk.limitation", v("1"))],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Groups: bad group name, unknown key; reset of an unknown key.
    let err = q
        .set_group_quotas(pb::SetGroupQuotasRequest {
            group: "Not A Group".into(),
            settings: vec![setting("nope", v("1"))],
            reason: "x".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["group", "settings[0].key"]);
    let err = q
        .reset_user_quotas(pb::ResetUserQuotasRequest {
            user_ids: vec![user.id.clone()],
            keys: vec!["nope".into()],
            reason: "x".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["keys[0]"]);
    let err = platform(&app)
        .check_quotas(pb::CheckQuotasRequest {
            user_id: user.id.clone(),
            requests: vec![
                pb::QuotaRequest {
                    key: "environment.maxcount".into(),
                    amount: "-2".into(),
                },
                pb::QuotaRequest {
                    key: "nope".into(),
                    amount: "1".into(),
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["requests[0].amount", "requests[1].key"]
    );

    let after = q
        .get_user_quotas(pb::GetUserQuotasRequest {
            user_id: user.id.clone(),
            key_contains: String::new(),
            page: Some(steward_proto::common::PageRequest {
                page_size: 100,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .quotas;
    assert_eq!(before, after);
    assert!(quota_audit(&app, "quotas.user.updated").await.is_empty());
    // The refusals themselves are audited as FAILURE.
    let failures = outbox_in::<AuditEvent>(&app, "quotas", "audit")
        .await
        .into_iter()
        .filter(|e| e.result == steward_proto::common::Result::Failure as i32)
        .count();
    assert!(failures >= 4, "{failures}");
    app.stop().await;
}

async fn wait_for_group(
    q: &mut QuotasClient,
    user: &str,
    group: &str,
) -> pb::GetUserQuotasResponse {
    for _ in 0..200 {
        let r = q
            .get_user_quotas(pb::GetUserQuotasRequest {
                user_id: user.into(),
                key_contains: String::new(),
                page: Some(steward_proto::common::PageRequest {
                    page_size: 100,
                    page_token: String::new(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        if r.group == group {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("quotas did not learn that {user} is in {group}");
}

#[tokio::test]
async fn a_group_change_in_accounts_reaches_quotas_and_matches_the_preview() {
    let app = spawn().await;
    let user = create_in(&app, "mover@q.io", "trial").await;
    let mut q = app.quotas();
    // accounts' user.created event (or the one-time lookup) tells quotas.
    wait_for_group(&mut q, &user.id, "trial").await;
    set_users(
        &mut q,
        &[&user.id],
        vec![setting("disk.limitation", v("7"))],
    )
    .await
    .unwrap();

    let preview = q
        .preview_group_change(pb::PreviewGroupChangeRequest {
            user_id: user.id.clone(),
            target_group: "billing".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.current_group, "trial");
    let keys: Vec<&str> = preview.changes.iter().map(|c| c.key.as_str()).collect();
    assert!(keys.contains(&"environment.maxcount"));
    assert!(keys.contains(&"environment.externalip.enabled"));
    // The override does not move with the group.
    assert!(!keys.contains(&"disk.limitation"));

    app.admin()
        .batch_change_group(apb::BatchChangeGroupRequest {
            request_id: "move-1".into(),
            user_ids: vec![user.id.clone()],
            group: "billing".into(),
            notify: false,
            mail_template_id: String::new(),
        })
        .await
        .unwrap();
    let after = wait_for_group(&mut q, &user.id, "billing").await;
    for change in &preview.changes {
        let now = after.quotas.iter().find(|q| q.key == change.key).unwrap();
        assert_eq!(now.effective_value, change.new_value, "{}", change.key);
    }
    let before_keys: Vec<&str> = preview.changes.iter().map(|c| c.key.as_str()).collect();
    for quota in &after.quotas {
        if !before_keys.contains(&quota.key.as_str()) && quota.key != "disk.limitation" {
            // Unchanged keys: billing's value equals trial's.
            assert_ne!(quota.source, pb::QuotaSource::Unspecified as i32);
        }
    }
    let disk = after
        .quotas
        .iter()
        .find(|q| q.key == "disk.limitation")
        .unwrap();
    assert_eq!(disk.effective_value, v("7"));

    // Erasure drops the user's overrides.
    app.admin()
        .batch_delete_personal_data(apb::BatchDeletePersonalDataRequest {
            request_id: "erase-1".into(),
            user_ids: vec![user.id.clone()],
        })
        .await
        .unwrap();
    let mut erased = false;
    for _ in 0..200 {
        if quota(&mut q, &user.id, "disk.limitation")
            .await
            .override_value
            .is_none()
        {
            erased = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(erased, "the erasure event reached quotas");
    // ... and says so in the user's log, with what was removed.
    let removal = quota_audit(&app, "quotas.user.overrides_erased").await;
    assert_eq!(removal.len(), 1, "{removal:?}");
    assert_eq!(removal[0].subject_user_id, user.id);
    let removed = &removal[0].comments["removed"];
    assert!(removed.contains("disk.limitation=7"), "{removed}");
    app.stop().await;
}

#[tokio::test]
async fn no_replica_answers_stale_after_an_acknowledged_change() {
    let mut app = spawn().await;
    let other = app.start_quotas_replica().await;
    let user = create_in(&app, "replicas@q.io", "beta").await;
    let token = Some(app.token("service:platform", &[Role::PlatformService]));
    let admin = Some(app.token(steward_integration_tests::ADMIN_ID, &[Role::UserAdmin]));
    let mut a = app.quotas();
    let mut b = quotas_client(&other, admin);
    let mut check_a = app.quotas_as(token.clone());
    let mut check_b = quotas_client(&other, token);
    let check = |amount: &str| pb::CheckQuotasRequest {
        user_id: user.id.clone(),
        requests: vec![pb::QuotaRequest {
            key: "environment.maxcount".into(),
            amount: amount.into(),
        }],
    };
    let value = |r: pb::CheckQuotasResponse| r.checks[0].effective_value.clone();
    // Accounts' membership event for the new user invalidates it in the
    // caches when it arrives: let it arrive first.
    memberships_delivered(&app).await;
    // Both replicas have the user cached.
    for c in [&mut check_a, &mut check_b] {
        for _ in 0..3 {
            c.check_quotas(check("1")).await.unwrap();
        }
    }
    // The answers come from the caches: a row written behind the service's
    // back is not seen (so what follows tests the invalidation).
    {
        use diesel_async::SimpleAsyncConnection;
        let mut conn = steward_kit::db::connect(&app.db.url, "quotas")
            .await
            .unwrap();
        conn.batch_execute(&format!(
            "INSERT INTO overrides (user_id, key, value) VALUES ('{}', 'environment.maxcount', '999')",
            user.id
        ))
        .await
        .unwrap();
        let mut replicas = 0i64;
        for _ in 0..50 {
            use diesel_async::RunQueryDsl;
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            replicas = diesel::sql_query("SELECT count(*) AS n FROM cache_replicas")
                .get_result::<N>(&mut conn)
                .await
                .unwrap()
                .n;
            if replicas == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(replicas, 2);
    }
    for c in [&mut check_a, &mut check_b] {
        let cached = value(c.check_quotas(check("1")).await.unwrap().into_inner());
        assert_eq!(cached, v("10"), "served from the cache");
    }
    for round in 0..15u32 {
        let n = (round + 1).to_string();
        // Written on one replica, read on the other at once.
        let (writer, reader) = if round % 2 == 0 {
            (&mut a, &mut check_b)
        } else {
            (&mut b, &mut check_a)
        };
        set_users(
            writer,
            &[&user.id],
            vec![setting("environment.maxcount", v(&n))],
        )
        .await
        .unwrap();
        let seen = value(reader.check_quotas(check("1")).await.unwrap().into_inner());
        assert_eq!(seen, v(&n), "round {round}: stale override");
    }
    // Group values too: reset the override, then change beta's value on B.
    a.reset_user_quotas(pb::ResetUserQuotasRequest {
        user_ids: vec![user.id.clone()],
        keys: vec!["environment.maxcount".into()],
        reason: "r".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        value(check_b.check_quotas(check("1")).await.unwrap().into_inner()),
        v("10")
    );
    for round in 0..6u32 {
        let n = (100 + round).to_string();
        let (writer, reader) = if round % 2 == 0 {
            (&mut b, &mut check_a)
        } else {
            (&mut a, &mut check_b)
        };
        writer
            .set_group_quotas(pb::SetGroupQuotasRequest {
                group: "beta".into(),
                settings: vec![setting("environment.maxcount", v(&n))],
                reason: "r".into(),
                request_id: String::new(),
            })
            .await
            .unwrap();
        let seen = value(reader.check_quotas(check("1")).await.unwrap().into_inner());
        assert_eq!(seen, v(&n), "round {round}: stale group value");
    }
    app.stop().await;
}

#[tokio::test]
async fn platform_services_register_their_definitions() {
    let app = spawn().await;
    let mut p = platform(&app);
    let def = |key: &str, t: pb::QuotaType, default: Option<pb::QuotaValue>| pb::QuotaDefinition {
        key: key.into(),
        r#type: t as i32,
        unit: "bots".into(),
        description: "Bots the account may run".into(),
        product: "botplatform".into(),
        default_value: default,
        allowed_values: Vec::new(),
        update_time: None,
    };
    let done = p
        .register_quota_definitions(pb::RegisterQuotaDefinitionsRequest {
            definitions: vec![
                def("bots.maxcount", pb::QuotaType::Count, v("3")),
                pb::QuotaDefinition {
                    allowed_values: vec!["small".into(), "large".into()],
                    ..def("bots.size", pb::QuotaType::Enum, v("small"))
                },
            ],
            request_id: "reg-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.created, 2);
    let listed = app
        .quotas()
        .list_quota_definitions(pb::ListQuotaDefinitionsRequest {
            key_contains: String::new(),
            product: "botplatform".into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .definitions;
    assert_eq!(
        listed.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["bots.maxcount", "bots.size"]
    );
    // Usable at once.
    let user = create_in(&app, "bots@q.io", "trial").await;
    let q = quota(&mut app.quotas(), &user.id, "bots.maxcount").await;
    assert_eq!(q.effective_value, v("3"));

    // A type never changes; an admin may not register; bad definitions are
    // field violations.
    let err = p
        .register_quota_definitions(pb::RegisterQuotaDefinitionsRequest {
            definitions: vec![def("bots.maxcount", pb::QuotaType::Days, v("3"))],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "QUOTA_TYPE_FIXED");
    let err = app
        .quotas()
        .register_quota_definitions(pb::RegisterQuotaDefinitionsRequest {
            definitions: vec![def("bots.other", pb::QuotaType::Count, v("1"))],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = p
        .register_quota_definitions(pb::RegisterQuotaDefinitionsRequest {
            definitions: vec![
                def("Bad Key", pb::QuotaType::Count, v("1")),
                def("bots.x", pb::QuotaType::Unspecified, v("1")),
                def("bots.y", pb::QuotaType::Count, v("-1")),
                def("bots.z", pb::QuotaType::Enum, v("a")),
            ],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "definitions[0].key",
            "definitions[1].type",
            "definitions[2].default_value",
            "definitions[3].allowed_values",
            "definitions[3].default_value",
        ]
    );
    let registered = quota_audit(&app, "quotas.definitions.registered").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].comments["keys"], "bots.maxcount,bots.size");
    app.stop().await;
}

#[tokio::test]
async fn the_erasure_delay_is_the_users_quota() {
    let app = TestApp::spawn_with(Options {
        with_quotas: true,
        erasure_interval: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    let soon = create_in(&app, "soon@delay.io", "trial").await;
    let later = create_in(&app, "later@delay.io", "trial").await;
    let mut q = app.quotas();
    // accounts' own setting says 30 days; the quotas say 0 and 365.
    set_users(
        &mut q,
        &[&soon.id],
        vec![setting("account.personal.data.removal.delay", v("0"))],
    )
    .await
    .unwrap();
    set_users(
        &mut q,
        &[&later.id],
        vec![setting("account.personal.data.removal.delay", v("365"))],
    )
    .await
    .unwrap();
    app.admin()
        .batch_change_status(apb::BatchChangeStatusRequest {
            request_id: "destroy".into(),
            user_ids: vec![soon.id.clone(), later.id.clone()],
            action: apb::StatusAction::Destroy as i32,
            reason: String::new(),
        })
        .await
        .unwrap();
    exec(
        &app,
        &format!(
            "UPDATE users SET destroyed_at = now() - interval '40 days' WHERE id IN ('{}', '{}')",
            soon.id, later.id
        ),
    )
    .await;
    app.admin()
        .update_settings(apb::UpdateSettingsRequest {
            settings: Some(apb::Settings {
                auto_erase_enabled: true,
                auto_erase_delay_days: 30,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["auto_erase_enabled".into(), "auto_erase_delay_days".into()],
            }),
        })
        .await
        .unwrap();
    let status = |id: String| {
        let app = &app;
        async move {
            app.admin()
                .get_user(apb::GetUserRequest { user_id: id })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap()
                .status
        }
    };
    let mut deleted = false;
    for _ in 0..100 {
        if status(soon.id.clone()).await == apb::UserStatus::Deleted as i32 {
            deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(deleted, "the 0-day quota erased the first user");
    // 40 days > accounts' 30, but the user's quota says 365.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        status(later.id.clone()).await,
        apb::UserStatus::Destroyed as i32
    );
    let job: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "user.personal_data.deleted")
        .collect();
    assert_eq!(job.len(), 1);
    assert_eq!(job[0].subject_user_id, soon.id);
    assert_eq!(job[0].comments["delay_days"], "0");
    assert_eq!(
        job[0].comments["delay_source"],
        "quota account.personal.data.removal.delay"
    );
    app.stop().await;
}

/// A replica loads every user it knows before it is asked: its first check
/// is answered from memory (a row written behind the service's back after
/// the warm-up is not seen), and a change made through the API after the
/// warm-up is (the warm-up never hides one).
#[tokio::test]
async fn a_starting_replica_warms_its_cache_with_every_user() {
    use diesel::{QueryableByName, sql_types};
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = sql_types::BigInt)]
        n: i64,
    }
    #[derive(QueryableByName)]
    struct Replica {
        #[diesel(sql_type = sql_types::Uuid)]
        replica_id: uuid::Uuid,
    }
    let mut app = spawn().await;
    let first = create_in(&app, "warm1@q.io", "beta").await;
    create_in(&app, "warm2@q.io", "trial").await;
    memberships_delivered(&app).await;
    let mut conn = steward_kit::db::connect(&app.db.url, "quotas")
        .await
        .unwrap();
    let members = diesel::sql_query("SELECT count(*) AS n FROM memberships")
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n;
    assert!(members >= 2, "{members}");
    let known: Vec<uuid::Uuid> = diesel::sql_query("SELECT replica_id FROM cache_replicas")
        .load::<Replica>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.replica_id)
        .collect();

    let other = app.start_quotas_replica().await;
    let mut replica = None;
    for _ in 0..100 {
        let ids: Vec<Replica> = diesel::sql_query("SELECT replica_id FROM cache_replicas")
            .load(&mut conn)
            .await
            .unwrap();
        replica = ids
            .into_iter()
            .map(|r| r.replica_id)
            .find(|id| !known.contains(id));
        if replica.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gauge = format!(
        "steward_quotas_cache_users{{replica=\"{}\"}} {members}\n",
        replica.expect("the new replica registered")
    );
    let mut warmed = false;
    for _ in 0..200 {
        if steward_kit::metrics::render().contains(&gauge) {
            warmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(warmed, "{gauge} never exported");

    conn.batch_execute(&format!(
        "INSERT INTO overrides (user_id, key, value) VALUES ('{}', 'environment.maxcount', '999')",
        first.id
    ))
    .await
    .unwrap();
    let token = Some(app.token("service:platform", &[Role::PlatformService]));
    let mut check = quotas_client(&other, token);
    let request = pb::CheckQuotasRequest {
        user_id: first.id.clone(),
        requests: vec![pb::QuotaRequest {
            key: "environment.maxcount".into(),
            amount: "1".into(),
        }],
    };
    let answer = check
        .check_quotas(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.checks[0].effective_value,
        v("10"),
        "served from memory"
    );

    set_users(
        &mut app.quotas(),
        &[&first.id],
        vec![setting("environment.maxcount", v("7"))],
    )
    .await
    .unwrap();
    let answer = check.check_quotas(request).await.unwrap().into_inner();
    assert_eq!(answer.checks[0].effective_value, v("7"));
    app.stop().await;
}
