//! Responses: domain -> proto.

use steward_proto::quotas as pb;

use crate::{
    domain::{Change, Definition, Effective, QuotaType, Source, Value},
    users::commands::Check,
};

pub fn value(v: &Value) -> Option<pb::QuotaValue> {
    Some(pb::QuotaValue {
        kind: Some(match v {
            Value::Unlimited => pb::quota_value::Kind::Unlimited(true),
            other => pb::quota_value::Kind::Value(other.text()),
        }),
    })
}

pub fn quota_type(t: QuotaType) -> pb::QuotaType {
    match t {
        QuotaType::Flag => pb::QuotaType::Flag,
        QuotaType::Count => pb::QuotaType::Count,
        QuotaType::Money => pb::QuotaType::Money,
        QuotaType::Days => pb::QuotaType::Days,
        QuotaType::Gigabytes => pb::QuotaType::Gigabytes,
        QuotaType::Megabits => pb::QuotaType::Megabits,
        QuotaType::Enum => pb::QuotaType::Enum,
    }
}

pub fn source(s: Source) -> i32 {
    let source = match s {
        Source::Override => pb::QuotaSource::Override,
        Source::Group => pb::QuotaSource::Group,
        Source::Default => pb::QuotaSource::Default,
    };
    source as i32
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn definition(d: &Definition) -> pb::QuotaDefinition {
    pb::QuotaDefinition {
        key: d.key.clone(),
        r#type: quota_type(d.kind) as i32,
        unit: d.unit.clone(),
        description: d.description.clone(),
        product: d.product.clone(),
        default_value: value(&d.default),
        allowed_values: d.allowed.clone(),
        update_time: Some(timestamp(d.updated_at)),
    }
}

pub fn change(c: &Change) -> pb::QuotaChange {
    pb::QuotaChange {
        user_id: c.user.map(|u| u.to_string()).unwrap_or_default(),
        group: c.group.clone(),
        key: c.key.clone(),
        old_value: value(&c.old),
        new_value: value(&c.new),
        source: source(c.source),
        below_group_value: c.below_group_value,
    }
}

pub fn user_quota(d: &Definition, e: &Effective) -> pb::UserQuota {
    pb::UserQuota {
        key: d.key.clone(),
        effective_value: value(&e.value),
        source: source(e.source),
        group_value: value(&e.group_value),
        override_value: e.override_value.as_ref().and_then(value),
        r#type: quota_type(d.kind) as i32,
        unit: d.unit.clone(),
        description: d.description.clone(),
        product: d.product.clone(),
        allowed_values: d.allowed.clone(),
    }
}

pub fn group_quota(d: &Definition, v: &Value, s: Source) -> pb::GroupQuota {
    pb::GroupQuota {
        key: d.key.clone(),
        value: value(v),
        source: source(s),
        default_value: value(&d.default),
        r#type: quota_type(d.kind) as i32,
        unit: d.unit.clone(),
    }
}

pub fn check(c: &Check) -> pb::QuotaCheck {
    pb::QuotaCheck {
        key: c.key.clone(),
        effective_value: value(&c.effective.value),
        source: source(c.effective.source),
        allowed: c.allowed,
    }
}

pub fn effective(key: &str, e: &Effective) -> pb::EffectiveQuota {
    pb::EffectiveQuota {
        key: key.to_owned(),
        value: value(&e.value),
        source: source(e.source),
    }
}
