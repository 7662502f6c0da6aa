//! proto <-> domain conversions: requests are decoded and validated here
//! (all violations at once), responses encoded.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use steward_kit::{FieldViolations, validate};
use steward_proto::{billing as pb, common};
use uuid::Uuid;

use crate::{
    domain::{
        BalanceType, Operation, money,
        subscription::{Invoice, Plan, Status as SubStatus, Subscription},
        tariff::{self, Tariffs},
    },
    error::Error,
    ledger::{self, commands::MoneyInput},
    subscriptions::commands::{NewPlan, NewSubscription},
    usage::{self, commands::HistoryQuery as UsageQuery},
};

/// Ledger notes are shorter than kit's general limit.
const MAX_NOTES: usize = 1024;
const MAX_NAME: usize = 128;

/// The money command's input: key, user, amount, notes and (unless it is
/// the registration bonus) the balance.
pub fn money_input(
    request_id: &str,
    user_id: &str,
    amount: Option<&common::Decimal>,
    notes: &str,
    balance: Option<i32>,
) -> Result<MoneyInput, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(request_id, true, &mut v);
    validate::notes_up_to("notes", notes, MAX_NOTES, &mut v);
    let user_id = validate::id("user_id", user_id, &mut v);
    let amount = self::amount("amount", amount, &mut v);
    let balance_type = match balance {
        Some(raw) => balance_type("balance_type", raw, &mut v),
        None => BalanceType::Bonus,
    };
    v.check()?;
    Ok(MoneyInput {
        user_id,
        balance_type,
        amount,
        notes: notes.to_owned(),
    })
}

/// The period of a history read: the last 30 days by default, at most ten
/// years.
pub fn time_range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    v: &mut FieldViolations,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = end
        .and_then(time_from)
        .unwrap_or_else(|| Utc::now() + Duration::seconds(1));
    let start = start
        .and_then(time_from)
        .unwrap_or(end - Duration::days(30));
    if start >= end {
        v.add("start_time", "must be before end_time");
    } else if end - start > Duration::days(3660) {
        v.add("start_time", "the range may span at most ten years");
    }
    (start, end)
}

/// An erasure notice: its id (the idempotency key) and the user.
pub fn erasure(r: &common::ErasePersonalDataRequest) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    validate::id("event_id", &r.event_id, &mut v);
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    v.check()?;
    Ok(user_id)
}

pub fn user_ids(raw: &[String]) -> Result<Vec<Uuid>, Error> {
    let mut v = FieldViolations::new();
    if raw.len() > 1000 {
        v.add("user_ids", "at most 1000 users");
    }
    let ids = raw
        .iter()
        .enumerate()
        .map(|(i, s)| validate::id(&format!("user_ids[{i}]"), s, &mut v))
        .collect();
    v.check()?;
    Ok(ids)
}

pub fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id(field, raw, &mut v);
    v.check()?;
    Ok(id)
}

pub fn funding_query(
    r: &pb::ListFundingHistoryRequest,
) -> Result<ledger::commands::HistoryQuery, Error> {
    let mut v = FieldViolations::new();
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    let (start, end) = time_range(r.start_time.as_ref(), r.end_time.as_ref(), &mut v);
    let mut operations = Vec::new();
    for (i, raw) in r.operations.iter().enumerate() {
        match operation_from(*raw) {
            Some(o) => operations.push(o),
            None => v.add(format!("operations[{i}]"), "unknown operation"),
        }
    }
    operations.sort();
    operations.dedup();
    v.check()?;
    Ok(ledger::commands::HistoryQuery {
        user_id,
        start,
        end,
        operations,
    })
}

pub fn usage_query(r: &pb::GetBillingHistoryRequest) -> Result<UsageQuery, Error> {
    let mut v = FieldViolations::new();
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    let (start, end) = time_range(r.start_time.as_ref(), r.end_time.as_ref(), &mut v);
    let unit = match pb::Interval::try_from(r.interval) {
        Ok(pb::Interval::Hour) => "hour",
        Ok(pb::Interval::Unspecified | pb::Interval::Day) => "day",
        Ok(pb::Interval::Week) => "week",
        Ok(pb::Interval::Month) => "month",
        Err(_) => {
            v.add("interval", "unknown interval");
            "day"
        }
    };
    if unit == "hour" && end - start > Duration::days(93) {
        v.add("interval", "hourly history covers at most 93 days");
    }
    validate::short_text("environment", &r.environment, &mut v);
    v.check()?;
    Ok(UsageQuery {
        user_id,
        start,
        end,
        unit,
        group_by_node: r.group_by_node,
        environment: Some(r.environment.clone()).filter(|e| !e.is_empty()),
    })
}

