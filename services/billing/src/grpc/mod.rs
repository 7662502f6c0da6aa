//! `steward.billing.v1.BillingService`: the only module that sees proto
//! types. Each handler decodes (`convert`), runs a command of a feature
//! folder in kit's command runner, and encodes.

pub mod convert;
mod personal_data;

use prost::Message;
use steward_kit::{
    Commands, Key,
    auth::Caller,
    db::Pool,
    outbox::{AuditRecord, record_refusal},
    page::{self, PageTokens},
    validate::{DEFAULT_PAGE, MAX_PAGE},
};
use steward_proto::{billing as pb, common};
use tonic::{Request, Response, Status};

use crate::{
    BillingConfig, SOURCE,
    domain::money,
    error::{CONSTRAINTS, Error},
    ledger::{
        self,
        batcher::{Applied, Batcher, Encode, Kind, MoneyOp},
        commands::MoneyInput,
    },
    subscriptions, usage,
};

#[derive(Clone)]
pub struct BillingApi {
    commands: Commands,
    tokens: PageTokens,
    config: BillingConfig,
    ledger: Batcher,
}

/// Refill and Withdraw batchers (shards of accounts; one account is always
/// in the same shard).
const LEDGER_SHARDS: usize = 4;

impl BillingApi {
    /// Starts the ledger batchers: call inside the runtime.
    pub fn new(pool: Pool, tokens: PageTokens, config: BillingConfig) -> Self {
        Self {
            ledger: Batcher::spawn(pool.clone(), config.extra_bonus.clone(), LEDGER_SHARDS)
                .expect("start the ledger batcher thread"),
            commands: Commands::new(pool, CONSTRAINTS),
            tokens,
            config,
        }
    }

    /// A refill or withdrawal through its shard's batcher, in the command
    /// runner's envelope (invalid input audited, key replayed, record
    /// committed with the change, refusal audited).
    async fn money<T: Message + Default>(
        &self,
        kind: Kind,
        caller: &Caller,
        record: AuditRecord,
        key: Option<Key>,
        input: Result<MoneyInput, Error>,
        encode: Encode,
    ) -> Result<T, Status> {
        let input = match input {
            Ok(input) => input,
            Err(e) => {
                let e = e.resolve(CONSTRAINTS);
                if e.is_refusal() {
                    record_refusal(self.commands.pool(), record, e.to_string()).await;
                }
                return Err(e.into());
            }
        };
        let done = self
            .ledger
            .submit(MoneyOp {
                kind,
                actor: caller.user_id.clone(),
                input,
                record,
                key,
                traceparent: steward_kit::telemetry::current_traceparent(),
                encode,
            })
            .await;
        match done {
            Ok(bytes) => T::decode(bytes.as_slice())
                .map_err(|e| Error::Internal(format!("ledger response: {e}")).into()),
            Err(e) => {
                if e.is_refusal() {
                    // The batcher wrote its FAILURE record.
                    steward_kit::auth::refusals::mark_audited();
                }
                Err(e.into())
            }
        }
    }

    fn balance(&self, user_id: &str, balances: ledger::store::Balances) -> Option<pb::Balance> {
        Some(convert::balance(user_id, balances, &self.config.currency))
    }
}

/// The audit record of a money command: whose balance, how much (the
/// amount applied, normalised; the raw text when it did not parse), why.
fn money_record(
    record: AuditRecord,
    user_id: &str,
    raw_amount: Option<&common::Decimal>,
    notes: &str,
    input: &Result<MoneyInput, Error>,
) -> AuditRecord {
    let record = record.subject(user_id).comment("notes", notes);
    match input {
        Ok(i) => record.comment("amount", money::text(i.amount)),
        Err(_) => record.comment(
            "amount",
            raw_amount.map(|a| a.value.clone()).unwrap_or_default(),
        ),
    }
}

fn with_balance_type(record: AuditRecord, input: &Result<MoneyInput, Error>) -> AuditRecord {
    match input {
        Ok(i) => record.comment("balance_type", i.balance_type.as_str()),
        Err(_) => record,
    }
}

