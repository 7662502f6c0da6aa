//! Plans, subscriptions and invoices: the handlers' bodies.

use chrono::Utc;
use diesel_async::AsyncConnection;
use steward_kit::{
    FieldViolations,
    auth::Caller,
    idempotency,
    outbox::{self, AuditRecord},
};
use steward_proto::billing as pb;
use tonic::{Code, Request, Response, Status};

use super::{BillingApi, SOURCE, convert, scope, user_id};
use crate::{
    domain::{
        money,
        subscription::{Invoice, Plan, Status as SubStatus, Subscription},
    },
    error::Error,
    store::{ledger, subscriptions},
};

pub fn plan(p: &Plan) -> pb::Plan {
    pb::Plan {
        id: p.id.to_string(),
        product: p.product.clone(),
        name: p.name.clone(),
        price: convert::decimal(p.price),
        period_days: p.period_days,
        create_time: Some(convert::timestamp(p.created_at)),
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
        cost: convert::decimal(s.plan.price),
        period_days: s.plan.period_days,
        create_time: Some(convert::timestamp(s.created_at)),
        end_time: Some(convert::timestamp(s.current_period_end)),
    }
}

pub fn invoice(i: &Invoice) -> pb::Invoice {
    pb::Invoice {
        id: i.id.to_string(),
        subscription_id: i.subscription_id.to_string(),
        period_start: Some(convert::timestamp(i.period_start)),
        period_end: Some(convert::timestamp(i.period_end)),
        amount: convert::decimal(i.amount),
        create_time: Some(convert::timestamp(i.created_at)),
    }
}

fn name(field: &str, value: &str, v: &mut FieldViolations) {
    if value.trim().is_empty() || value.len() > 128 {
        v.add(field, "1 to 128 characters");
    }
}

/// Invoices `[start, start + period)` and charges it through the ledger; a
/// period is never charged into debt: INSUFFICIENT_FUNDS (the caller's
/// transaction then rolls the invoice back). `None` when already invoiced.
pub async fn invoice_and_charge(
    conn: &mut diesel_async::AsyncPgConnection,
    s: &Subscription,
    start: chrono::DateTime<Utc>,
) -> Result<Option<Invoice>, Error> {
    let end = start + s.plan.period();
    let Some(issued) = subscriptions::invoice(conn, s, start, end).await? else {
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
        ledger::charge(
            conn,
            s.user_id,
            s.plan.price,
            &notes,
            ledger::Overdraft::Refused,
        )
        .await?
        .ok_or_else(|| Error::insufficient_funds("main and bonus"))?;
    }
    Ok(Some(issued))
}