/// A usage batch, priced by each record's group tariff.
pub fn usage_records(
    records: &[pb::UsageRecord],
    tariffs: &Tariffs,
) -> Result<Vec<usage::store::Record>, Error> {
    let mut v = FieldViolations::new();
    if records.is_empty() || records.len() > 5000 {
        v.add("records", "1 to 5000 records");
    }
    let now = Utc::now();
    let mut parsed = Vec::with_capacity(records.len());
    let mut seen = std::collections::HashSet::new();
    for (i, u) in records.iter().enumerate() {
        let f = |name: &str| format!("records[{i}].{name}");
        // Twice in one batch would be stored once but charged twice.
        if !seen.insert(u.usage_id.as_str()) {
            v.add(f("usage_id"), "repeated in this batch");
        }
        for (name, value) in [
            ("usage_id", &u.usage_id),
            ("environment", &u.environment),
            ("node_id", &u.node_id),
            ("layer", &u.layer),
        ] {
            if value.is_empty() || value.len() > MAX_NAME {
                v.add(f(name), "1 to 128 characters");
            } else {
                validate::short_text(&f(name), value, &mut v);
            }
        }
        validate::short_text(&f("group"), &u.group, &mut v);
        let user_id = validate::id(&f("user_id"), &u.user_id, &mut v);
        let start = u.slot_start.as_ref().and_then(time_from);
        let end = u.slot_end.as_ref().and_then(time_from);
        let (Some(start), Some(end)) = (start, end) else {
            v.add(f("slot_start"), "slot_start and slot_end are required");
            continue;
        };
        if end <= start || end - start > Duration::days(31) {
            v.add(f("slot_end"), "after slot_start, at most 31 days later");
        }
        if end > now + Duration::minutes(10) {
            v.add(f("slot_end"), "in the future");
        }
        let usage = tariff::Usage {
            slot_start: start,
            slot_end: end,
            reserved_cloudlets: quantity(
                &f("reserved_cloudlets"),
                u.reserved_cloudlets.as_ref(),
                &mut v,
            ),
            dynamic_cloudlets: quantity(
                &f("dynamic_cloudlets"),
                u.dynamic_cloudlets.as_ref(),
                &mut v,
            ),
            storage: quantity(&f("storage"), u.storage.as_ref(), &mut v),
            traffic: quantity(&f("traffic"), u.traffic.as_ref(), &mut v),
        };
        let cost = tariff::cost(tariffs.for_group(&u.group), &usage);
        parsed.push(usage::store::Record {
            usage_id: u.usage_id.clone(),
            user_id,
            group: u.group.clone(),
            environment: u.environment.clone(),
            node_id: u.node_id.clone(),
            layer: u.layer.clone(),
            usage,
            cost,
        });
    }
    v.check()?;
    Ok(parsed)
}

fn name(field: &str, value: &str, v: &mut FieldViolations) {
    if value.trim().is_empty() || value.len() > MAX_NAME {
        v.add(field, "1 to 128 characters");
    } else {
        validate::short_text(field, value, v);
    }
}

pub fn new_plan(r: &pb::CreatePlanRequest) -> Result<NewPlan, Error> {
    let mut v = FieldViolations::new();
    name("product", &r.product, &mut v);
    name("name", &r.name, &mut v);
    let price = match money::quantity(r.price.as_ref().map(|p| p.value.as_str()).unwrap_or("x")) {
        Ok(p) => p,
        Err(e) => {
            v.add("price", e.to_string());
            Decimal::ZERO
        }
    };
    if !(1..=3660).contains(&r.period_days) {
        v.add("period_days", "between 1 and 3660");
    }
    v.check()?;
    Ok(NewPlan {
        product: r.product.trim().to_owned(),
        name: r.name.trim().to_owned(),
        price,
        period_days: r.period_days,
    })
}

pub fn new_subscription(r: &pb::CreateSubscriptionRequest) -> Result<NewSubscription, Error> {
    let mut v = FieldViolations::new();
    validate::request_id(&r.request_id, true, &mut v);
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    let plan_id = validate::id("plan_id", &r.plan_id, &mut v);
    if r.environments.len() > 100
        || r.environments
            .iter()
            .any(|e| e.is_empty() || e.len() > MAX_NAME || e.chars().any(char::is_control))
    {
        v.add("environments", "at most 100 names of 1 to 128 characters");
    }
    v.check()?;
    Ok(NewSubscription {
        user_id,
        plan_id,
        environments: r.environments.clone(),
    })
}

pub fn plan(p: &Plan) -> pb::Plan {
    pb::Plan {
        id: p.id.to_string(),
        product: p.product.clone(),
        name: p.name.clone(),
        price: decimal(p.price),
        period_days: p.period_days,
        create_time: Some(timestamp(p.created_at)),
    }
}