#[tonic::async_trait]
impl pb::billing_service_server::BillingService for BillingApi {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = Caller::of(&request)?;
        let raw = request.into_inner().user_id;
        let id = convert::id("user_id", &raw)?;
        caller.may_act_on(&raw)?;
        let balances = self
            .commands
            .read(async |conn| Ok(ledger::store::balances(conn, &[id]).await?))
            .await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: self.balance(&raw, balances.get(&id).copied().unwrap_or_default()),
        }))
    }

    async fn batch_get_balances(
        &self,
        request: Request<pb::BatchGetBalancesRequest>,
    ) -> Result<Response<pb::BatchGetBalancesResponse>, Status> {
        let raw = request.into_inner().user_ids;
        let ids = convert::user_ids(&raw)?;
        let found = self
            .commands
            .read(async |conn| Ok(ledger::store::balances(conn, &ids).await?))
            .await?;
        Ok(Response::new(pb::BatchGetBalancesResponse {
            balances: raw
                .iter()
                .zip(&ids)
                .filter_map(|(s, id)| self.balance(s, found.get(id).copied().unwrap_or_default()))
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
        let input = convert::money_input(
            &r.request_id,
            &r.user_id,
            r.amount.as_ref(),
            &r.notes,
            Some(r.balance_type),
        );
        let record = with_balance_type(
            money_record(record, &r.user_id, r.amount.as_ref(), &r.notes, &input),
            &input,
        );
        let key = Key::of("Refill", &caller, &r.request_id, &r);
        let (currency, user_id) = (self.config.currency.clone(), r.user_id.clone());
        let response: pb::RefillResponse = self
            .money(
                Kind::Refill,
                &caller,
                record,
                key,
                input,
                Box::new(move |done: &Applied| {
                    pb::RefillResponse {
                        entries: done.entries.iter().map(convert::entry).collect(),
                        balance: Some(convert::balance(&user_id, done.balances, &currency)),
                    }
                    .encode_to_vec()
                }),
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.balance.withdrawn", &request)?;
        let r = request.into_inner();
        let input = convert::money_input(
            &r.request_id,
            &r.user_id,
            r.amount.as_ref(),
            &r.notes,
            Some(r.balance_type),
        );
        let record = with_balance_type(
            money_record(record, &r.user_id, r.amount.as_ref(), &r.notes, &input),
            &input,
        );
        let key = Key::of("Withdraw", &caller, &r.request_id, &r);
        let (currency, user_id) = (self.config.currency.clone(), r.user_id.clone());
        let response: pb::WithdrawResponse = self
            .money(
                Kind::Withdraw,
                &caller,
                record,
                key,
                input,
                Box::new(move |done: &Applied| {
                    pb::WithdrawResponse {
                        entry: done.entries.first().map(convert::entry),
                        balance: Some(convert::balance(&user_id, done.balances, &currency)),
                    }
                    .encode_to_vec()
                }),
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn grant_registration_bonus(
        &self,
        request: Request<pb::GrantRegistrationBonusRequest>,
    ) -> Result<Response<pb::GrantRegistrationBonusResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.registration_bonus.granted", &request)?;
        let r = request.into_inner();
        let input =
            convert::money_input(&r.request_id, &r.user_id, r.amount.as_ref(), &r.notes, None);
        let record = money_record(record, &r.user_id, r.amount.as_ref(), &r.notes, &input);
        let key = Key::of("GrantRegistrationBonus", &caller, &r.request_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, input| {
                let (entry, balances) =
                    ledger::commands::grant_registration_bonus(tx, &caller.user_id, &input).await?;
                Ok(pb::GrantRegistrationBonusResponse {
                    entry: Some(convert::entry(&entry)),
                    balance: self.balance(&r.user_id, balances),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn list_funding_history(
        &self,
        request: Request<pb::ListFundingHistoryRequest>,
    ) -> Result<Response<pb::ListFundingHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let mut q = convert::funding_query(&r)?;
        caller.may_act_on(&r.user_id)?;
        let fingerprint = format!(
            "funding|{}|{:?}|{:?}|{:?}",
            q.user_id, r.start_time, r.end_time, q.operations
        );
        let page = self
            .tokens
            .page::<ledger::history::Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        // Later pages keep the first page's period, so "now" does not move.
        if let Some(cursor) = &page.after {
            (q.start, q.end) = (cursor.start, cursor.end);
        }
        let (rows, totals) = self
            .commands
            .read(async |conn| {
                ledger::commands::funding_history(conn, &q, page.after, page.limit()).await
            })
            .await?;
        let (rows, next_page_token) = page::split(rows, page.size, |e| {
            self.tokens.encode(
                &fingerprint,
                &ledger::history::Cursor {
                    created_at: e.created_at,
                    id: e.id,
                    start: q.start,
                    end: q.end,
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
        let r = request.into_inner();
        let input = convert::usage_records(&r.records, &self.config.tariffs);
        let response = self
            .commands
            .run(record, None, input, async |tx, records| {
                let done = usage::commands::record(tx, &records).await?;
                Ok(pb::RecordUsageResponse {
                    accepted: done.accepted as i32,
                    duplicates: done.duplicates as i32,
                    charged: convert::decimal(done.charged),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_billing_history(
        &self,
        request: Request<pb::GetBillingHistoryRequest>,
    ) -> Result<Response<pb::GetBillingHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let q = convert::usage_query(&r)?;
        caller.may_act_on(&r.user_id)?;
        let (rows, totals) = self
            .commands
            .read(async |conn| usage::commands::history(conn, &q).await)
            .await?;
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
        let id = convert::id("user_id", &raw)?;
        caller.may_act_on(&raw)?;
        let envs = self
            .commands
            .read(async |conn| usage::commands::environments(conn, id).await)
            .await?;
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: envs.into_iter().map(convert::environment).collect(),
        }))
    }

    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::CreatePlanResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "billing.plan.created", &request)?;
        let input = convert::new_plan(request.get_ref());
        let response = self
            .commands
            .run(record, None, input, async |tx, input| {
                let created = subscriptions::commands::create_plan(tx, &input).await?;
                Ok(pb::CreatePlanResponse {
                    plan: Some(convert::plan(&created)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn list_plans(
        &self,
        _request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let plans = self
            .commands
            .read(async |conn| subscriptions::commands::plans(conn).await)
            .await?;
        Ok(Response::new(pb::ListPlansResponse {
            plans: plans.iter().map(convert::plan).collect(),
        }))
    }

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.subscription.created", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let input =
            convert::new_subscription(&r).and_then(|i| caller.may_act_on(&r.user_id).map(|_| i));
        let key = Key::of("CreateSubscription", &caller, &r.request_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, input| {
                let (created, first) = subscriptions::commands::subscribe(tx, &input).await?;
                Ok(pb::CreateSubscriptionResponse {
                    subscription: Some(convert::subscription(&created)),
                    invoice: Some(convert::invoice(&first)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.subscription.cancelled", &request)?;
        let input = convert::id("subscription_id", &request.get_ref().subscription_id);
        let response = self
            .commands
            .run(record, None, input, async |tx, id| {
                let after = subscriptions::commands::cancel(tx, &caller, id).await?;
                Ok(pb::CancelSubscriptionResponse {
                    subscription: Some(convert::subscription(&after)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let raw = request.into_inner().user_id;
        let id = convert::id("user_id", &raw)?;
        caller.may_act_on(&raw)?;
        let subs = self
            .commands
            .read(async |conn| subscriptions::commands::of_user(conn, id).await)
            .await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: subs.iter().map(convert::subscription).collect(),
        }))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = convert::id("subscription_id", &request.get_ref().subscription_id)?;
        let list = self
            .commands
            .read(async |conn| subscriptions::commands::invoices(conn, &caller, id).await)
            .await?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: list.iter().map(convert::invoice).collect(),
        }))
    }
}
