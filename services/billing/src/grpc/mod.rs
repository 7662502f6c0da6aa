//! `steward.billing.v1.BillingService`: the only module that sees proto
//! types. Money commands: validate, then one short transaction holding the
//! idempotency key, the guarded balance statement(s) and the audit record.

pub mod convert;
mod subscriptions;

pub use subscriptions::invoice_and_charge;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;
use steward_kit::{
    FieldViolations,
    auth::Caller,
    db::Pool,
    idempotency,
    outbox::{self, AuditRecord},
    page::{self, PageTokens},
};
use steward_proto::{billing as pb, common};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    BillingConfig,
    domain::{BalanceType, Operation, money, tariff},
    error::Error,
    store::{
        ledger::{self, Change},
        usage,
    },
};

pub const SOURCE: &str = "billing";
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
const MAX_NOTES: usize = 1024;

#[derive(Clone)]
pub struct BillingApi {
    pool: Pool,
    tokens: PageTokens,
    config: BillingConfig,
}

impl BillingApi {
    pub fn new(pool: Pool, tokens: PageTokens, config: BillingConfig) -> Self {
        Self {
            pool,
            tokens,
            config,
        }
    }
}

fn scope(method: &str, caller: &Caller) -> String {
    format!("{method}:{}", caller.user_id)
}

fn user_id(field: &str, raw: &str, v: &mut FieldViolations) -> Uuid {
    Uuid::parse_str(raw).unwrap_or_else(|_| {
        v.add(field, "must be a UUID");
        Uuid::nil()
    })
}

/// The audit record of a money command: whose balance, how much, why.
fn money_record(
    record: AuditRecord,
    user_id: &str,
    amount: Option<&common::Decimal>,
    notes: &str,
) -> AuditRecord {
    record
        .subject(user_id)
        .comment(
            "amount",
            amount.map(|a| a.value.clone()).unwrap_or_default(),
        )
        .comment("notes", notes)
}

/// What every money command checks: key, user, amount, notes.
struct MoneyInput {
    user_id: Uuid,
    amount: Decimal,
}

fn money_input(
    request_id: &str,
    user: &str,
    amount: Option<&common::Decimal>,
    notes: &str,
    v: &mut FieldViolations,
) -> MoneyInput {
    if request_id.is_empty() {
        v.add("request_id", "required: an idempotency key, e.g. a UUID");
    } else if request_id.len() > 128 {
        v.add("request_id", "at most 128 characters");
    }
    if notes.chars().count() > MAX_NOTES {
        v.add("notes", format!("at most {MAX_NOTES} characters"));
    }
    MoneyInput {
        user_id: user_id("user_id", user, v),
        amount: convert::amount("amount", amount, v),
    }
}

fn time_range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    v: &mut FieldViolations,
) -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let end = end
        .and_then(convert::time_from)
        .unwrap_or_else(|| Utc::now() + Duration::seconds(1));
    let start = start
        .and_then(convert::time_from)
        .unwrap_or(end - Duration::days(30));
    if start >= end {
        v.add("start_time", "must be before end_time");
    } else if end - start > Duration::days(3660) {
        v.add("start_time", "the range may span at most ten years");
    }
    (start, end)
}

