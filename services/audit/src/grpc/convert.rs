//! proto <-> domain conversions: requests decoded (with their field
//! violations), results encoded.

use chrono::{DateTime, NaiveDate, Utc};
use steward_kit::FieldViolations;
use steward_proto::{audit as pb, common};
use uuid::Uuid;

use crate::{
    catalog::Registration,
    chain::{Outcome, checkpoint::Checkpoint},
    domain::event::{Event, StoredEvent},
    error::Error,
    events::{self, ActivityQuery, MAX_ACTIONS},
    export::Format,
    ingest::decode::time_from,
    store::{
        catalog::Product,
        events::{Cursor, Filter},
        retention::Policy,
        rollup::{self, Activity},
    },
};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
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

fn optional(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The store filter of a request, with the documented time defaults.
pub fn filter_from(f: Option<pb::EventFilter>) -> Result<Filter, Error> {
    let f = f.unwrap_or_default();
    let mut v = FieldViolations::new();
    let end = f.end_time.as_ref().map(|t| {
        time_from(t).unwrap_or_else(|| {
            v.add("filter.end_time", "out of range");
            Utc::now()
        })
    });
    let start = f.start_time.as_ref().map(|t| {
        let parsed = time_from(t);
        if parsed.is_none() {
            v.add("filter.start_time", "out of range");
        }
        // Unparsable: no range check of its own (the violation says it).
        parsed.or(end).unwrap_or_else(Utc::now)
    });
    let (start, end) = events::window(start, end, "filter.", &mut v);
    let category = match pb::Category::try_from(f.category) {
        Ok(pb::Category::Unspecified) => None,
        Ok(c) => Some(c as i16),
        Err(_) => {
            v.add("filter.category", "unknown category");
            None
        }
    };
    let result = match common::Result::try_from(f.result) {
        Ok(common::Result::Unspecified) => None,
        Ok(r) => Some(r as i16),
        Err(_) => {
            v.add("filter.result", "unknown result");
            None
        }
    };
    if f.actions.len() > MAX_ACTIONS {
        v.add("filter.actions", format!("at most {MAX_ACTIONS} actions"));
    }
    v.check()?;
    let mut actions = f.actions.clone();
    actions.sort();
    actions.dedup();
    Ok(Filter {
        subject_user_id: optional(&f.subject_user_id),
        actor_user_id: optional(&f.actor_user_id),
        modified_user_id: optional(&f.modified_user_id),
        impersonator_user_id: optional(&f.impersonator_user_id),
        impersonation_session_id: optional(&f.impersonation_session_id),
        token_id: optional(&f.token_id),
        project: optional(&f.project),
        product: optional(&f.product),
        actions,
        category,
        result,
        client_ip: optional(&f.client_ip),
        start,
        end,
    })
}

/// The keyset position after `s`, carrying the first page's window.
pub fn cursor(s: &StoredEvent, filter: &Filter) -> Cursor {
    Cursor {
        occurred_at: s.event.occurred_at,
        seq: s.seq,
        start: filter.start,
        end: filter.end,
    }
}

pub fn event_id(raw: &str) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    let id = steward_kit::validate::id("event_id", raw, &mut v);
    v.check()?;
    Ok(id)
}

fn parse_date(field: &str, raw: &str, v: &mut FieldViolations) -> NaiveDate {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap_or_else(|_| {
        v.add(field, "a date such as 2026-11-22");
        NaiveDate::MIN
    })
}

pub fn activity_query(r: &pb::GetActivityHistoryRequest) -> Result<ActivityQuery, Error> {
    let mut v = FieldViolations::new();
    let start = parse_date("start_date", &r.start_date, &mut v);
    let end = parse_date("end_date", &r.end_date, &mut v);
    let dates_ok = v.is_empty();
    let order = match pb::ActivityOrder::try_from(r.order_by) {
        Ok(pb::ActivityOrder::ActionsDesc) => rollup::Order::ActionsDesc,
        Ok(_) => rollup::Order::UserId,
        Err(_) => rollup::Order::UserId,
    };
    let query = ActivityQuery {
        start: if dates_ok { start } else { NaiveDate::MIN },
        end: if dates_ok { end } else { NaiveDate::MIN },
        user_ids: r.user_ids.clone(),
        order,
    };
    query.check(&mut v);
    if pb::ActivityOrder::try_from(r.order_by).is_err() {
        v.add("order_by", "unknown order");
    }
    v.check()?;
    Ok(ActivityQuery {
        start,
        end,
        ..query
    })
}

pub fn activity(a: Activity) -> pb::UserActivity {
    pb::UserActivity {
        user_id: a.user_id,
        actions_count: a.actions,
    }
}

pub fn export_format(raw: i32) -> Result<Format, Error> {
    match pb::ExportFormat::try_from(raw) {
        Ok(pb::ExportFormat::Csv) => Ok(Format::Csv),
        Ok(_) => Ok(Format::Xlsx),
        Err(_) => Err(Error::invalid("format", "unknown format")),
    }
}

pub fn registration(r: pb::RegisterActionTypesRequest) -> Registration {
    Registration {
        product: r.product,
        title: r.title,
        actions: r
            .action_types
            .into_iter()
            .map(|a| (a.action, a.title))
            .collect(),
    }
}

pub fn product(p: Product) -> pb::ProductActionTypes {
    pb::ProductActionTypes {
        product: p.product,
        title: p.title,
        action_types: p
            .actions
            .into_iter()
            .map(|(action, title)| pb::ActionType { action, title })
            .collect(),
    }
}

/// `None` for a value outside the enum.
pub fn category(raw: i32) -> Option<i16> {
    pb::Category::try_from(raw).ok().map(|c| c as i16)
}

pub fn policy(p: &Policy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        product: p.product.clone(),
        category: i32::from(p.category),
        retention_days: p.days,
    }
}

pub fn verified(outcome: Outcome) -> pb::VerifyChainResponse {
    pb::VerifyChainResponse {
        ok: outcome.broken.is_none(),
        first_broken_sequence: outcome.broken.as_ref().map(|b| b.0).unwrap_or(0),
        events_checked: outcome.checked,
        reason: outcome.broken.map(|b| b.1).unwrap_or_default(),
    }
}

pub fn checkpoint(c: &Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        sequence: c.sequence,
        hash: c.hash.clone(),
        issue_time: Some(timestamp(c.issued_at)),
        signature: c.signature.clone(),
        json: c.to_json(),
    }
}
