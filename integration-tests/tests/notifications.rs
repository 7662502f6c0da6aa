//! Notifications end to end against a real SMTP server the project did not
//! write (Python's aiosmtpd, `python/smtp_sink.py`): accounts change ->
//! accounts' outbox -> relay -> notifications ingest -> render -> SMTP.

#[path = "notifications/sink.rs"]
mod sink;

use std::time::Duration;

use sink::{Security, Sink, TestPki, smtp_config, temp_dir};
use steward_integration_tests::{Options, TestApp, outbox_in, reason, violated_fields};
use steward_proto::{accounts as apb, audit::AuditEvent, notifications as pb};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

async fn spawn(config: steward::config::NotificationsConfig) -> TestApp {
    TestApp::spawn_with(Options {
        with_notifications: Some(config),
        ..Options::default()
    })
    .await
}

fn notification(template_id: &str, to: &[&str], params: &[(&str, &str)]) -> pb::Notification {
    pb::Notification {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: None,
        template_id: template_id.into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        subject_user_id: "0190b7c4-0000-7000-8000-0000000000aa".into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        source: "test".into(),
    }
}

async fn enqueue(app: &TestApp, n: Vec<pb::Notification>) -> pb::EnqueueNotificationsResponse {
    app.notification_ingest()
        .enqueue_notifications(pb::EnqueueNotificationsRequest { notifications: n })
        .await
        .expect("enqueue")
        .into_inner()
}

async fn mails(app: &TestApp, user_id: &str) -> Vec<pb::Mail> {
    app.notifications()
        .list_notifications(pb::ListNotificationsRequest {
            user_id: user_id.into(),
            ..Default::default()
        })
        .await
        .expect("list notifications")
        .into_inner()
        .mails
}

/// Waits until every mail of `user_id` is in a final status.
async fn settled(app: &TestApp, user_id: &str, n: usize) -> Vec<pb::Mail> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = mails(app, user_id).await;
        let done = got.len() >= n
            && got.iter().all(|m| {
                [
                    pb::MailStatus::Sent as i32,
                    pb::MailStatus::Failed as i32,
                    pb::MailStatus::Suppressed as i32,
                ]
                .contains(&m.status)
            });
        if done {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mail did not settle: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audit_actions(app: &TestApp) -> Vec<AuditEvent> {
    outbox_in::<AuditEvent>(app, steward_notifications_schema(), "audit").await
}

fn steward_notifications_schema() -> &'static str {
    steward::Component::Notifications
        .schema()
        .expect("notifications has a schema")
}

#[tokio::test]
async fn group_change_with_a_template_arrives_rendered_to_the_user() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let templates = app
        .notifications()
        .list_templates(pb::ListTemplatesRequest {
            category: "group_change".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .templates;
    let ids: Vec<&str> = templates.iter().map(|t| t.template_id.as_str()).collect();
    assert!(ids.contains(&"group.billing.welcome"), "{ids:?}");
    assert!(ids.contains(&"group.trial.moved"), "{ids:?}");

    let user = app.create_user("grace@example.com").await;
    let old_group = user.group.clone();
    app.admin()
        .batch_change_group(apb::BatchChangeGroupRequest {
            request_id: "grp-mail-1".into(),
            user_ids: vec![user.id.clone()],
            group: "billing".into(),
            notify: true,
            mail_template_id: "group.billing.welcome".into(),
        })
        .await
        .expect("change group");

    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.to, ["grace@example.com"]);
    assert_eq!(m.from, "noreply@steward.test");
    assert_eq!(m.subject, "Welcome to Steward billing");
    assert!(
        m.text
            .contains(&format!("group billing, before: {old_group}")),
        "{}",
        m.text
    );
    assert!(m.text.contains("https://dashboard.steward.test/"));
    assert!(m.html.contains("<b>billing</b>"), "{}", m.html);

    let listed = settled(&app, &user.id, 1).await;
    assert_eq!(listed[0].status, pb::MailStatus::Sent as i32);
    assert_eq!(listed[0].attempts, 1);
    assert_eq!(listed[0].transport, "smtp");
    assert_eq!(listed[0].source, "accounts");
    assert_eq!(listed[0].template_id, "group.billing.welcome");
    let detail = app
        .notifications()
        .get_notification(pb::GetNotificationRequest {
            mail_id: listed[0].mail_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<i32> = detail.history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [
            pb::MailStatus::Queued as i32,
            pb::MailStatus::Sending as i32,
            pb::MailStatus::Sent as i32
        ]
    );
    assert!(
        detail
            .message
            .unwrap()
            .text_body
            .contains("billing account")
    );

    // The send is in the user's audit log (through notifications' outbox).
    let sent: Vec<AuditEvent> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "notifications.mail.sent")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].subject_user_id, user.id);
    assert_eq!(
        sent[0].category,
        steward_proto::audit::Category::System as i32
    );
    app.stop().await;
}

