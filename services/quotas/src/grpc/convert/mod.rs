//! proto <-> domain conversions: requests are decoded and validated here
//! (all violations at once, against the catalog for keys and types),
//! responses encoded.

use std::collections::HashSet;

use steward_kit::{FieldViolations, validate};
use steward_proto::quotas as pb;
use uuid::Uuid;

use crate::{
    cache::Catalog,
    domain::{self, Definition, QuotaType, Value},
    error::Error,
    groups::commands::GroupEdit,
    membership::commands::{Event, EventKind},
    users::commands::{UserEdit, UserReset},
};

mod encode;
pub use encode::*;

const MAX_USERS: usize = 1000;
const MAX_SETTINGS: usize = 100;
const MAX_DEFINITIONS: usize = 200;
const MAX_REASON: usize = 1024;
const MAX_EVENTS: usize = 5000;

fn quota_type_from(raw: i32) -> Option<QuotaType> {
    Some(match pb::QuotaType::try_from(raw).ok()? {
        pb::QuotaType::Unspecified => return None,
        pb::QuotaType::Flag => QuotaType::Flag,
        pb::QuotaType::Count => QuotaType::Count,
        pb::QuotaType::Money => QuotaType::Money,
        pb::QuotaType::Days => QuotaType::Days,
        pb::QuotaType::Gigabytes => QuotaType::Gigabytes,
        pb::QuotaType::Megabits => QuotaType::Megabits,
        pb::QuotaType::Enum => QuotaType::Enum,
    })
}

/// A value of `def`'s type; unlimited where the type has it.
fn setting_value(
    field: &str,
    def: &Definition,
    raw: Option<&pb::QuotaValue>,
    v: &mut FieldViolations,
) -> Option<Value> {
    match raw.and_then(|r| r.kind.as_ref()) {
        None => {
            v.add(field, "required: a value or unlimited");
            None
        }
        Some(pb::quota_value::Kind::Unlimited(false)) => {
            v.add(field, "unlimited must be true when set");
            None
        }
        Some(pb::quota_value::Kind::Unlimited(true)) => {
            if def.kind.may_be_unlimited() {
                Some(Value::Unlimited)
            } else {
                v.add(
                    field,
                    format!("a {} quota cannot be unlimited", def.kind.as_str()),
                );
                None
            }
        }
        Some(pb::quota_value::Kind::Value(text)) => {
            match domain::parse(def.kind, text, &def.allowed) {
                Ok(value) => Some(value),
                Err(message) => {
                    v.add(field, message);
                    None
                }
            }
        }
    }
}

/// Settings against the catalog: known keys, each once, values of the
/// key's type.
fn settings(
    catalog: &Catalog,
    raw: &[pb::QuotaSetting],
    v: &mut FieldViolations,
) -> Vec<(String, Value)> {
    if raw.is_empty() || raw.len() > MAX_SETTINGS {
        v.add("settings", format!("1 to {MAX_SETTINGS} settings"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let Some((_, def)) = catalog.definition(&s.key) else {
            v.add(format!("settings[{i}].key"), "unknown quota key");
            continue;
        };
        if !seen.insert(s.key.as_str()) {
            v.add(format!("settings[{i}].key"), "repeated in this request");
        }
        if let Some(value) =
            setting_value(&format!("settings[{i}].value"), def, s.value.as_ref(), v)
        {
            out.push((s.key.clone(), value));
        }
    }
    out
}

fn reason(raw: &str, v: &mut FieldViolations) -> String {
    if raw.trim().is_empty() {
        v.add("reason", "required: why the quota changes");
    } else {
        validate::notes_up_to("reason", raw, MAX_REASON, v);
    }
    raw.to_owned()
}

pub fn group(field: &str, raw: &str, v: &mut FieldViolations) -> String {
    if !domain::valid_group(raw) {
        v.add(
            field,
            "a group name: 1-64 lowercase letters, digits, - or _",
        );
    }
    raw.to_owned()
}

fn user_ids(raw: &[String], v: &mut FieldViolations) -> Vec<Uuid> {
    if raw.is_empty() || raw.len() > MAX_USERS {
        v.add("user_ids", format!("1 to {MAX_USERS} users"));
    }
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let field = format!("user_ids[{i}]");
            let id = validate::id(&field, s, v);
            if !seen.insert(id) {
                v.add(field, "repeated in this request");
                return None;
            }
            Some(id)
        })
        .collect()
}