#[tonic::async_trait]
impl pb::billing_service_server::BillingService for BillingApi {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = Caller::of(&request)?;
        let raw = request.into_inner().user_id;
        let mut v = FieldViolations::new();
        let id = user_id("user_id", &raw, &mut v);
        v.check().map_err(Error::from)?;
        caller.ensure_may_act_on(&raw)?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let balances = ledger::balances(&mut conn, &[id])
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: Some(convert::balance(
                &raw,
                balances.get(&id).copied().unwrap_or_default(),
                &self.config.currency,
            )),
        }))
    }

    async fn batch_get_balances(
        &self,
        request: Request<pb::BatchGetBalancesRequest>,
    ) -> Result<Response<pb::BatchGetBalancesResponse>, Status> {
        let raw = request.into_inner().user_ids;
        let mut v = FieldViolations::new();
        if raw.len() > 1000 {
            v.add("user_ids", "at most 1000 users");
        }
        let ids: Vec<Uuid> = raw
            .iter()
            .enumerate()
            .map(|(i, s)| user_id(&format!("user_ids[{i}]"), s, &mut v))
            .collect();
        v.check().map_err(Error::from)?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let found = ledger::balances(&mut conn, &ids)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::BatchGetBalancesResponse {
            balances: raw
                .iter()
                .zip(&ids)
                .map(|(s, id)| {
                    convert::balance(
                        s,
                        found.get(id).copied().unwrap_or_default(),
                        &self.config.currency,
                    )
                })
                .collect(),
        }))
    }

    async fn refill(
        &self,
        request: Request<pb::RefillRequest>,
    ) -> Result<Response<pb::RefillResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.balance.refilled", &request)?;
        let r = request.into_inner();
        let record = money_record(record, &r.user_id, r.amount.as_ref(), &r.notes);
        let result = async {
            let mut v = FieldViolations::new();
            let input = money_input(
                &r.request_id,
                &r.user_id,
                r.amount.as_ref(),
                &r.notes,
                &mut v,
            );
            let balance_type = convert::balance_type("balance_type", r.balance_type, &mut v);
            v.check()?;
            let fingerprint = idempotency::fingerprint(&r);
            let scope = scope("Refill", &caller);
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) =
                    idempotency::replay(conn, &scope, &r.request_id, &fingerprint).await?
                {
                    return Ok(previous);
                }
                let change = Change {
                    user_id: input.user_id,
                    balance_type,
                    operation: Operation::refill(balance_type),
                    amount: input.amount,
                    actor_user_id: &caller.user_id,
                    notes: &r.notes,
                };
                let (entry, mut balances) = ledger::credit(conn, &change).await?;
                let mut entries = vec![convert::entry(&entry)];
                let mut event = record
                    .clone()
                    .comment("balance_type", balance_type.as_str());
                let extra = (balance_type == BalanceType::Main)
                    .then(|| tariff::extra_bonus(&self.config.extra_bonus, input.amount))
                    .flatten();
                if let Some(bonus) = extra {
                    let notes = format!("extra bonus for refilling {}", money::text(input.amount));
                    let (bonus_entry, after) = ledger::credit(
                        conn,
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
                    entries.push(convert::entry(&bonus_entry));
                    event = event.comment("extra_bonus", money::text(bonus));
                }
                event.write(conn).await?;
                let response = pb::RefillResponse {
                    entries,
                    balance: Some(convert::balance(
                        &r.user_id,
                        balances,
                        &self.config.currency,
                    )),
                };
                idempotency::remember(conn, &scope, &r.request_id, &response).await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.balance.withdrawn", &request)?;
        let r = request.into_inner();
        let record = money_record(record, &r.user_id, r.amount.as_ref(), &r.notes);
        let result = async {
            let mut v = FieldViolations::new();
            let input = money_input(
                &r.request_id,
                &r.user_id,
                r.amount.as_ref(),
                &r.notes,
                &mut v,
            );
            let balance_type = convert::balance_type("balance_type", r.balance_type, &mut v);
            v.check()?;
            let fingerprint = idempotency::fingerprint(&r);
            let scope = scope("Withdraw", &caller);
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) =
                    idempotency::replay(conn, &scope, &r.request_id, &fingerprint).await?
                {
                    return Ok(previous);
                }
                let change = Change {
                    user_id: input.user_id,
                    balance_type,
                    operation: Operation::withdrawal(balance_type),
                    amount: input.amount,
                    actor_user_id: &caller.user_id,
                    notes: &r.notes,
                };
                let (entry, balances) = ledger::debit(conn, &change).await?.ok_or_else(|| {
                    Error::insufficient_funds(&balance_type.as_str().to_lowercase())
                })?;
                record
                    .clone()
                    .comment("balance_type", balance_type.as_str())
                    .write(conn)
                    .await?;
                let response = pb::WithdrawResponse {
                    entry: Some(convert::entry(&entry)),
                    balance: Some(convert::balance(
                        &r.user_id,
                        balances,
                        &self.config.currency,
                    )),
                };
                idempotency::remember(conn, &scope, &r.request_id, &response).await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn grant_registration_bonus(
        &self,
        request: Request<pb::GrantRegistrationBonusRequest>,
    ) -> Result<Response<pb::GrantRegistrationBonusResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.registration_bonus.granted", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id).comment(
            "amount",
            r.amount
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default(),
        );
        let result = async {
            let mut v = FieldViolations::new();
            let input = money_input(
                &r.request_id,
                &r.user_id,
                r.amount.as_ref(),
                &r.notes,
                &mut v,
            );
            v.check()?;
            let fingerprint = idempotency::fingerprint(&r);
            let scope = scope("GrantRegistrationBonus", &caller);
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                if let Some(previous) =
                    idempotency::replay(conn, &scope, &r.request_id, &fingerprint).await?
                {
                    return Ok(previous);
                }
                let (entry, balances) = ledger::credit(
                    conn,
                    &Change {
                        user_id: input.user_id,
                        balance_type: BalanceType::Bonus,
                        operation: Operation::RegistrationBonus,
                        amount: input.amount,
                        actor_user_id: &caller.user_id,
                        notes: &r.notes,
                    },
                )
                .await
                .map_err(|e| match &e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        info,
                    ) if info.constraint_name() == Some("ledger_one_registration_bonus") => {
                        Error::Refused {
                            code: tonic::Code::FailedPrecondition,
                            reason: "REGISTRATION_BONUS_GRANTED",
                            message: "the user already received a registration bonus".into(),
                        }
                    }
                    _ => e.into(),
                })?;
                record.clone().write(conn).await?;
                let response = pb::GrantRegistrationBonusResponse {
                    entry: Some(convert::entry(&entry)),
                    balance: Some(convert::balance(
                        &r.user_id,
                        balances,
                        &self.config.currency,
                    )),
                };
                idempotency::remember(conn, &scope, &r.request_id, &response).await?;
                Ok(response)
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn list_funding_history(
        &self,
        request: Request<pb::ListFundingHistoryRequest>,
    ) -> Result<Response<pb::ListFundingHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let id = user_id("user_id", &r.user_id, &mut v);
        let (mut start, mut end) = time_range(r.start_time.as_ref(), r.end_time.as_ref(), &mut v);
        let mut operations = Vec::new();
        for (i, raw) in r.operations.iter().enumerate() {
            match convert::operation_from(*raw) {
                Some(o) => operations.push(o),
                None => v.add(format!("operations[{i}]"), "unknown operation"),
            }
        }
        operations.sort();
        operations.dedup();
        v.check().map_err(Error::from)?;
        caller.ensure_may_act_on(&r.user_id)?;
        let fingerprint = format!(
            "funding|{id}|{:?}|{:?}|{operations:?}",
            r.start_time, r.end_time
        );
        let page = self
            .tokens
            .page::<ledger::Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        if let Some(cursor) = &page.after {
            (start, end) = (cursor.start, cursor.end);
        }
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let rows = ledger::history(
            &mut conn,
            id,
            start,
            end,
            &operations,
            page.after,
            page.limit(),
        )
        .await
        .map_err(Error::from)?;
        let totals = ledger::totals(&mut conn, id, start, end, &operations)
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page::split(rows, page.size, |e| {
            self.tokens.encode(
                &fingerprint,
                &ledger::Cursor {
                    created_at: e.created_at,
                    id: e.id,
                    start,
                    end,
                },
            )
        });
        Ok(Response::new(pb::ListFundingHistoryResponse {
            entries: rows.iter().map(convert::entry).collect(),
            totals: totals
                .into_iter()
                .map(|(o, count, amount)| pb::OperationTotal {
                    operation: convert::operation(o) as i32,
                    count,
                    amount: convert::decimal(amount),
                })
                .collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn record_usage(
        &self,
        request: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::RecordUsageResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "billing.usage.charged", &request)?;
        let records = request.into_inner().records;
        let result = async {
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
                    if value.is_empty() || value.len() > 128 {
                        v.add(f(name), "1 to 128 characters");
                    }
                }
                let uid = user_id(&f("user_id"), &u.user_id, &mut v);
                let start = u.slot_start.as_ref().and_then(convert::time_from);
                let end = u.slot_end.as_ref().and_then(convert::time_from);
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
                    reserved_cloudlets: convert::quantity(
                        &f("reserved_cloudlets"),
                        u.reserved_cloudlets.as_ref(),
                        &mut v,
                    ),
                    dynamic_cloudlets: convert::quantity(
                        &f("dynamic_cloudlets"),
                        u.dynamic_cloudlets.as_ref(),
                        &mut v,
                    ),
                    storage: convert::quantity(&f("storage"), u.storage.as_ref(), &mut v),
                    traffic: convert::quantity(&f("traffic"), u.traffic.as_ref(), &mut v),
                };
                let cost = tariff::cost(self.config.tariffs.for_group(&u.group), &usage);
                parsed.push(usage::Record {
                    usage_id: u.usage_id.clone(),
                    user_id: uid,
                    group: u.group.clone(),
                    environment: u.environment.clone(),
                    node_id: u.node_id.clone(),
                    layer: u.layer.clone(),
                    usage,
                    cost,
                });
            }
            v.check()?;
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                let fresh = usage::insert_new(conn, &parsed).await?;
                let fresh: std::collections::HashSet<&str> =
                    fresh.iter().map(String::as_str).collect();
                // One charge per user for the batch's new records.
                let mut per_user: BTreeMap<Uuid, (Decimal, usize)> = BTreeMap::new();
                for r in parsed
                    .iter()
                    .filter(|r| fresh.contains(r.usage_id.as_str()))
                {
                    let slot = per_user.entry(r.user_id).or_default();
                    slot.0 += r.cost;
                    slot.1 += 1;
                }
                let mut charged = Decimal::ZERO;
                for (user, (cost, count)) in &per_user {
                    if cost.is_zero() {
                        continue;
                    }
                    let notes = format!("usage: {count} records");
                    let (_, from_bonus) =
                        ledger::charge(conn, *user, *cost, &notes, ledger::Overdraft::Allowed)
                            .await?
                            .ok_or_else(|| {
                                Error::Internal("an allowed overdraft was refused".into())
                            })?;
                    charged += cost;
                    record
                        .clone()
                        .subject(&user.to_string())
                        .comment("amount", money::text(*cost))
                        .comment("from_bonus", money::text(from_bonus))
                        .comment("records", count.to_string())
                        .write(conn)
                        .await?;
                }
                Ok(pb::RecordUsageResponse {
                    accepted: fresh.len() as i32,
                    duplicates: (parsed.len() - fresh.len()) as i32,
                    charged: convert::decimal(charged),
                })
            })
            .await
        }
        .await;
        outbox::respond(&self.pool, record, result, Error::is_domain).await
    }

    async fn get_billing_history(
        &self,
        request: Request<pb::GetBillingHistoryRequest>,
    ) -> Result<Response<pb::GetBillingHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let id = user_id("user_id", &r.user_id, &mut v);
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
        v.check().map_err(Error::from)?;
        caller.ensure_may_act_on(&r.user_id)?;
        let environment = Some(r.environment.as_str()).filter(|e| !e.is_empty());
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let rows = usage::history(
            &mut conn,
            id,
            start,
            end,
            unit,
            r.group_by_node,
            environment,
        )
        .await
        .map_err(Error::from)?;
        let mut totals = usage::HistoryRow {
            interval_start: start,
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
        Ok(Response::new(pb::GetBillingHistoryResponse {
            rows: rows.iter().map(convert::history_row).collect(),
            totals: Some(convert::history_row(&totals)),
        }))
    }

    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let raw = request.into_inner().user_id;
        let mut v = FieldViolations::new();
        let id = user_id("user_id", &raw, &mut v);
        v.check().map_err(Error::from)?;
        caller.ensure_may_act_on(&raw)?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let envs = usage::environments(&mut conn, id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: envs
                .into_iter()
                .map(|e| pb::Environment {
                    name: e.name,
                    node_ids: e.node_ids,
                    last_usage_time: Some(convert::timestamp(e.last_usage)),
                })
                .collect(),
        }))
    }

    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::CreatePlanResponse>, Status> {
        self.create_plan_impl(request).await
    }

    async fn list_plans(
        &self,
        _request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        self.list_plans_impl().await
    }

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        self.create_subscription_impl(request).await
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        self.cancel_subscription_impl(request).await
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        self.list_subscriptions_impl(request).await
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        self.list_invoices_impl(request).await
    }
}