impl BillingApi {
    pub(super) async fn create_plan_impl(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::CreatePlanResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "billing.plan.created", &request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = FieldViolations::new();
            name("product", &r.product, &mut v);
            name("name", &r.name, &mut v);
            let price =
                match money::quantity(r.price.as_ref().map(|p| p.value.as_str()).unwrap_or("x")) {
                    Ok(p) => p,
                    Err(e) => {
                        v.add("price", e.to_string());
                        Default::default()
                    }
                };
            if !(1..=3660).contains(&r.period_days) {
                v.add("period_days", "between 1 and 3660");
            }
            v.check()?;
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let created = subscriptions::insert_plan(
                    conn,
                    r.product.trim(),
                    r.name.trim(),
                    price,
                    r.period_days,
                )
                .await
                .map_err(|e| match &e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => Error::Refused {
                        code: Code::AlreadyExists,
                        reason: "PLAN_EXISTS",
                        message: "the product already has a plan of that name".into(),
                    },
                    _ => e.into(),
                })?;
                record
                    .clone()
                    .comment("plan_id", created.id.to_string())
                    .comment("price", money::text(created.price))
                    .write(conn)
                    .await?;
                Ok(pb::CreatePlanResponse {
                    plan: Some(plan(&created)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    pub(super) async fn list_plans_impl(&self) -> Result<Response<pb::ListPlansResponse>, Status> {
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let plans = subscriptions::plans(&mut conn).await.map_err(Error::from)?;
        Ok(Response::new(pb::ListPlansResponse {
            plans: plans.iter().map(plan).collect(),
        }))
    }

    pub(super) async fn create_subscription_impl(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.subscription.created", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let result = async {
            let mut v = FieldViolations::new();
            if r.request_id.is_empty() || r.request_id.len() > 128 {
                v.add(
                    "request_id",
                    "required: an idempotency key of at most 128 characters",
                );
            }
            let user = user_id("user_id", &r.user_id, &mut v);
            let plan_id = user_id("plan_id", &r.plan_id, &mut v);
            if r.environments.len() > 100
                || r.environments.iter().any(|e| e.is_empty() || e.len() > 128)
            {
                v.add("environments", "at most 100 names of 1 to 128 characters");
            }
            v.check()?;
            caller.ensure_may_act_on(&r.user_id).map_err(denied)?;
            let fingerprint = idempotency::fingerprint(&r);
            let scope = scope("CreateSubscription", &caller);
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) =
                    idempotency::replay(conn, &scope, &r.request_id, &fingerprint).await?
                {
                    return Ok(previous);
                }
                let chosen = subscriptions::plan(conn, plan_id).await?.ok_or_else(|| {
                    Error::from(FieldViolations::single("plan_id", "unknown plan"))
                })?;
                let created = subscriptions::insert_subscription(
                    conn,
                    user,
                    &chosen,
                    &r.environments,
                    Utc::now(),
                )
                .await?;
                let first = invoice_and_charge(conn, &created, created.current_period_start)
                    .await?
                    .ok_or_else(|| {
                        Error::Internal(
                            "a new subscription's first period was invoiced already".into(),
                        )
                    })?;
                record
                    .clone()
                    .comment("subscription_id", created.id.to_string())
                    .comment("plan", format!("{} {}", chosen.product, chosen.name))
                    .comment("amount", money::text(first.amount))
                    .write(conn)
                    .await?;
                let response = pb::CreateSubscriptionResponse {
                    subscription: Some(subscription(&created)),
                    invoice: Some(invoice(&first)),
                };
                idempotency::remember(conn, &scope, &r.request_id, &response).await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    pub(super) async fn cancel_subscription_impl(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.subscription.cancelled", &request)?;
        let raw = request.into_inner().subscription_id;
        let result = async {
            let mut v = FieldViolations::new();
            let id = user_id("subscription_id", &raw, &mut v);
            v.check()?;
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let current = subscriptions::lock(conn, id)
                    .await?
                    .ok_or_else(|| not_found(&raw))?;
                caller
                    .ensure_may_act_on(&current.user_id.to_string())
                    .map_err(denied)?;
                if current.status != SubStatus::Active {
                    return Err(Error::Refused {
                        code: Code::FailedPrecondition,
                        reason: "SUBSCRIPTION_NOT_ACTIVE",
                        message: format!("the subscription is {}", current.status.as_str()),
                    });
                }
                subscriptions::set_status(conn, id, SubStatus::Cancelled).await?;
                record
                    .clone()
                    .subject(&current.user_id.to_string())
                    .comment("subscription_id", id.to_string())
                    .write(conn)
                    .await?;
                let after = subscriptions::lock(conn, id)
                    .await?
                    .ok_or_else(|| not_found(&raw))?;
                Ok(pb::CancelSubscriptionResponse {
                    subscription: Some(subscription(&after)),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    pub(super) async fn list_subscriptions_impl(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let raw = request.into_inner().user_id;
        let mut v = FieldViolations::new();
        let id = user_id("user_id", &raw, &mut v);
        v.check().map_err(Error::from)?;
        caller.ensure_may_act_on(&raw)?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let subs = subscriptions::of_user(&mut conn, id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: subs.iter().map(subscription).collect(),
        }))
    }

    pub(super) async fn list_invoices_impl(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let raw = request.into_inner().subscription_id;
        let mut v = FieldViolations::new();
        let id = user_id("subscription_id", &raw, &mut v);
        v.check().map_err(Error::from)?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let owner = conn
            .transaction::<_, Error, _>(async |conn| Ok(subscriptions::lock(conn, id).await?))
            .await?
            .ok_or_else(|| not_found(&raw))?;
        caller.ensure_may_act_on(&owner.user_id.to_string())?;
        let list = subscriptions::invoices(&mut conn, id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: list.iter().map(invoice).collect(),
        }))
    }
}

fn not_found(id: &str) -> Error {
    Error::Refused {
        code: Code::NotFound,
        reason: "SUBSCRIPTION_NOT_FOUND",
        message: format!("subscription {id} not found"),
    }
}

fn denied(status: Status) -> Error {
    Error::Refused {
        code: Code::PermissionDenied,
        reason: "NOT_YOUR_RESOURCE",
        message: status.message().to_owned(),
    }
}
