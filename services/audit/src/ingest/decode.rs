//! An `AuditEvent` as it arrives (the contract every service builds with
//! kit's `AuditRecord`) into the domain [`Event`], with its violations.
//!
//! The event is first made to fit the contract (`conform`: control
//! characters escaped, over-long texts cut with a marker), so an event of a
//! committed change is never refused for its content; only its structure
//! (id, time, a known action, category, result, duration) is validated.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use steward_kit::{FieldViolations, outbox::contract::conform};
use steward_proto::{audit as pb, common};
use uuid::Uuid;

use crate::domain::{
    event::Event,
    is_pii_key,
    validate::{self, MAX_NAME},
};

/// Truncated to microseconds: what PostgreSQL stores, so hashes recompute.
pub fn time_from(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let micros = t
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(t.nanos) / 1000)?;
    Utc.timestamp_micros(micros).single()
}

/// Validates the `i`-th event of a batch; violations name `events[i].field`.
pub fn event(
    i: usize,
    mut e: pb::AuditEvent,
    known: &HashSet<(String, String)>,
    now: DateTime<Utc>,
    v: &mut FieldViolations,
) -> Option<Event> {
    conform(&mut e);
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
    let mut comments = BTreeMap::new();
    let mut pii_comments = BTreeMap::new();
    for (key, value) in e.comments {
        let target = if is_pii_key(&key) {
            &mut pii_comments
        } else {
            &mut comments
        };
        target.insert(key, value);
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
        product: e.product,
        action: e.action,
        category: e.category as i16,
        actor_user_id: e.actor_user_id,
        subject_user_id: e.subject_user_id,
        modified_user_id: e.modified_user_id,
        impersonator_user_id: e.impersonator_user_id,
        impersonation_session_id: e.impersonation_session_id,
        token_id: e.token_id,
        project: e.project,
        comments,
        pii_comments,
        client_ip: e.client_ip,
        user_agent: e.user_agent,
        result: e.result as i16,
        error_message: e.error_message,
        duration_us,
        request_id: e.request_id,
        trace_id: e.trace_id,
        source: e.source,
    })
}