pub fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id(field, raw, &mut v);
    v.check()?;
    Ok(id)
}

fn key_filter(raw: &str, v: &mut FieldViolations) -> String {
    validate::short_text("key_contains", raw, v);
    validate::no_nul("key_contains", raw, v);
    raw.to_lowercase()
}

pub fn key_contains(raw: &str) -> Result<String, Error> {
    let mut v = FieldViolations::new();
    let filter = key_filter(raw, &mut v);
    v.check()?;
    Ok(filter)
}

pub fn group_edit(catalog: &Catalog, r: &pb::SetGroupQuotasRequest) -> Result<GroupEdit, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, false, &mut v);
    let group = group("group", &r.group, &mut v);
    let settings = settings(catalog, &r.settings, &mut v);
    let reason = reason(&r.reason, &mut v);
    v.check()?;
    Ok(GroupEdit {
        group,
        settings,
        reason,
    })
}

/// (group, key, reason) of a ResetGroupQuota.
pub fn group_reset(
    catalog: &Catalog,
    r: &pb::ResetGroupQuotaRequest,
) -> Result<(String, String, String), Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, false, &mut v);
    let group = group("group", &r.group, &mut v);
    if catalog.definition(&r.key).is_none() {
        v.add("key", "unknown quota key");
    }
    let reason = reason(&r.reason, &mut v);
    v.check()?;
    Ok((group, r.key.clone(), reason))
}

/// (group, source group, reason) of a CopyGroupQuotas.
pub fn group_copy(r: &pb::CopyGroupQuotasRequest) -> Result<(String, String, String), Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, false, &mut v);
    let group = group("group", &r.group, &mut v);
    let source = self::group("source_group", &r.source_group, &mut v);
    let reason = reason(&r.reason, &mut v);
    v.check()?;
    Ok((group, source, reason))
}

pub fn user_edit(catalog: &Catalog, r: &pb::SetUserQuotasRequest) -> Result<UserEdit, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, false, &mut v);
    let users = user_ids(&r.user_ids, &mut v);
    let settings = settings(catalog, &r.settings, &mut v);
    let reason = reason(&r.reason, &mut v);
    v.check()?;
    Ok(UserEdit {
        users,
        settings,
        reason,
    })
}

pub fn user_reset(catalog: &Catalog, r: &pb::ResetUserQuotasRequest) -> Result<UserReset, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, false, &mut v);
    let users = user_ids(&r.user_ids, &mut v);
    if r.keys.is_empty() || r.keys.len() > MAX_SETTINGS {
        v.add("keys", format!("1 to {MAX_SETTINGS} keys"));
    }
    let mut seen = HashSet::new();
    for (i, key) in r.keys.iter().enumerate() {
        if catalog.definition(key).is_none() {
            v.add(format!("keys[{i}]"), "unknown quota key");
        } else if !seen.insert(key) {
            v.add(format!("keys[{i}]"), "repeated in this request");
        }
    }
    let reason = reason(&r.reason, &mut v);
    v.check()?;
    Ok(UserReset {
        users,
        keys: r.keys.clone(),
        reason,
    })
}

/// (user, target group) of a PreviewGroupChange.
pub fn preview(r: &pb::PreviewGroupChangeRequest) -> Result<(Uuid, String), Error> {
    let mut v = FieldViolations::new();
    let user = validate::id("user_id", &r.user_id, &mut v);
    let target = group("target_group", &r.target_group, &mut v);
    v.check()?;
    Ok((user, target))
}

/// (user, [(key, amount)]) of a CheckQuotas; keys and amounts are checked
/// against the catalog by the command.
pub fn check_request(r: &pb::CheckQuotasRequest) -> Result<(Uuid, Vec<(String, String)>), Error> {
    let mut v = FieldViolations::new();
    let user = validate::id("user_id", &r.user_id, &mut v);
    if r.requests.is_empty() || r.requests.len() > MAX_SETTINGS {
        v.add("requests", format!("1 to {MAX_SETTINGS} requests"));
    }
    v.check()?;
    Ok((
        user,
        r.requests
            .iter()
            .map(|q| (q.key.clone(), q.amount.clone()))
            .collect(),
    ))
}

