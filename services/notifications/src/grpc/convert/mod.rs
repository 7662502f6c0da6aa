//! proto <-> domain conversions: requests are decoded and validated here
//! (all violations at once), responses encoded.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use steward_kit::{FieldViolations, validate};
use steward_proto::notifications as pb;
use uuid::Uuid;

use crate::{
    domain::{
        Status, address,
        render::{Content, GLOBALS},
    },
    error::Error,
    mails::{commands::Request, store::Filter},
    templates::commands::{Changes, Draft},
};

mod encode;
pub use encode::*;

/// Requests in one EnqueueNotifications call.
pub const MAX_BATCH: usize = 500;
pub const MAX_RECIPIENTS: usize = 100;
pub const MAX_PARAMS: usize = 100;
pub const MAX_PARAM_VALUE: usize = 4096;
pub const MAX_CONTENTS: usize = 20;
pub const MAX_VARIABLES: usize = 50;
pub const MAX_SUBJECT: usize = 998;
pub const MAX_TEXT_BODY: usize = 64 * 1024;
pub const MAX_HTML_BODY: usize = 256 * 1024;

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn time_from(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single()
}

fn is_name(raw: &str, max: usize) -> bool {
    !raw.is_empty()
        && raw.len() <= max
        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn is_identifier(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_locale(raw: &str) -> bool {
    let mut parts = raw.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

pub fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id(field, raw, &mut v);
    v.check()?;
    Ok(id)
}

pub fn template_id(field: &str, raw: &str, v: &mut FieldViolations) {
    if !is_name(raw, 128) {
        v.add(
            field,
            "must be 1-128 characters: lower-case letters, digits, '.', '_' or '-'",
        );
    }
}

/// The requests of an EnqueueNotifications call, each checked on its own
/// (the command checks templates and variables).
pub fn requests(r: &pb::EnqueueNotificationsRequest) -> Result<Vec<Request>, Error> {
    let mut v = FieldViolations::new();
    if r.notifications.len() > MAX_BATCH {
        v.add(
            "notifications",
            format!("at most {MAX_BATCH} notifications a call"),
        );
        return Err(v.into());
    }
    let mut out = Vec::with_capacity(r.notifications.len());
    for (i, n) in r.notifications.iter().enumerate() {
        let f = |name: &str| format!("notifications[{i}].{name}");
        let event_id = validate::id(&f("event_id"), &n.event_id, &mut v);
        template_id(&f("template_id"), &n.template_id, &mut v);
        validate::short_text(&f("subject_user_id"), &n.subject_user_id, &mut v);
        validate::short_text(&f("source"), &n.source, &mut v);
        if n.recipients.is_empty() {
            v.add(f("recipients"), "at least one recipient");
        } else if n.recipients.len() > MAX_RECIPIENTS {
            v.add(
                f("recipients"),
                format!("at most {MAX_RECIPIENTS} recipients"),
            );
        }
        for (j, rcpt) in n.recipients.iter().enumerate().take(MAX_RECIPIENTS) {
            if let Err(why) = address::check(rcpt) {
                v.add(format!("notifications[{i}].recipients[{j}]"), why);
            }
        }
        if n.params.len() > MAX_PARAMS {
            v.add(f("params"), format!("at most {MAX_PARAMS} parameters"));
        }
        for (key, value) in &n.params {
            if !is_identifier(key) {
                v.add(
                    format!("notifications[{i}].params[{key:?}]"),
                    "keys are lower-case identifiers (letters, digits, '_')",
                );
            }
            let field = format!("notifications[{i}].params[{key:?}]");
            validate::notes_up_to(&field, value, MAX_PARAM_VALUE, &mut v);
            validate::no_nul(&field, value, &mut v);
        }
        out.push(Request {
            event_id,
            occurred_at: n
                .occurred_at
                .as_ref()
                .and_then(time_from)
                .unwrap_or_else(Utc::now),
            template_id: n.template_id.clone(),
            recipients: n.recipients.clone(),
            subject_user_id: n.subject_user_id.clone(),
            params: n
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            source: n.source.clone(),
        });
    }
    v.check()?;
    Ok(out)
}

fn category(field: &str, raw: &str, v: &mut FieldViolations) {
    if !raw.is_empty() && !is_name(raw, 64) {
        v.add(
            field,
            "must be at most 64 characters: lower-case letters, digits, '.', '_' or '-'",
        );
    }
}

fn locale(field: &str, raw: &str, v: &mut FieldViolations) {
    if !is_locale(raw) {
        v.add(field, "must be a locale such as en, de or pt-BR");
    }
}

fn variables(raw: &[String], v: &mut FieldViolations) -> Vec<String> {
    if raw.len() > MAX_VARIABLES {
        v.add(
            "template.variables",
            format!("at most {MAX_VARIABLES} variables"),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let field = format!("template.variables[{i}]");
        if !is_identifier(name) {
            v.add(
                field,
                "must be a lower-case identifier (letters, digits, '_')",
            );
        } else if GLOBALS.contains(&name.as_str()) {
            v.add(field, "is provided by the service; do not declare it");
        } else if out.contains(name) {
            v.add(field, "declared twice");
        } else {
            out.push(name.clone());
        }
    }
    out
}

fn text(field: &str, raw: &str, max: usize, required: bool, v: &mut FieldViolations) {
    if required && raw.trim().is_empty() {
        v.add(field, "required");
    }
    validate::notes_up_to(field, raw, max, v);
}

fn contents(raw: &[pb::TemplateContent], v: &mut FieldViolations) -> Vec<Content> {
    if raw.is_empty() {
        v.add("template.contents", "at least one locale's content");
    } else if raw.len() > MAX_CONTENTS {
        v.add(
            "template.contents",
            format!("at most {MAX_CONTENTS} locales"),
        );
    }
    let mut out: Vec<Content> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let f = |name: &str| format!("template.contents[{i}].{name}");
        locale(&f("locale"), &c.locale, v);
        if out.iter().any(|o| o.locale == c.locale) {
            v.add(f("locale"), "locale given twice");
        }
        text(&f("subject"), &c.subject, MAX_SUBJECT, true, v);
        text(&f("text_body"), &c.text_body, MAX_TEXT_BODY, true, v);
        text(&f("html_body"), &c.html_body, MAX_HTML_BODY, false, v);
        out.push(Content {
            locale: c.locale.clone(),
            subject: c.subject.clone(),
            text_body: c.text_body.clone(),
            html_body: c.html_body.clone(),
        });
    }
    out
}

/// A template to create or preview.
pub fn draft(t: Option<&pb::Template>) -> Result<Draft, Error> {
    let Some(t) = t else {
        return Err(Error::invalid("template", "required"));
    };
    let mut v = FieldViolations::new();
    template_id("template.template_id", &t.template_id, &mut v);
    category("template.category", &t.category, &mut v);
    validate::short_text("template.description", &t.description, &mut v);
    let default_locale = if t.default_locale.is_empty() {
        "en".to_owned()
    } else {
        t.default_locale.clone()
    };
    locale("template.default_locale", &default_locale, &mut v);
    let variables = variables(&t.variables, &mut v);
    let contents = contents(&t.contents, &mut v);
    v.check()?;
    Ok(Draft {
        template_id: t.template_id.clone(),
        category: t.category.clone(),
        description: t.description.clone(),
        default_locale,
        variables,
        contents,
    })
}

/// UpdateTemplate's id and masked changes (empty mask: every field).
pub fn changes(
    t: Option<&pb::Template>,
    mask: Option<&prost_types::FieldMask>,
) -> Result<(String, Changes), Error> {
    let Some(t) = t else {
        return Err(Error::invalid("template", "required"));
    };
    let mut v = FieldViolations::new();
    template_id("template.template_id", &t.template_id, &mut v);
    const MUTABLE: [&str; 5] = [
        "description",
        "category",
        "default_locale",
        "variables",
        "contents",
    ];
    let paths: Vec<String> = match mask {
        Some(m) if !m.paths.is_empty() => m.paths.clone(),
        _ => MUTABLE.iter().map(|p| p.to_string()).collect(),
    };
    let mut c = Changes::default();
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "description" => {
                validate::short_text("template.description", &t.description, &mut v);
                c.description = Some(t.description.clone());
            }
            "category" => {
                category("template.category", &t.category, &mut v);
                c.category = Some(t.category.clone());
            }
            "default_locale" => {
                locale("template.default_locale", &t.default_locale, &mut v);
                c.default_locale = Some(t.default_locale.clone());
            }
            "variables" => c.variables = Some(variables(&t.variables, &mut v)),
            "contents" => c.contents = Some(contents(&t.contents, &mut v)),
            _ => v.add(
                format!("update_mask.paths[{i}]"),
                format!("not updatable; one of {}", MUTABLE.join(", ")),
            ),
        }
    }
    v.check()?;
    Ok((t.template_id.clone(), c))
}

