//! Plan and subscription use cases.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use steward_kit::{Tx, auth::Caller};
use uuid::Uuid;

use super::store;
use crate::{
    domain::{
        money,
        subscription::{Invoice, Plan, Status, Subscription},
    },
    error::{self, Error},
    ledger,
};

pub struct NewPlan {
    pub product: String,
    pub name: String,
    pub price: Decimal,
    pub period_days: i32,
}

pub async fn create_plan(tx: &mut Tx<'_>, input: &NewPlan) -> Result<Plan, Error> {
    let created = store::insert_plan(
        tx.conn,
        &input.product,
        &input.name,
        input.price,
        input.period_days,
    )
    .await?;
    tx.note(|r| {
        r.comment("plan_id", created.id.to_string())
            .comment("price", money::text(created.price))
    });
    Ok(created)
}

pub async fn plans(conn: &mut AsyncPgConnection) -> Result<Vec<Plan>, Error> {
    Ok(store::plans(conn).await?)
}

pub struct NewSubscription {
    pub user_id: Uuid,
    pub plan_id: Uuid,
    pub environments: Vec<String>,
}

/// Subscribes and charges the first period at once.
pub async fn subscribe(
    tx: &mut Tx<'_>,
    input: &NewSubscription,
) -> Result<(Subscription, Invoice), Error> {
    let chosen = store::plan(tx.conn, input.plan_id)
        .await?
        .ok_or_else(|| Error::invalid("plan_id", "unknown plan"))?;
    let created = store::insert_subscription(
        tx.conn,
        input.user_id,
        &chosen,
        &input.environments,
        Utc::now(),
    )
    .await?;
    let first = invoice_and_charge(tx.conn, &created, created.current_period_start)
        .await?
        .ok_or_else(|| {
            Error::Internal("a new subscription's first period was invoiced already".into())
        })?;
    tx.note(|r| {
        r.comment("subscription_id", created.id.to_string())
            .comment("plan", format!("{} {}", chosen.product, chosen.name))
            .comment("amount", money::text(first.amount))
    });
    Ok((created, first))
}

/// Cancels an active subscription of the caller's (or any, for an admin).
pub async fn cancel(tx: &mut Tx<'_>, caller: &Caller, id: Uuid) -> Result<Subscription, Error> {
    let current = store::lock(tx.conn, id)
        .await?
        .ok_or_else(|| error::subscription_not_found(id))?;
    let owner = current.user_id.to_string();
    tx.note(|r| r.subject(&owner).comment("subscription_id", id.to_string()));
    caller.may_act_on(&owner)?;
    if current.status != Status::Active {
        return Err(error::subscription_not_active(current.status.as_str()));
    }
    store::set_status(tx.conn, id, Status::Cancelled).await?;
    store::lock(tx.conn, id)
        .await?
        .ok_or_else(|| error::subscription_not_found(id))
}

pub async fn of_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Vec<Subscription>, Error> {
    Ok(store::of_user(conn, user_id).await?)
}

/// The subscription's invoices, for its owner or an admin.
pub async fn invoices(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: Uuid,
) -> Result<Vec<Invoice>, Error> {
    let owner = store::owner(conn, id)
        .await?
        .ok_or_else(|| error::subscription_not_found(id))?;
    caller.may_act_on(&owner.to_string())?;
    Ok(store::invoices(conn, id).await?)
}

/// Invoices `[start, start + period)` and charges it through the ledger; a
/// period is never charged into debt: INSUFFICIENT_FUNDS (the caller's
/// transaction then rolls the invoice back). `None` when already invoiced.
pub async fn invoice_and_charge(
    conn: &mut AsyncPgConnection,
    s: &Subscription,
    start: DateTime<Utc>,
) -> Result<Option<Invoice>, Error> {
    let end = start + s.plan.period();
    let Some(issued) = store::invoice(conn, s, start, end).await? else {
        return Ok(None);
    };
    if !s.plan.price.is_zero() {
        let notes = format!(
            "{} {}: {} to {}",
            s.plan.product,
            s.plan.name,
            start.date_naive(),
            end.date_naive()
        );
        ledger::store::charge(
            conn,
            s.user_id,
            s.plan.price,
            &notes,
            ledger::store::Overdraft::Refused,
        )
        .await?
        .ok_or_else(|| error::insufficient_funds("main and bonus"))?;
    }
    Ok(Some(issued))
}
