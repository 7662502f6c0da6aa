//! Mail use cases: ingest, the admin view, resending.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use steward_kit::{FieldViolations, Tx};
use steward_proto::audit::Category;
use uuid::Uuid;

use super::store::{self, Body, Event, Filter, Mail, NewMail};
use crate::{
    domain::{Status, address, render},
    error::{self, Error},
    suppressions,
    templates::commands::{self as templates, Template},
};

/// A notification request, its shape validated (addresses, sizes, ids).
#[derive(Debug, Clone)]
pub struct Request {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub template_id: String,
    pub recipients: Vec<String>,
    pub subject_user_id: String,
    pub params: BTreeMap<String, String>,
    pub source: String,
}

/// What the service adds to every template's variables.
#[derive(Debug, Clone)]
pub struct Globals {
    pub dashboard_url: String,
    pub product_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Requests queued now.
    pub accepted: usize,
    /// Requests seen before (or twice in the batch): nothing queued.
    pub duplicates: usize,
    /// Mails queued for sending (suppressed addresses excluded).
    pub queued: usize,
}

/// The variables a mail to `recipient` is rendered with.
fn values(r: &Request, recipient: &str, globals: &Globals) -> BTreeMap<String, String> {
    let mut v = r.params.clone();
    v.entry("dashboard_url".into())
        .or_insert_with(|| globals.dashboard_url.clone());
    v.entry("product_name".into())
        .or_insert_with(|| globals.product_name.clone());
    v.insert("recipient".into(), recipient.to_owned());
    v.insert("subject_user_id".into(), r.subject_user_id.clone());
    v
}

/// Renders one request for each recipient, or says what is wrong with it.
fn render_request(
    i: usize,
    r: &Request,
    t: &Template,
    globals: &Globals,
    v: &mut FieldViolations,
) -> Vec<NewMail> {
    let missing: Vec<&str> = t
        .header
        .variables
        .iter()
        .filter(|name| !r.params.contains_key(*name))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        v.add(
            format!("notifications[{i}].params"),
            format!(
                "template {} needs variables: {}",
                t.header.template_id,
                missing.join(", ")
            ),
        );
        return Vec::new();
    }
    let requested = r.params.get("locale").map(String::as_str).unwrap_or("");
    let Some(content) = render::choose(&t.contents, requested, &t.header.default_locale) else {
        v.add(
            format!("notifications[{i}].template_id"),
            "the template has no content",
        );
        return Vec::new();
    };
    let mut mails = Vec::new();
    for recipient in &r.recipients {
        let mut vars = values(r, recipient, globals);
        vars.insert("locale".into(), content.locale.clone());
        match render::render(content, &vars) {
            Ok(out) => mails.push(NewMail {
                id: Uuid::now_v7(),
                notification_id: r.event_id,
                source: r.source.clone(),
                subject_user_id: r.subject_user_id.clone(),
                recipient: recipient.clone(),
                template_id: t.header.template_id.clone(),
                template_version: t.version,
                locale: out.locale,
                subject: out.subject,
                text_body: out.text_body,
                html_body: out.html_body,
                status: Status::Queued,
                occurred_at: r.occurred_at,
                resent_from: None,
                detail: format!("from {}", r.source),
            }),
            Err(e) => {
                v.add(
                    format!("notifications[{i}].params"),
                    format!("template {} does not render: {e}", t.header.template_id),
                );
                break;
            }
        }
    }
    mails
}