#[tokio::test]
async fn an_email_change_reaches_both_addresses() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let user = app.create_user("old-login@example.com").await;
    app.admin()
        .change_email(apb::ChangeEmailRequest {
            request_id: "email-1".into(),
            user_id: user.id.clone(),
            new_email: "new-login@example.com".into(),
            notify: true,
        })
        .await
        .expect("change email");
    let got = sink.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let to_old = got
        .iter()
        .find(|m| m.to == ["old-login@example.com"])
        .expect("mail to the old address");
    let to_new = got
        .iter()
        .find(|m| m.to == ["new-login@example.com"])
        .expect("mail to the new address");
    for m in [to_old, to_new] {
        assert_eq!(m.subject, "Your Steward login is now new-login@example.com");
        assert!(
            m.text.contains("New login: new-login@example.com"),
            "{}",
            m.text
        );
        assert!(m.text.contains("https://dashboard.steward.test/"));
    }
    assert!(
        to_old.text.contains("changed from this address"),
        "{}",
        to_old.text
    );
    assert!(to_new.text.contains("is now the login"), "{}", to_new.text);
    let listed = settled(&app, &user.id, 2).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].notification_id, listed[1].notification_id);
    app.stop().await;
}

#[tokio::test]
async fn a_4xx_is_retried_with_backoff_and_then_delivered() {
    let sink = Sink::start_with(2).await;
    let app = spawn(smtp_config(sink.port)).await;
    let n = notification("user.status.activated", &["greylist-1@example.com"], &[]);
    let user_id = n.subject_user_id.clone();
    assert_eq!(enqueue(&app, vec![n]).await.accepted, 1);
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].to, ["greylist-1@example.com"]);
    let mail = settled(&app, &user_id, 1).await.remove(0);
    assert_eq!(mail.status, pb::MailStatus::Sent as i32);
    assert_eq!(mail.attempts, 3, "two 451s, then accepted");
    let history = app
        .notifications()
        .get_notification(pb::GetNotificationRequest {
            mail_id: mail.mail_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .history;
    let statuses: Vec<i32> = history.iter().map(|h| h.status).collect();
    use pb::MailStatus::*;
    assert_eq!(
        statuses,
        [Queued, Sending, Deferred, Sending, Deferred, Sending, Sent].map(|s| s as i32)
    );
    let deferred = &history[2];
    assert!(deferred.detail.contains("451"), "{}", deferred.detail);
    assert!(
        deferred.detail.contains("next attempt at"),
        "{}",
        deferred.detail
    );
    // Timestamps only move forward, and the backoff waited.
    let times: Vec<i64> = history
        .iter()
        .map(|h| {
            let t = h.time.as_ref().unwrap();
            t.seconds * 1_000_000_000 + t.nanos as i64
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[3] - times[2] >= 40_000_000, "the first retry waited");
    app.stop().await;
}

#[tokio::test]
async fn a_5xx_fails_at_once_and_suppresses_the_address() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let n = notification("user.password.changed", &["nosuchuser@example.com"], &[]);
    let user_id = n.subject_user_id.clone();
    enqueue(&app, vec![n]).await;
    let failed = settled(&app, &user_id, 1).await.remove(0);
    assert_eq!(failed.status, pb::MailStatus::Failed as i32);
    assert_eq!(failed.attempts, 1, "a permanent failure is not retried");
    assert!(failed.last_error.contains("550"), "{}", failed.last_error);
    assert!(
        failed.last_error.contains("no such user"),
        "{}",
        failed.last_error
    );

    let suppressions = app
        .notifications()
        .list_suppressions(pb::ListSuppressionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .suppressions;
    assert_eq!(suppressions.len(), 1);
    assert_eq!(suppressions[0].address, "nosuchuser@example.com");
    assert_eq!(suppressions[0].mail_id, failed.mail_id);

    // Later mail to the address is SUPPRESSED, not sent (any spelling).
    enqueue(
        &app,
        vec![notification(
            "user.password.changed",
            &["NoSuchUser@Example.com"],
            &[],
        )],
    )
    .await;
    let all = settled(&app, &user_id, 2).await;
    let later = all.iter().find(|m| m.mail_id != failed.mail_id).unwrap();
    assert_eq!(later.status, pb::MailStatus::Suppressed as i32);
    assert_eq!(later.attempts, 0);
    assert_eq!(sink.count(), 0, "nothing reached the server");

    let resend = app
        .notifications()
        .resend_notification(pb::ResendNotificationRequest {
            request_id: "resend-1".into(),
            mail_id: failed.mail_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(resend.code(), Code::FailedPrecondition);
    assert_eq!(reason(&resend), "ADDRESS_SUPPRESSED");

    let actions: Vec<String> = audit_actions(&app)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"notifications.mail.failed".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"notifications.mail.suppressed".to_owned()),
        "{actions:?}"
    );

    app.notifications()
        .delete_suppression(pb::DeleteSuppressionRequest {
            request_id: "unsuppress-1".into(),
            address: "nosuchuser@example.com".into(),
        })
        .await
        .expect("delete the suppression");
    let after = app
        .notifications()
        .list_suppressions(pb::ListSuppressionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .suppressions;
    assert!(after.is_empty());
    app.stop().await;
}

/// `[notifications.smtp]` for a relay requiring STARTTLS and AUTH.
fn secure_config(
    port: u16,
    ca_file: Option<&std::path::Path>,
    password: &str,
) -> steward::config::NotificationsConfig {
    let mut c = smtp_config(port);
    c.smtp.tls = steward::config::TlsMode::Starttls;
    c.smtp.ca_file = ca_file.map(Into::into);
    c.smtp.username = Some("steward".into());
    c.smtp.password = Some(password.to_owned().into());
    c
}

/// A relay requiring STARTTLS with `pki`'s certificate and AUTH as
/// `steward` / `relay-secret`.
async fn starttls_relay(pki: &TestPki) -> Sink {
    Sink::start_secure(Security {
        tls: Some(pki),
        auth: Some(("steward", "relay-secret")),
        ..Default::default()
    })
    .await
}

/// Waits until `user_id`'s one mail was attempted and deferred.
async fn deferred(app: &TestApp, user_id: &str) -> pb::Mail {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = mails(app, user_id).await;
        if let Some(m) = got
            .iter()
            .find(|m| m.status == pb::MailStatus::Deferred as i32)
        {
            return m.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mail was not deferred: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn starttls_and_auth_reach_a_relay_whose_certificate_a_private_ca_signed() {
    let pki = TestPki::generate();
    let sink = starttls_relay(&pki).await;
    let app = spawn(secure_config(sink.port, Some(&pki.ca_file), "relay-secret")).await;
    let n = notification("user.status.activated", &["tls@example.com"], &[]);
    let user_id = n.subject_user_id.clone();
    enqueue(&app, vec![n]).await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].to, ["tls@example.com"]);
    assert!(got[0].tls.starts_with("TLSv1."), "{:?}", got[0].tls);
    assert_eq!(got[0].login, "steward");
    let sent = settled(&app, &user_id, 1).await.remove(0);
    assert_eq!(sent.status, pb::MailStatus::Sent as i32);
    app.stop().await;
}

#[tokio::test]
async fn tls_from_the_first_byte_reaches_a_relay_on_the_smtps_port() {
    let pki = TestPki::generate();
    let sink = Sink::start_secure(Security {
        tls: Some(&pki),
        implicit_tls: true,
        auth: Some(("steward", "relay-secret")),
    })
    .await;
    let mut config = secure_config(sink.port, Some(&pki.ca_file), "relay-secret");
    config.smtp.tls = steward::config::TlsMode::Tls;
    let app = spawn(config).await;
    // Two mails in a row: the second normally goes on the kept connection.
    for (i, to) in ["smtps-1@example.com", "smtps-2@example.com"]
        .into_iter()
        .enumerate()
    {
        enqueue(
            &app,
            vec![notification("user.status.activated", &[to], &[])],
        )
        .await;
        let got = sink.wait_for(i + 1, WAIT).await;
        assert!(got.iter().any(|m| m.to == [to]), "{got:#?}");
    }
    let got = sink.wait_for(2, WAIT).await;
    for m in &got {
        assert!(m.tls.starts_with("TLSv1."), "{:?}", m.tls);
        assert_eq!(m.login, "steward");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_untrusted_relay_or_a_refused_login_gets_no_mail_and_the_mail_waits() {
    let pki = TestPki::generate();
    let sink = starttls_relay(&pki).await;
    // Without the CA the relay's certificate is not trusted: nothing is
    // sent in clear text, and the mail is retried rather than failed.
    let one_mail_deferred = async |config, to: &str| {
        let app = spawn(config).await;
        let n = notification("user.status.activated", &[to], &[]);
        let user_id = n.subject_user_id.clone();
        enqueue(&app, vec![n]).await;
        let mail = deferred(&app, &user_id).await;
        app.stop().await;
        mail.last_error
    };
    let error = one_mail_deferred(
        secure_config(sink.port, None, "relay-secret"),
        "untrusted@example.com",
    )
    .await;
    assert!(
        error.contains("STARTTLS") && error.contains("certificate"),
        "{error}"
    );
    // A refused login is our configuration, not the message: deferred too.
    let error = one_mail_deferred(
        secure_config(sink.port, Some(&pki.ca_file), "wrong"),
        "login@example.com",
    )
    .await;
    assert!(error.contains("AUTH") && error.contains("535"), "{error}");
    assert_eq!(sink.count(), 0, "nothing reached the relay");
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_within_the_attempt() {
    let first = Sink::start().await;
    let port = first.port;
    let app = spawn(smtp_config(port)).await;
    let n = notification("user.status.suspended", &["kept-1@example.com"], &[]);
    let user_id = n.subject_user_id.clone();
    enqueue(&app, vec![n]).await;
    first.wait_for(1, WAIT).await;
    settled(&app, &user_id, 1).await;
    // The server goes away with the connection the pool kept, and comes
    // back on the same port.
    first.stop().await;
    let second = Sink::start_on(port, 2).await;
    enqueue(
        &app,
        vec![notification(
            "user.status.activated",
            &["kept-2@example.com"],
            &[],
        )],
    )
    .await;
    let got = second.wait_for(1, WAIT).await;
    assert_eq!(got[0].to, ["kept-2@example.com"]);
    let mails = settled(&app, &user_id, 2).await;
    assert!(
        mails
            .iter()
            .all(|m| m.status == pb::MailStatus::Sent as i32 && m.attempts == 1),
        "sent at the first attempt, the dead connection replaced: {mails:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_request_is_sent_once() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let n = notification("user.status.suspended", &["once@example.com"], &[]);
    let user_id = n.subject_user_id.clone();
    let first = enqueue(&app, vec![n.clone(), n.clone()]).await;
    assert_eq!((first.accepted, first.duplicates), (1, 1));
    let again = enqueue(&app, vec![n.clone()]).await;
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    sink.wait_for(1, WAIT).await;
    settled(&app, &user_id, 1).await;
    let third = enqueue(&app, vec![n]).await;
    assert_eq!(third.duplicates, 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.count(), 1);
    assert_eq!(mails(&app, &user_id).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn requests_are_validated_whole_and_refusals_change_nothing() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let good = notification("user.status.suspended", &["fine@example.com"], &[]);
    let user_id = good.subject_user_id.clone();
    let err = app
        .notification_ingest()
        .enqueue_notifications(pb::EnqueueNotificationsRequest {
            notifications: vec![
                good.clone(),
                notification("no.such.template", &["a@example.com"], &[]),
                notification(
                    "user.email.changed",
                    &["b@example.com"],
                    &[("old_email", "x@y.z")],
                ),
                notification("user.status.suspended", &["not an address"], &[]),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        ["notifications[3].recipients[0]"],
        "shape first"
    );
    let err = app
        .notification_ingest()
        .enqueue_notifications(pb::EnqueueNotificationsRequest {
            notifications: vec![
                good.clone(),
                notification("no.such.template", &["a@example.com"], &[]),
                notification(
                    "user.email.changed",
                    &["b@example.com"],
                    &[("old_email", "x@y.z")],
                ),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["notifications[1].template_id", "notifications[2].params"]
    );
    assert!(err.message().contains("new_email"), "{}", err.message());
    assert!(mails(&app, &user_id).await.is_empty());
    // The same good request alone is accepted: the refusal claimed nothing.
    assert_eq!(enqueue(&app, vec![good]).await.accepted, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_template_with_a_syntax_error_is_refused_with_its_line() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let broken = pb::Template {
        template_id: "promo.broken".into(),
        variables: vec!["offer".into()],
        contents: vec![pb::TemplateContent {
            locale: "en".into(),
            subject: "An offer".into(),
            text_body: "Hello,\nour offer: {{ offer }}\n{% if offer %}never closed\n".into(),
            html_body: String::new(),
        }],
        ..Default::default()
    };
    let err = app
        .notifications()
        .create_template(pb::CreateTemplateRequest {
            request_id: "tpl-1".into(),
            template: Some(broken.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["template.contents[0].text_body"]);
    assert!(err.message().contains("line 3"), "{}", err.message());
    assert!(err.message().contains("syntax error"), "{}", err.message());
    let missing = app
        .notifications()
        .get_template(pb::GetTemplateRequest {
            template_id: "promo.broken".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let preview = app
        .notifications()
        .preview_template(pb::PreviewTemplateRequest {
            source: Some(pb::preview_template_request::Source::Template(broken)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(preview.message.is_none());
    assert_eq!(preview.errors.len(), 1);
    assert_eq!(preview.errors[0].part, "text_body");
    assert_eq!(preview.errors[0].line, 3);

    // A refused creation is audited as FAILURE.
    let events = audit_actions(&app).await;
    let refused = events
        .iter()
        .find(|e| e.action == "notifications.template.created")
        .expect("the refusal is audited");
    assert_eq!(
        refused.result,
        steward_proto::common::Result::Failure as i32
    );
    app.stop().await;
}

#[tokio::test]
async fn an_html_template_escapes_a_users_name_with_markup() {
    let sink = Sink::start().await;
    let app = spawn(smtp_config(sink.port)).await;
    let created = app
        .notifications()
        .create_template(pb::CreateTemplateRequest {
            request_id: "tpl-html".into(),
            template: Some(pb::Template {
                template_id: "greeting.named".into(),
                description: "Greets the user by name".into(),
                variables: vec!["user_name".into()],
                contents: vec![pb::TemplateContent {
                    locale: "en".into(),
                    subject: "Hello {{ user_name }}".into(),
                    text_body: "Hello {{ user_name }}!".into(),
                    html_body: "<p>Hello <b>{{ user_name }}</b>!</p>".into(),
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("create template")
        .into_inner()
        .template
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.author_user_id, steward_integration_tests::ADMIN_ID);
    let name = "<script>alert('x')</script> & Eve";
    enqueue(
        &app,
        vec![notification(
            "greeting.named",
            &["eve@example.com"],
            &[("user_name", name)],
        )],
    )
    .await;
    let got = sink.wait_for(1, WAIT).await;
    let html = &got[0].html;
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains(
            "<p>Hello <b>&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; Eve</b>!</p>"
        ),
        "{html}"
    );
    assert_eq!(got[0].text.trim_end(), format!("Hello {name}!"));

    // An update writes version 2; version 1 stays readable.
    let updated = app
        .notifications()
        .update_template(pb::UpdateTemplateRequest {
            request_id: "tpl-html-2".into(),
            template: Some(pb::Template {
                template_id: "greeting.named".into(),
                description: "Greets the user by name, politely".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
        })
        .await
        .expect("update template")
        .into_inner()
        .template
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.contents.len(), 1);
    let v1 = app
        .notifications()
        .get_template(pb::GetTemplateRequest {
            template_id: "greeting.named".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!(v1.version, 1);
    app.stop().await;
}

#[tokio::test]
async fn without_an_smtp_server_mail_is_written_as_eml_files() {
    let dir = temp_dir("steward-mail");
    let mut config = steward::config::NotificationsConfig {
        mail_dir: Some(dir.clone()),
        ..Default::default()
    };
    config.delivery.poll_interval = Duration::from_millis(200);
    let app = spawn(config).await;
    let user = app.create_user("dev@example.com").await;
    app.admin()
        .batch_change_group(apb::BatchChangeGroupRequest {
            request_id: "grp-eml".into(),
            user_ids: vec![user.id.clone()],
            group: "billing".into(),
            notify: true,
            mail_template_id: "group.changed".into(),
        })
        .await
        .expect("change group");
    let mail = settled(&app, &user.id, 1).await.remove(0);
    assert_eq!(mail.status, pb::MailStatus::Sent as i32);
    assert_eq!(mail.transport, "file");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains("To: dev@example.com"), "{eml}");
    assert!(
        eml.contains("Subject: Your Steward account is now in the billing group"),
        "{eml}"
    );
    assert!(eml.contains("Content-Type: text/html"), "{eml}");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A group change naming a template notifications does not have is refused
/// before it commits (it would otherwise commit and its mail park in the
/// outbox): INVALID_ARGUMENT on `mail_template_id`, the group unchanged,
/// no mail request queued.
#[tokio::test]
async fn a_group_change_with_an_unknown_template_is_refused_and_changes_nothing() {
    let dir = temp_dir("steward-mail");
    let app = spawn(steward::config::NotificationsConfig {
        mail_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    let user = app.create_user("unknown-template@example.com").await;
    let err = app
        .admin()
        .batch_change_group(apb::BatchChangeGroupRequest {
            request_id: "grp-unknown-template".into(),
            user_ids: vec![user.id.clone()],
            group: "billing".into(),
            notify: true,
            mail_template_id: "group.no.such.template".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(violated_fields(&err), ["mail_template_id"]);
    let now = app
        .admin()
        .get_user(apb::GetUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("get user")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(now.group, user.group, "the group is unchanged");
    let queued: Vec<pb::Notification> =
        outbox_in(&app, steward_accounts::SCHEMA, "notifications").await;
    assert!(queued.is_empty(), "{queued:?}");
    // A template that exists goes through.
    app.admin()
        .batch_change_group(apb::BatchChangeGroupRequest {
            request_id: "grp-known-template".into(),
            user_ids: vec![user.id.clone()],
            group: "billing".into(),
            notify: true,
            mail_template_id: "group.changed".into(),
        })
        .await
        .expect("change group");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
