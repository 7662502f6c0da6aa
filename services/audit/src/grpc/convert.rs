//! proto <-> domain conversions and the validation of ingested events.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use steward_kit::FieldViolations;
use steward_proto::{audit as pb, common};
use uuid::Uuid;

use crate::domain::{
    event::{Event, StoredEvent},
    is_pii_key,
    validate::{
        self, MAX_COMMENT_KEY, MAX_COMMENT_VALUE, MAX_COMMENTS, MAX_ERROR, MAX_ID, MAX_NAME,
        MAX_USER_AGENT,
    },
};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Truncated to microseconds: what PostgreSQL stores, so hashes recompute.
pub fn time_from(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let micros = t
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(t.nanos) / 1000)?;
    Utc.timestamp_micros(micros).single()
}

/// Validates the `i`-th event of a batch; violations name `events[i].field`.
pub fn event_from(
    i: usize,
    e: &pb::AuditEvent,
    known: &HashSet<(String, String)>,
    now: DateTime<Utc>,
    v: &mut FieldViolations,
) -> Option<Event> {
    let f = |name: &str| format!("events[{i}].{name}");
    let before = v.clone();
    let event_id = Uuid::parse_str(&e.event_id).ok();
    if event_id.is_none() {
        v.add(f("event_id"), "must be a UUID");
    }
    let occurred_at = e.occurred_at.as_ref().and_then(time_from);
    match occurred_at {
        Some(at) => validate::occurred_at(v, &f("occurred_at"), at, now),
        None => v.add(f("occurred_at"), "required"),
    }
    validate::required(v, &f("product"), &e.product, MAX_NAME);
    validate::action_name(v, &f("action"), &e.action);
    if !e.product.is_empty()
        && !e.action.is_empty()
        && !known.contains(&(e.product.clone(), e.action.clone()))
    {
        v.add(
            f("action"),
            format!("unknown action {} of product {}", e.action, e.product),
        );
    }
    if !matches!(
        pb::Category::try_from(e.category),
        Ok(pb::Category::Public | pb::Category::System | pb::Category::Admin)
    ) {
        v.add(f("category"), "must be PUBLIC, SYSTEM or ADMIN");
    }
    if !matches!(
        common::Result::try_from(e.result),
        Ok(common::Result::Success | common::Result::Failure | common::Result::InProgress)
    ) {
        v.add(f("result"), "must be SUCCESS, FAILURE or IN_PROGRESS");
    }
    for (name, value) in [
        ("actor_user_id", &e.actor_user_id),
        ("subject_user_id", &e.subject_user_id),
        ("modified_user_id", &e.modified_user_id),
        ("impersonator_user_id", &e.impersonator_user_id),
        ("impersonation_session_id", &e.impersonation_session_id),
        ("token_id", &e.token_id),
        ("project", &e.project),
        ("client_ip", &e.client_ip),
        ("request_id", &e.request_id),
        ("trace_id", &e.trace_id),
        ("source", &e.source),
    ] {
        validate::text(v, &f(name), value, MAX_ID);
    }
    validate::text(v, &f("user_agent"), &e.user_agent, MAX_USER_AGENT);
    validate::text(v, &f("error_message"), &e.error_message, MAX_ERROR);
    if e.comments.len() > MAX_COMMENTS {
        v.add(f("comments"), format!("at most {MAX_COMMENTS} entries"));
    }
    let mut comments = BTreeMap::new();
    let mut pii_comments = BTreeMap::new();
    for (key, value) in &e.comments {
        if key.is_empty() || key.len() > MAX_COMMENT_KEY || key.chars().any(char::is_control) {
            v.add(
                f("comments"),
                format!("keys are 1-{MAX_COMMENT_KEY} bytes without control characters"),
            );
        }
        validate::text(v, &f(&format!("comments.{key}")), value, MAX_COMMENT_VALUE);
        let target = if is_pii_key(key) {
            &mut pii_comments
        } else {
            &mut comments
        };
        target.insert(key.clone(), value.clone());
    }
    let duration_us = e
        .duration
        .as_ref()
        .map(|d| {
            d.seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(d.nanos) / 1000)
        })
        .unwrap_or(0);
    if duration_us < 0 {
        v.add(f("duration"), "must not be negative");
    }
    if *v != before {
        return None;
    }
    Some(Event {
        event_id: event_id?,
        occurred_at: occurred_at?,
        product: e.product.clone(),
        action: e.action.clone(),
        category: e.category as i16,
        actor_user_id: e.actor_user_id.clone(),
        subject_user_id: e.subject_user_id.clone(),
        modified_user_id: e.modified_user_id.clone(),
        impersonator_user_id: e.impersonator_user_id.clone(),
        impersonation_session_id: e.impersonation_session_id.clone(),
        token_id: e.token_id.clone(),
        project: e.project.clone(),
        comments,
        pii_comments,
        client_ip: e.client_ip.clone(),
        user_agent: e.user_agent.clone(),
        result: e.result as i16,
        error_message: e.error_message.clone(),
        duration_us,
        request_id: e.request_id.clone(),
        trace_id: e.trace_id.clone(),
        source: e.source.clone(),
    })
}

pub fn event(e: &Event) -> pb::AuditEvent {
    let mut comments: std::collections::HashMap<String, String> = e
        .comments
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    comments.extend(e.pii_comments.iter().map(|(k, v)| (k.clone(), v.clone())));
    pb::AuditEvent {
        event_id: e.event_id.to_string(),
        occurred_at: Some(timestamp(e.occurred_at)),
        product: e.product.clone(),
        action: e.action.clone(),
        category: i32::from(e.category),
        actor_user_id: e.actor_user_id.clone(),
        subject_user_id: e.subject_user_id.clone(),
        modified_user_id: e.modified_user_id.clone(),
        impersonator_user_id: e.impersonator_user_id.clone(),
        impersonation_session_id: e.impersonation_session_id.clone(),
        token_id: e.token_id.clone(),
        project: e.project.clone(),
        comments,
        client_ip: e.client_ip.clone(),
        user_agent: e.user_agent.clone(),
        result: i32::from(e.result),
        error_message: e.error_message.clone(),
        duration: Some(prost_types::Duration {
            seconds: e.duration_us / 1_000_000,
            nanos: ((e.duration_us % 1_000_000) * 1000) as i32,
        }),
        request_id: e.request_id.clone(),
        trace_id: e.trace_id.clone(),
        source: e.source.clone(),
    }
}

pub fn stored(s: &StoredEvent) -> pb::StoredEvent {
    pb::StoredEvent {
        sequence: s.seq,
        event: Some(event(&s.event)),
        received_at: Some(timestamp(s.received_at)),
        personal_data_erased: s.pii_erased,
        hash: hex::encode(&s.hash),
    }
}
