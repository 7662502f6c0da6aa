//! The money commands. Each runs inside kit's command runner: the caller
//! supplies the transaction, idempotency and audit envelope.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use steward_kit::Tx;
use uuid::Uuid;

use super::{
    history::{self, Cursor},
    store::{self, Balances, Change, Entry},
};
use crate::{
    domain::{
        BalanceType, Operation, money,
        tariff::{self, ExtraBonusRule},
    },
    error::{self, Error},
};

/// A validated refill or withdrawal.
#[derive(Debug, Clone)]
pub struct MoneyInput {
    pub user_id: Uuid,
    pub balance_type: BalanceType,
    pub amount: Decimal,
    pub notes: String,
}

/// What a refill wrote: the entries (the refill, then an extra bonus if
/// one applied) and the balances after.
pub struct Refilled {
    pub entries: Vec<Entry>,
    pub balances: Balances,
}

/// Credits the amount; a main refill above a threshold earns the extra
/// bonus of `rules`, credited in the same transaction.
pub async fn refill(
    tx: &mut Tx<'_>,
    actor: &str,
    input: &MoneyInput,
    rules: &[ExtraBonusRule],
) -> Result<Refilled, Error> {
    let change = Change {
        user_id: input.user_id,
        balance_type: input.balance_type,
        operation: Operation::refill(input.balance_type),
        amount: input.amount,
        actor_user_id: actor,
        notes: &input.notes,
    };
    let (entry, mut balances) = store::credit(tx.conn, &change).await?;
    let mut entries = vec![entry];
    let extra = (input.balance_type == BalanceType::Main)
        .then(|| tariff::extra_bonus(rules, input.amount))
        .flatten();
    if let Some(bonus) = extra {
        let notes = format!("extra bonus for refilling {}", money::text(input.amount));
        let (bonus_entry, after) = store::credit(
            tx.conn,
            &Change {
                balance_type: BalanceType::Bonus,
                operation: Operation::ExtraBonus,
                amount: bonus,
                notes: &notes,
                ..change.clone()
            },
        )
        .await?;
        balances = after;
        entries.push(bonus_entry);
        tx.note(|r| r.comment("extra_bonus", money::text(bonus)));
    }
    Ok(Refilled { entries, balances })
}

/// Debits the amount, refused with INSUFFICIENT_FUNDS below zero.
pub async fn withdraw(
    tx: &mut Tx<'_>,
    actor: &str,
    input: &MoneyInput,
) -> Result<(Entry, Balances), Error> {
    let change = Change {
        user_id: input.user_id,
        balance_type: input.balance_type,
        operation: Operation::withdrawal(input.balance_type),
        amount: input.amount,
        actor_user_id: actor,
        notes: &input.notes,
    };
    store::debit(tx.conn, &change)
        .await?
        .ok_or_else(|| error::insufficient_funds(&input.balance_type.as_str().to_lowercase()))
}

/// The registration bonus, once per user (a unique index says so; the
/// constraint table turns its violation into REGISTRATION_BONUS_GRANTED).
pub async fn grant_registration_bonus(
    tx: &mut Tx<'_>,
    actor: &str,
    input: &MoneyInput,
) -> Result<(Entry, Balances), Error> {
    Ok(store::credit(
        tx.conn,
        &Change {
            user_id: input.user_id,
            balance_type: BalanceType::Bonus,
            operation: Operation::RegistrationBonus,
            amount: input.amount,
            actor_user_id: actor,
            notes: &input.notes,
        },
    )
    .await?)
}

/// A funding-history query: one user, a period, some operations (none =
/// all), continuing after `after`.
pub struct HistoryQuery {
    pub user_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub operations: Vec<Operation>,
}

/// A page of entries, newest first, and the period's totals per operation.
pub async fn funding_history(
    conn: &mut AsyncPgConnection,
    q: &HistoryQuery,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<Entry>, Vec<(Operation, i64, Decimal)>), Error> {
    let rows =
        history::history(conn, q.user_id, q.start, q.end, &q.operations, after, limit).await?;
    let totals = history::totals(conn, q.user_id, q.start, q.end, &q.operations).await?;
    Ok((rows, totals))
}

/// Erases what billing keeps of the user's personal data: the notes of
/// their ledger entries (admins write emails and phone numbers there).
pub async fn erase_personal_data(tx: &mut Tx<'_>, user_id: Uuid) -> Result<usize, Error> {
    let erased = store::erase_notes(tx.conn, user_id).await?;
    tx.note(|r| r.comment("records", erased.to_string()));
    Ok(erased)
}
