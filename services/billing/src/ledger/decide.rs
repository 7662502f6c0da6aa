//! How one refill or withdrawal applies to its account's running balances
//! inside a ledger batch (`batcher.rs`): the entries it writes, its audit
//! record, or its refusal.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    batcher::{Kind, MoneyOp},
    store::{Balances, NewEntry},
};
use crate::{
    domain::{
        BalanceType, Operation, money,
        tariff::{self, ExtraBonusRule},
    },
    error::{self, Error},
};
use steward_kit::outbox::AuditRecord;

/// The entries `op` writes if applied: one, and a main refill's extra
/// bonus.
pub(super) fn most_entries(op: &MoneyOp, rules: &[ExtraBonusRule]) -> i64 {
    match op.kind {
        Kind::Refill
            if op.input.balance_type == BalanceType::Main
                && tariff::extra_bonus(rules, op.input.amount).is_some() =>
        {
            2
        }
        _ => 1,
    }
}

/// Applies one operation to its account's running balances (`None`: the
/// account has no row, so it has nothing to withdraw), pushing its entries;
/// the balances after it and its audit record, or its refusal.
pub(super) fn decide(
    op: &MoneyOp,
    rules: &[ExtraBonusRule],
    balances: Option<&mut Balances>,
    entries: &mut Vec<NewEntry>,
) -> Result<(Balances, AuditRecord), Error> {
    let input = &op.input;
    let mut record = op.record.clone();
    let entry =
        |operation: Operation, balance_type: BalanceType, amount, after, notes: &str| NewEntry {
            entry_id: Uuid::now_v7(),
            user_id: input.user_id,
            operation,
            balance_type,
            amount,
            balance_after: after,
            actor_user_id: op.actor.clone(),
            notes: notes.to_owned(),
        };
    match op.kind {
        Kind::Refill => {
            let b =
                balances.ok_or_else(|| Error::Internal("refilled account has no row".into()))?;
            let after = add(slot(b, input.balance_type), input.amount)?;
            entries.push(entry(
                Operation::refill(input.balance_type),
                input.balance_type,
                input.amount,
                after,
                &input.notes,
            ));
            let extra = (input.balance_type == BalanceType::Main)
                .then(|| tariff::extra_bonus(rules, input.amount))
                .flatten();
            if let Some(bonus) = extra {
                let notes = format!("extra bonus for refilling {}", money::text(input.amount));
                let after = add(&mut b.bonus, bonus)?;
                entries.push(entry(
                    Operation::ExtraBonus,
                    BalanceType::Bonus,
                    bonus,
                    after,
                    &notes,
                ));
                record = record.comment("extra_bonus", money::text(bonus));
            }
            Ok((*b, record))
        }
        Kind::Withdraw => {
            let refused = || error::insufficient_funds(&input.balance_type.as_str().to_lowercase());
            let b = balances.ok_or_else(refused)?;
            let current = slot(b, input.balance_type);
            if *current < input.amount {
                return Err(refused());
            }
            *current -= input.amount;
            let after = *current;
            entries.push(entry(
                Operation::withdrawal(input.balance_type),
                input.balance_type,
                -input.amount,
                after,
                &input.notes,
            ));
            Ok((*b, record))
        }
    }
}

fn slot(b: &mut Balances, balance_type: BalanceType) -> &mut Decimal {
    match balance_type {
        BalanceType::Main => &mut b.main,
        BalanceType::Bonus => &mut b.bonus,
    }
}

fn add(slot: &mut Decimal, amount: Decimal) -> Result<Decimal, Error> {
    *slot = slot
        .checked_add(amount)
        .ok_or_else(|| Error::Internal("balance overflow".into()))?;
    Ok(*slot)
}