/// (users, definition indexes) of a BatchGetEffectiveQuotas; no keys means
/// every key.
pub fn batch_get(
    catalog: &Catalog,
    r: &pb::BatchGetEffectiveQuotasRequest,
) -> Result<(Vec<Uuid>, Vec<usize>), Error> {
    let mut v = FieldViolations::new();
    let users = user_ids(&r.user_ids, &mut v);
    let keys = if r.keys.is_empty() {
        (0..catalog.definitions.len()).collect()
    } else {
        r.keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| match catalog.definition(k) {
                Some((idx, _)) => Some(idx),
                None => {
                    v.add(format!("keys[{i}]"), "unknown quota key");
                    None
                }
            })
            .collect()
    };
    v.check()?;
    Ok((users, keys))
}

pub fn definitions(r: &pb::RegisterQuotaDefinitionsRequest) -> Result<Vec<Definition>, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, false, &mut v);
    if r.definitions.is_empty() || r.definitions.len() > MAX_DEFINITIONS {
        v.add("definitions", format!("1 to {MAX_DEFINITIONS} definitions"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in r.definitions.iter().enumerate() {
        let f = |name: &str| format!("definitions[{i}].{name}");
        if !domain::valid_key(&d.key) {
            v.add(
                f("key"),
                "dotted lowercase words, e.g. environment.maxcount (at most 128 characters)",
            );
        } else if !seen.insert(d.key.as_str()) {
            v.add(f("key"), "repeated in this request");
        }
        if !domain::valid_group(&d.product) {
            v.add(f("product"), "a lowercase product name, e.g. platform");
        }
        validate::short_text(&f("unit"), &d.unit, &mut v);
        validate::no_nul(&f("unit"), &d.unit, &mut v);
        validate::notes_up_to(&f("description"), &d.description, MAX_REASON, &mut v);
        validate::no_nul(&f("description"), &d.description, &mut v);
        let Some(kind) = quota_type_from(d.r#type) else {
            v.add(
                f("type"),
                "required: FLAG, COUNT, MONEY, DAYS, GIGABYTES, MEGABITS or ENUM",
            );
            continue;
        };
        let mut allowed_seen = HashSet::new();
        for (j, a) in d.allowed_values.iter().enumerate() {
            let field = format!("definitions[{i}].allowed_values[{j}]");
            if a.is_empty()
                || a.len() > 64
                || a.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                v.add(
                    &field,
                    "1-64 characters without spaces or control characters",
                );
            } else if !allowed_seen.insert(a.as_str()) {
                v.add(&field, "repeated");
            }
        }
        match (kind, d.allowed_values.is_empty()) {
            (QuotaType::Enum, true) => v.add(f("allowed_values"), "an ENUM lists its values"),
            (QuotaType::Enum, false) if d.allowed_values.len() > 50 => {
                v.add(f("allowed_values"), "at most 50 values")
            }
            (QuotaType::Enum, false) => {}
            (_, false) => v.add(f("allowed_values"), "only an ENUM has allowed values"),
            (_, true) => {}
        }
        let probe = Definition {
            key: d.key.clone(),
            kind,
            unit: d.unit.clone(),
            description: d.description.clone(),
            product: d.product.clone(),
            default: Value::Unlimited,
            allowed: d.allowed_values.clone(),
            updated_at: chrono::Utc::now(),
        };
        if let Some(default) = setting_value(
            &f("default_value"),
            &probe,
            d.default_value.as_ref(),
            &mut v,
        ) {
            out.push(Definition { default, ..probe });
        }
    }
    v.check()?;
    Ok(out)
}

pub fn events(raw: &[pb::MembershipEvent]) -> Result<Vec<Event>, Error> {
    let mut v = FieldViolations::new();
    if raw.is_empty() || raw.len() > MAX_EVENTS {
        v.add("events", format!("1 to {MAX_EVENTS} events"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, e) in raw.iter().enumerate() {
        let f = |name: &str| format!("events[{i}].{name}");
        let id = validate::id(&f("event_id"), &e.event_id, &mut v);
        let user = validate::id(&f("user_id"), &e.user_id, &mut v);
        let kind = match pb::MembershipEventType::try_from(e.r#type) {
            Ok(pb::MembershipEventType::UserCreated) => EventKind::UserCreated,
            Ok(pb::MembershipEventType::GroupChanged) => EventKind::GroupChanged,
            Ok(pb::MembershipEventType::UserErased) => EventKind::UserErased,
            _ => {
                v.add(f("type"), "unknown event type");
                continue;
            }
        };
        let group = group(&f("group"), &e.group, &mut v);
        out.push(Event {
            id,
            kind,
            user,
            group,
        });
    }
    v.check()?;
    Ok(out)
}