/// Queues the requests not seen before: validated whole (templates exist,
/// variables present, each mail renders) and refused whole; a request seen
/// before is acknowledged as a duplicate. Mail to a suppressed address is
/// stored SUPPRESSED (and audited) instead of queued.
pub async fn ingest(
    tx: &mut Tx<'_>,
    requests: Vec<Request>,
    globals: &Globals,
) -> Result<Ingested, Error> {
    // The batch itself is not an audited action; its suppressed mails are.
    tx.only_extra();
    let total = requests.len();
    let ids: Vec<Uuid> = requests.iter().map(|r| r.event_id).collect();
    let known = store::known_requests(tx.conn, &ids).await?;
    let mut seen = HashSet::new();
    let fresh: Vec<(usize, Request)> = requests
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !known.contains(&r.event_id) && seen.insert(r.event_id))
        .collect();
    let mut found: HashMap<String, Option<Template>> = HashMap::new();
    let mut v = FieldViolations::new();
    let mut mails = Vec::new();
    for (i, r) in &fresh {
        if !found.contains_key(&r.template_id) {
            let t = match templates::get(tx.conn, &r.template_id, None).await {
                Ok(t) => Some(t),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            found.insert(r.template_id.clone(), t);
        }
        match &found[&r.template_id] {
            None => v.add(
                format!("notifications[{i}].template_id"),
                format!("no template {}", r.template_id),
            ),
            Some(t) => mails.extend(render_request(*i, r, t, globals, &mut v)),
        }
    }
    v.check()?;
    let fresh_ids: Vec<Uuid> = fresh.iter().map(|(_, r)| r.event_id).collect();
    let sources: Vec<String> = fresh.iter().map(|(_, r)| r.source.clone()).collect();
    let claimed = store::claim_requests(tx.conn, &fresh_ids, &sources).await?;
    mails.retain(|m| claimed.contains(&m.notification_id));
    let addresses: Vec<String> = mails
        .iter()
        .map(|m| address::normalize(&m.recipient))
        .collect();
    let suppressed = suppressions::store::suppressed(tx.conn, &addresses).await?;
    let mut queued = 0;
    for m in &mut mails {
        if suppressed.contains(&address::normalize(&m.recipient)) {
            m.status = Status::Suppressed;
            m.detail = "the address is suppressed".into();
            let record = tx
                .record()
                .clone()
                .action("notifications.mail.suppressed")
                .subject(&m.subject_user_id)
                .category(Category::System)
                .comment("mail_id", m.id.to_string())
                .comment("template_id", m.template_id.clone())
                .comment("email", m.recipient.clone())
                .failed("the address is suppressed after a hard bounce");
            tx.audit(record);
        } else {
            queued += 1;
        }
    }
    store::insert(tx.conn, &mails).await?;
    Ok(Ingested {
        accepted: claimed.len(),
        duplicates: total - claimed.len(),
        queued,
    })
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Mail>, Error> {
    Ok(store::list(conn, filter, after, limit).await?)
}

/// A mail with its bodies and history.
pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<(Mail, Body, Vec<Event>), Error> {
    let (mail, body) = store::get(conn, id)
        .await?
        .ok_or_else(|| error::mail_not_found(id))?;
    let history = store::history(conn, id).await?;
    Ok((mail, body, history))
}

/// Queues the same rendered message again as a new mail.
pub async fn resend(tx: &mut Tx<'_>, id: Uuid) -> Result<Mail, Error> {
    let (mail, body) = store::get(tx.conn, id)
        .await?
        .ok_or_else(|| error::mail_not_found(id))?;
    tx.note(|r| {
        r.subject(&mail.subject_user_id)
            .comment("resent_from", id.to_string())
            .comment("template_id", mail.template_id.clone())
    });
    let normalized = address::normalize(&mail.recipient);
    if !suppressions::store::suppressed(tx.conn, std::slice::from_ref(&normalized))
        .await?
        .is_empty()
    {
        return Err(error::address_suppressed(&mail.recipient));
    }
    let new_id = Uuid::now_v7();
    store::insert(
        tx.conn,
        &[NewMail {
            id: new_id,
            notification_id: mail.notification_id,
            source: mail.source.clone(),
            subject_user_id: mail.subject_user_id.clone(),
            recipient: mail.recipient.clone(),
            template_id: mail.template_id.clone(),
            template_version: mail.template_version,
            locale: mail.locale.clone(),
            subject: mail.subject.clone(),
            text_body: body.text_body,
            html_body: body.html_body,
            status: Status::Queued,
            occurred_at: Utc::now(),
            resent_from: Some(id),
            detail: format!("resend of {id}"),
        }],
    )
    .await?;
    tx.note(|r| r.comment("mail_id", new_id.to_string()));
    let (new, _) = store::get(tx.conn, new_id)
        .await?
        .ok_or_else(|| error::mail_not_found(new_id))?;
    Ok(new)
}