pub fn subscription(s: &Subscription) -> pb::Subscription {
    pb::Subscription {
        id: s.id.to_string(),
        user_id: s.user_id.to_string(),
        product: s.plan.product.clone(),
        plan: s.plan.name.clone(),
        plan_id: s.plan.id.to_string(),
        environments: s.environments.clone(),
        status: match s.status {
            SubStatus::Active => pb::SubscriptionStatus::Active,
            SubStatus::Cancelled => pb::SubscriptionStatus::Cancelled,
            SubStatus::Expired => pb::SubscriptionStatus::Expired,
        } as i32,
        cost: decimal(s.plan.price),
        period_days: s.plan.period_days,
        create_time: Some(timestamp(s.created_at)),
        end_time: Some(timestamp(s.current_period_end)),
    }
}

pub fn invoice(i: &Invoice) -> pb::Invoice {
    pb::Invoice {
        id: i.id.to_string(),
        subscription_id: i.subscription_id.to_string(),
        period_start: Some(timestamp(i.period_start)),
        period_end: Some(timestamp(i.period_end)),
        amount: decimal(i.amount),
        create_time: Some(timestamp(i.created_at)),
    }
}

pub fn environment(e: usage::store::Environment) -> pb::Environment {
    pb::Environment {
        name: e.name,
        node_ids: e.node_ids,
        last_usage_time: Some(timestamp(e.last_usage)),
    }
}

pub fn decimal(value: Decimal) -> Option<common::Decimal> {
    Some(common::Decimal {
        value: money::text(value),
    })
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn time_from(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single()
}

/// A positive amount field.
pub fn amount(field: &str, value: Option<&common::Decimal>, v: &mut FieldViolations) -> Decimal {
    match money::amount(value.map(|d| d.value.as_str()).unwrap_or_default()) {
        Ok(amount) => amount,
        Err(e) => {
            v.add(field, e.to_string());
            Decimal::ZERO
        }
    }
}

pub fn quantity(field: &str, value: Option<&common::Decimal>, v: &mut FieldViolations) -> Decimal {
    match money::quantity(value.map(|d| d.value.as_str()).unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => {
            v.add(field, e.to_string());
            Decimal::ZERO
        }
    }
}

pub fn balance_type(field: &str, raw: i32, v: &mut FieldViolations) -> BalanceType {
    match pb::BalanceType::try_from(raw) {
        Ok(pb::BalanceType::Main) => BalanceType::Main,
        Ok(pb::BalanceType::Bonus) => BalanceType::Bonus,
        _ => {
            v.add(field, "must be MAIN or BONUS");
            BalanceType::Main
        }
    }
}

pub fn operation(o: Operation) -> pb::Operation {
    match o {
        Operation::Funding => pb::Operation::Funding,
        Operation::BonusFunding => pb::Operation::BonusFunding,
        Operation::RegistrationBonus => pb::Operation::RegistrationBonus,
        Operation::ExtraBonus => pb::Operation::ExtraBonus,
        Operation::Withdrawal => pb::Operation::Withdrawal,
        Operation::BonusWithdrawal => pb::Operation::BonusWithdrawal,
        Operation::Charge => pb::Operation::Charge,
    }
}

pub fn operation_from(raw: i32) -> Option<Operation> {
    Operation::ALL
        .into_iter()
        .find(|o| operation(*o) as i32 == raw)
}

pub fn balance(user_id: &str, b: ledger::store::Balances, currency: &str) -> pb::Balance {
    pb::Balance {
        user_id: user_id.to_owned(),
        main: decimal(b.main),
        bonus: decimal(b.bonus),
        currency_code: currency.to_owned(),
    }
}

pub fn entry(e: &ledger::store::Entry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: e.entry_id.to_string(),
        user_id: e.user_id.to_string(),
        operation: operation(e.operation) as i32,
        balance_type: match e.balance_type {
            BalanceType::Main => pb::BalanceType::Main,
            BalanceType::Bonus => pb::BalanceType::Bonus,
        } as i32,
        amount: decimal(e.amount),
        balance_after: decimal(e.balance_after),
        actor_user_id: e.actor_user_id.clone(),
        notes: e.notes.clone(),
        create_time: Some(timestamp(e.created_at)),
    }
}

pub fn history_row(r: &usage::store::HistoryRow) -> pb::BillingHistoryRow {
    pb::BillingHistoryRow {
        interval_start: Some(timestamp(r.interval_start)),
        environment: r.environment.clone(),
        item: r.item.clone(),
        reserved_cloudlets: decimal(r.reserved_cloudlets),
        dynamic_cloudlets: decimal(r.dynamic_cloudlets),
        storage: decimal(r.storage),
        traffic: decimal(r.traffic),
        cost: decimal(r.cost),
    }
}