pub fn preview_values(
    raw: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut v = FieldViolations::new();
    if raw.len() > MAX_PARAMS {
        v.add("variables", format!("at most {MAX_PARAMS} variables"));
    }
    for (key, value) in raw {
        let field = format!("variables[{key:?}]");
        validate::notes_up_to(&field, value, MAX_PARAM_VALUE, &mut v);
        validate::no_nul(&field, value, &mut v);
    }
    v.check()?;
    Ok(raw.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub fn status(s: Status) -> pb::MailStatus {
    match s {
        Status::Queued => pb::MailStatus::Queued,
        Status::Sending => pb::MailStatus::Sending,
        Status::Sent => pb::MailStatus::Sent,
        Status::Deferred => pb::MailStatus::Deferred,
        Status::Failed => pb::MailStatus::Failed,
        Status::Suppressed => pb::MailStatus::Suppressed,
    }
}

fn status_from(raw: i32) -> Option<Status> {
    Some(match pb::MailStatus::try_from(raw).ok()? {
        pb::MailStatus::Unspecified => return None,
        pb::MailStatus::Queued => Status::Queued,
        pb::MailStatus::Sending => Status::Sending,
        pb::MailStatus::Sent => Status::Sent,
        pb::MailStatus::Deferred => Status::Deferred,
        pb::MailStatus::Failed => Status::Failed,
        pb::MailStatus::Suppressed => Status::Suppressed,
    })
}

pub(super) fn status_name(raw: &str) -> i32 {
    Status::parse(raw).map_or(pb::MailStatus::Unspecified, status) as i32
}

pub fn filter(r: &pb::ListNotificationsRequest) -> Result<Filter, Error> {
    let mut v = FieldViolations::new();
    let user_id = if r.user_id.is_empty() {
        None
    } else {
        validate::short_text("user_id", &r.user_id, &mut v);
        Some(r.user_id.clone())
    };
    let mut statuses = Vec::new();
    for (i, raw) in r.statuses.iter().enumerate() {
        match status_from(*raw) {
            Some(s) => statuses.push(s),
            None => v.add(format!("statuses[{i}]"), "unknown status"),
        }
    }
    let start = r.start_time.as_ref().and_then(time_from);
    let end = r.end_time.as_ref().and_then(time_from);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        v.add("start_time", "must be before end_time");
    }
    v.check()?;
    Ok(Filter {
        user_id,
        statuses,
        start,
        end,
    })
}

pub fn address_field(field: &str, raw: &str) -> Result<(), Error> {
    let mut v = FieldViolations::new();
    if raw.is_empty() {
        v.add(field, "required");
    } else {
        validate::short_text(field, raw, &mut v);
    }
    v.check()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_locales_identifiers() {
        assert!(is_name("group.billing.welcome", 128));
        assert!(!is_name("Group", 128));
        assert!(!is_name(".x", 128));
        assert!(is_locale("en") && is_locale("pt-BR") && is_locale("de_AT"));
        assert!(!is_locale("english") && !is_locale("EN"));
        assert!(is_identifier("old_group") && !is_identifier("old-group"));
    }

    #[test]
    fn requests_report_every_problem() {
        let r = pb::EnqueueNotificationsRequest {
            notifications: vec![pb::Notification {
                event_id: "nope".into(),
                template_id: "user.email.changed".into(),
                recipients: vec!["ok@example.com".into(), "broken".into()],
                ..Default::default()
            }],
        };
        let Err(Error::Invalid(v)) = requests(&r) else {
            panic!("refused")
        };
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            [
                "notifications[0].event_id",
                "notifications[0].recipients[1]"
            ]
        );
    }
}
