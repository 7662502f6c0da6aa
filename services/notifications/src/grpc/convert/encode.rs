//! Responses: domain -> proto.

use steward_proto::notifications as pb;

use super::{status_name, timestamp};
use crate::{
    domain::render::{Rendered, TemplateError},
    mails::store::{Event, Mail},
    suppressions::store::Suppression,
    templates::commands::Template,
};

pub fn template(t: &Template) -> pb::Template {
    pb::Template {
        template_id: t.header.template_id.clone(),
        category: t.header.category.clone(),
        description: t.header.description.clone(),
        version: t.version,
        default_locale: t.header.default_locale.clone(),
        variables: t.header.variables.clone(),
        contents: t
            .contents
            .iter()
            .map(|c| pb::TemplateContent {
                locale: c.locale.clone(),
                subject: c.subject.clone(),
                text_body: c.text_body.clone(),
                html_body: c.html_body.clone(),
            })
            .collect(),
        built_in: t.header.built_in,
        create_time: Some(timestamp(t.header.create_time)),
        update_time: Some(timestamp(t.header.update_time)),
        author_user_id: t.author_user_id.clone(),
    }
}

pub fn rendered(r: &Rendered) -> pb::RenderedMessage {
    pb::RenderedMessage {
        subject: r.subject.clone(),
        text_body: r.text_body.clone(),
        html_body: r.html_body.clone(),
        locale: r.locale.clone(),
    }
}

pub fn template_error(e: &TemplateError) -> pb::TemplateError {
    pb::TemplateError {
        locale: e.locale.clone(),
        part: e.part.to_owned(),
        line: e.line as i32,
        message: e.message.clone(),
    }
}

pub fn mail(m: &Mail) -> pb::Mail {
    pb::Mail {
        mail_id: m.id.to_string(),
        notification_id: m.notification_id.to_string(),
        subject_user_id: m.subject_user_id.clone(),
        recipient: m.recipient.clone(),
        template_id: m.template_id.clone(),
        template_version: m.template_version,
        locale: m.locale.clone(),
        status: status_name(&m.status),
        attempts: m.attempts,
        last_error: m.last_error.clone(),
        next_attempt_time: m.next_attempt_at.map(timestamp),
        transport: m.transport.clone(),
        create_time: Some(timestamp(m.create_time)),
        update_time: Some(timestamp(m.update_time)),
        sent_time: m.sent_time.map(timestamp),
        source: m.source.clone(),
        resent_from_mail_id: m.resent_from.map(|id| id.to_string()).unwrap_or_default(),
        subject: m.subject.clone(),
    }
}

pub fn history(events: &[Event]) -> Vec<pb::StatusChange> {
    events
        .iter()
        .map(|e| pb::StatusChange {
            status: status_name(&e.status),
            time: Some(timestamp(e.at)),
            detail: e.detail.clone(),
        })
        .collect()
}

pub fn suppression(s: &Suppression) -> pb::Suppression {
    pb::Suppression {
        address: s.address.clone(),
        reason: s.reason.clone(),
        mail_id: s.mail_id.map(|id| id.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(s.create_time)),
    }
}
