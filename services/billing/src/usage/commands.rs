//! Charging usage and reading it back.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use steward_kit::Tx;
use uuid::Uuid;

use super::store::{self, Environment, HistoryRow, Record};
use crate::{domain::money, error::Error, ledger};

/// What a usage batch did.
pub struct Charged {
    pub accepted: usize,
    pub duplicates: usize,
    pub charged: Decimal,
}

/// Stores the batch's new records and charges each user once for theirs
/// (usage may overdraw: the resources were consumed). Every charge is
/// audited on the user's log.
pub async fn record(tx: &mut Tx<'_>, records: &[Record]) -> Result<Charged, Error> {
    let fresh = store::insert_new(tx.conn, records).await?;
    let fresh: HashSet<&str> = fresh.iter().map(String::as_str).collect();
    let mut per_user: BTreeMap<Uuid, (Decimal, usize)> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| fresh.contains(r.usage_id.as_str()))
    {
        let slot = per_user.entry(r.user_id).or_default();
        slot.0 += r.cost;
        slot.1 += 1;
    }
    tx.only_extra();
    let mut charged = Decimal::ZERO;
    for (user, (cost, count)) in &per_user {
        if cost.is_zero() {
            continue;
        }
        let notes = format!("usage: {count} records");
        let (_, from_bonus) = ledger::store::charge(
            tx.conn,
            *user,
            *cost,
            &notes,
            ledger::store::Overdraft::Allowed,
        )
        .await?
        .ok_or_else(|| Error::Internal("an allowed overdraft was refused".into()))?;
        charged += cost;
        let record = tx
            .record()
            .clone()
            .subject(&user.to_string())
            .comment("amount", money::text(*cost))
            .comment("from_bonus", money::text(from_bonus))
            .comment("records", count.to_string());
        tx.audit(record);
    }
    Ok(Charged {
        accepted: fresh.len(),
        duplicates: records.len() - fresh.len(),
        charged,
    })
}

/// A billing-history query.
pub struct HistoryQuery {
    pub user_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `hour`, `day`, `week` or `month`.
    pub unit: &'static str,
    pub group_by_node: bool,
    pub environment: Option<String>,
}

/// The rows of the period and their totals.
pub async fn history(
    conn: &mut AsyncPgConnection,
    q: &HistoryQuery,
) -> Result<(Vec<HistoryRow>, HistoryRow), Error> {
    let rows = store::history(
        conn,
        q.user_id,
        q.start,
        q.end,
        q.unit,
        q.group_by_node,
        q.environment.as_deref(),
    )
    .await?;
    let mut totals = HistoryRow {
        interval_start: q.start,
        environment: String::new(),
        item: String::new(),
        reserved_cloudlets: Decimal::ZERO,
        dynamic_cloudlets: Decimal::ZERO,
        storage: Decimal::ZERO,
        traffic: Decimal::ZERO,
        cost: Decimal::ZERO,
    };
    for row in &rows {
        totals.reserved_cloudlets += row.reserved_cloudlets;
        totals.dynamic_cloudlets += row.dynamic_cloudlets;
        totals.storage += row.storage;
        totals.traffic += row.traffic;
        totals.cost += row.cost;
    }
    Ok((rows, totals))
}

pub async fn environments(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Vec<Environment>, Error> {
    Ok(store::environments(conn, user_id).await?)
}
