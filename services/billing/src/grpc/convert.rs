//! proto <-> domain conversions.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use steward_kit::FieldViolations;
use steward_proto::{billing as pb, common};

use crate::{
    domain::{BalanceType, Operation, money},
    store::{ledger, usage},
};

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

pub fn balance(user_id: &str, b: ledger::Balances, currency: &str) -> pb::Balance {
    pb::Balance {
        user_id: user_id.to_owned(),
        main: decimal(b.main),
        bonus: decimal(b.bonus),
        currency_code: currency.to_owned(),
    }
}

pub fn entry(e: &ledger::Entry) -> pb::LedgerEntry {
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

pub fn history_row(r: &usage::HistoryRow) -> pb::BillingHistoryRow {
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
