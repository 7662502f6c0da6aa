//! Plans, subscriptions and invoices.

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::subscription::{Invoice, Plan, Status, Subscription};

fn dec(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap_or_default()
}

#[derive(QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    product: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    price: String,
    #[diesel(sql_type = Integer)]
    period_days: i32,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl From<PlanRow> for Plan {
    fn from(r: PlanRow) -> Self {
        Plan {
            id: r.id,
            product: r.product,
            name: r.name,
            price: dec(&r.price),
            period_days: r.period_days,
            created_at: r.created_at,
        }
    }
}

const PLAN_COLUMNS: &str = "id, product, name, price::text AS price, period_days, created_at";

pub async fn insert_plan(
    conn: &mut AsyncPgConnection,
    product: &str,
    name: &str,
    price: rust_decimal::Decimal,
    period_days: i32,
) -> QueryResult<Plan> {
    diesel::sql_query(format!(
        "INSERT INTO plans (id, product, name, price, period_days) VALUES ($1, $2, $3, $4::numeric, $5)
         RETURNING {PLAN_COLUMNS}"
    ))
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(product)
    .bind::<Text, _>(name)
    .bind::<Text, _>(price.to_string())
    .bind::<Integer, _>(period_days)
    .get_result::<PlanRow>(conn)
    .await
    .map(Plan::from)
}

pub async fn plans(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Plan>> {
    diesel::sql_query(format!(
        "SELECT {PLAN_COLUMNS} FROM plans ORDER BY product, name"
    ))
    .load::<PlanRow>(conn)
    .await
    .map(|rows| rows.into_iter().map(Plan::from).collect())
}

pub async fn plan(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Plan>> {
    diesel::sql_query(format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1"))
        .bind::<SqlUuid, _>(id)
        .load::<PlanRow>(conn)
        .await
        .map(|rows| rows.into_iter().next().map(Plan::from))
}

#[derive(QueryableByName)]
struct SubscriptionRow {
    #[diesel(sql_type = SqlUuid)]
    sub_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Array<Text>)]
    environments: Vec<String>,
    #[diesel(sql_type = Timestamptz)]
    current_period_start: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    current_period_end: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    sub_created_at: DateTime<Utc>,
    #[diesel(embed)]
    plan: PlanRow,
}

impl From<SubscriptionRow> for Subscription {
    fn from(r: SubscriptionRow) -> Self {
        Subscription {
            id: r.sub_id,
            user_id: r.user_id,
            plan: r.plan.into(),
            status: Status::parse(&r.status),
            environments: r.environments,
            current_period_start: r.current_period_start,
            current_period_end: r.current_period_end,
            created_at: r.sub_created_at,
        }
    }
}

const SUBSCRIPTION_SELECT: &str = "SELECT s.id AS sub_id, s.user_id, s.status, s.environments,
        s.current_period_start, s.current_period_end, s.created_at AS sub_created_at,
        p.id, p.product, p.name, p.price::text AS price, p.period_days, p.created_at
    FROM subscriptions s JOIN plans p ON p.id = s.plan_id";

pub async fn insert_subscription(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    plan: &Plan,
    environments: &[String],
    start: DateTime<Utc>,
) -> QueryResult<Subscription> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO subscriptions (id, user_id, plan_id, status, environments, current_period_start, current_period_end)
         VALUES ($1, $2, $3, 'ACTIVE', $4, $5, $6)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(user_id)
    .bind::<SqlUuid, _>(plan.id)
    .bind::<Array<Text>, _>(environments)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(start + plan.period())
    .execute(conn)
    .await?;
    Ok(lock(conn, id).await?.expect("just inserted"))
}

/// Locks one subscription (cancel and renewal change it).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Subscription>> {
    diesel::sql_query(format!(
        "{SUBSCRIPTION_SELECT} WHERE s.id = $1 FOR UPDATE OF s"
    ))
    .bind::<SqlUuid, _>(id)
    .load::<SubscriptionRow>(conn)
    .await
    .map(|rows| rows.into_iter().next().map(Subscription::from))
}

/// Whose subscription `id` is (invoice reads check it), without a lock.
pub async fn owner(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Uuid>> {
    #[derive(QueryableByName)]
    struct Owner {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
    }
    diesel::sql_query("SELECT user_id FROM subscriptions WHERE id = $1")
        .bind::<SqlUuid, _>(id)
        .load::<Owner>(conn)
        .await
        .map(|rows| rows.into_iter().next().map(|o| o.user_id))
}

pub async fn of_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<Vec<Subscription>> {
    diesel::sql_query(format!(
        "{SUBSCRIPTION_SELECT} WHERE s.user_id = $1 ORDER BY s.created_at DESC"
    ))
    .bind::<SqlUuid, _>(user_id)
    .load::<SubscriptionRow>(conn)
    .await
    .map(|rows| rows.into_iter().map(Subscription::from).collect())
}

/// Subscriptions whose period ended, locked; others' are skipped.
pub async fn due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Subscription>> {
    diesel::sql_query(format!(
        "{SUBSCRIPTION_SELECT} WHERE s.status <> 'EXPIRED' AND s.current_period_end <= $1
         ORDER BY s.current_period_end LIMIT $2 FOR UPDATE OF s SKIP LOCKED"
    ))
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(limit)
    .load::<SubscriptionRow>(conn)
    .await
    .map(|rows| rows.into_iter().map(Subscription::from).collect())
}

pub async fn set_status(conn: &mut AsyncPgConnection, id: Uuid, status: Status) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE subscriptions SET status = $2,
             cancelled_at = CASE WHEN $2 = 'CANCELLED' THEN now() ELSE cancelled_at END
         WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(status.as_str())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn advance(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE subscriptions SET current_period_start = $2, current_period_end = $3 WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .execute(conn)
    .await
    .map(|_| ())
}

#[derive(QueryableByName)]
struct InvoiceRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    subscription_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    period_start: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    period_end: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    amount: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl From<InvoiceRow> for Invoice {
    fn from(r: InvoiceRow) -> Self {
        Invoice {
            id: r.id,
            subscription_id: r.subscription_id,
            period_start: r.period_start,
            period_end: r.period_end,
            amount: dec(&r.amount),
            created_at: r.created_at,
        }
    }
}

const INVOICE_COLUMNS: &str =
    "id, subscription_id, period_start, period_end, amount::text AS amount, created_at";

/// Invoices a period once; `None` when it was invoiced already.
pub async fn invoice(
    conn: &mut AsyncPgConnection,
    s: &Subscription,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> QueryResult<Option<Invoice>> {
    diesel::sql_query(format!(
        "INSERT INTO invoices (id, subscription_id, user_id, period_start, period_end, amount)
         VALUES ($1, $2, $3, $4, $5, $6::numeric)
         ON CONFLICT (subscription_id, period_start) DO NOTHING
         RETURNING {INVOICE_COLUMNS}"
    ))
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(s.id)
    .bind::<SqlUuid, _>(s.user_id)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .bind::<Text, _>(s.plan.price.to_string())
    .load::<InvoiceRow>(conn)
    .await
    .map(|rows| rows.into_iter().next().map(Invoice::from))
}

pub async fn invoices(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
) -> QueryResult<Vec<Invoice>> {
    diesel::sql_query(format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE subscription_id = $1 ORDER BY period_start DESC"))
        .bind::<SqlUuid, _>(subscription_id)
        .load::<InvoiceRow>(conn)
        .await
        .map(|rows| rows.into_iter().map(Invoice::from).collect())
}
