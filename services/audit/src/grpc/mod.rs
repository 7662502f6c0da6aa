//! `AuditIngestService` and `AuditService`: the only module that sees
//! proto types.

pub mod convert;

use std::{
    collections::HashSet,
    pin::Pin,
    sync::{Arc, RwLock},
};

use chrono::{Duration, NaiveDate, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::Stream;
use steward_kit::{
    FieldViolations,
    auth::Caller,
    db::Pool,
    outbox::AuditRecord,
    page::{self, PageTokens},
};
use steward_proto::{audit as pb, common};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{event::Event, validate},
    error::Error,
    export,
    store::{
        catalog, events,
        retention::{self, Policy},
        rollup,
    },
    writer::{self, KnownPartitions, Writer},
};

/// The `source`/`product` of the audit service's own events.
pub const SOURCE: &str = "audit";
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// Longest time range one query may span.
pub const MAX_SPAN_DAYS: i64 = 366;

/// Known (product, action) pairs, reloaded when an unknown one shows up
/// (another replica may have registered it).
#[derive(Clone, Default)]
pub struct Catalog(Arc<RwLock<HashSet<(String, String)>>>);

impl Catalog {
    async fn known_for(
        &self,
        pool: &Pool,
        wanted: impl Iterator<Item = (String, String)>,
    ) -> Result<HashSet<(String, String)>, Error> {
        let missing = {
            let known = self.0.read().expect("not poisoned");
            wanted.into_iter().any(|pair| !known.contains(&pair))
        };
        if missing {
            let mut conn = pool.get().await?;
            let fresh = catalog::known(&mut conn).await?;
            *self.0.write().expect("not poisoned") = fresh;
        }
        Ok(self.0.read().expect("not poisoned").clone())
    }
}

#[derive(Clone)]
pub struct Shared {
    pub pool: Pool,
    pub writer: Writer,
    pub catalog: Catalog,
    pub known: KnownPartitions,
    pub tokens: PageTokens,
}

impl Shared {
    /// Validates and converts a batch; violations name the event index.
    async fn validate(&self, batch: &[pb::AuditEvent]) -> Result<Vec<Event>, Error> {
        let mut v = FieldViolations::new();
        if batch.len() > validate::MAX_BATCH {
            v.add(
                "events",
                format!("at most {} events per call", validate::MAX_BATCH),
            );
            return Err(v.into());
        }
        let known = self
            .catalog
            .known_for(
                &self.pool,
                batch.iter().map(|e| (e.product.clone(), e.action.clone())),
            )
            .await?;
        let now = Utc::now();
        let events: Vec<Event> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, e)| convert::event_from(i, e, &known, now, &mut v))
            .collect();
        v.check()?;
        Ok(events)
    }

    /// Records the audit service's own action in the chain, inside `conn`'s
    /// transaction.
    async fn record_own(
        &self,
        conn: &mut AsyncPgConnection,
        record: &AuditRecord,
    ) -> Result<(), Error> {
        let (_, event) = record.finish();
        let known = self
            .catalog
            .known_for(
                &self.pool,
                std::iter::once((event.product.clone(), event.action.clone())),
            )
            .await?;
        let mut v = FieldViolations::new();
        let own = convert::event_from(0, &event, &known, Utc::now(), &mut v)
            .ok_or_else(|| Error::Internal(format!("own audit event invalid: {v}")))?;
        // Partitions it creates are not remembered: the caller's transaction
        // may still roll back. The next ingest or housekeeping pass caches them.
        writer::append(conn, &self.known, &[own]).await?;
        Ok(())
    }
}

#[derive(Clone)]
pub struct IngestApi(pub Shared);

#[tonic::async_trait]
impl pb::audit_ingest_service_server::AuditIngestService for IngestApi {
    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        let batch = request.into_inner().events;
        let events = self.0.validate(&batch).await?;
        if events.is_empty() {
            return Ok(Response::new(pb::IngestEventsResponse::default()));
        }
        let fresh = self.0.writer.submit(events).await?;
        let accepted = fresh.iter().filter(|f| **f).count() as i32;
        Ok(Response::new(pb::IngestEventsResponse {
            accepted,
            duplicates: fresh.len() as i32 - accepted,
        }))
    }
}

#[derive(Clone)]
pub struct AuditApi(pub Shared);

fn optional(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The store filter of a request, with the documented time defaults.
fn filter_from(f: Option<pb::EventFilter>) -> Result<events::Filter, Error> {
    let f = f.unwrap_or_default();
    let mut v = FieldViolations::new();
    let end = match &f.end_time {
        Some(t) => convert::time_from(t).unwrap_or_else(|| {
            v.add("filter.end_time", "out of range");
            Utc::now()
        }),
        None => Utc::now() + Duration::seconds(1),
    };
    let start = match &f.start_time {
        Some(t) => convert::time_from(t).unwrap_or_else(|| {
            v.add("filter.start_time", "out of range");
            end
        }),
        None => end - Duration::days(30),
    };
    if start > end {
        v.add("filter.start_time", "after end_time");
    } else if end - start > Duration::days(MAX_SPAN_DAYS) {
        v.add(
            "filter.start_time",
            format!("the range may span at most {MAX_SPAN_DAYS} days"),
        );
    }
    let category = match pb::Category::try_from(f.category) {
        Ok(pb::Category::Unspecified) => None,
        Ok(c) => Some(c as i16),
        Err(_) => {
            v.add("filter.category", "unknown category");
            None
        }
    };
    let result = match common::Result::try_from(f.result) {
        Ok(common::Result::Unspecified) => None,
        Ok(r) => Some(r as i16),
        Err(_) => {
            v.add("filter.result", "unknown result");
            None
        }
    };
    if f.actions.len() > 100 {
        v.add("filter.actions", "at most 100 actions");
    }
    v.check()?;
    let mut actions = f.actions.clone();
    actions.sort();
    actions.dedup();
    Ok(events::Filter {
        subject_user_id: optional(&f.subject_user_id),
        actor_user_id: optional(&f.actor_user_id),
        modified_user_id: optional(&f.modified_user_id),
        impersonator_user_id: optional(&f.impersonator_user_id),
        impersonation_session_id: optional(&f.impersonation_session_id),
        token_id: optional(&f.token_id),
        project: optional(&f.project),
        product: optional(&f.product),
        actions,
        category,
        result,
        client_ip: optional(&f.client_ip),
        start,
        end,
    })
}

fn parse_date(field: &str, raw: &str, v: &mut FieldViolations) -> NaiveDate {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap_or_else(|_| {
        v.add(field, "a date such as 2026-11-22");
        NaiveDate::MIN
    })
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let fingerprint = format!("events|{:?}", r.filter);
        let mut filter = filter_from(r.filter)?;
        // Without an administrative role, only one's own log.
        if !caller.is_privileged() {
            match &filter.subject_user_id {
                None => filter.subject_user_id = Some(caller.user_id.clone()),
                Some(subject) => caller.ensure_may_act_on(subject)?,
            }
        }
        let page = self
            .0
            .tokens
            .page::<events::Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        if let Some(cursor) = &page.after {
            filter.start = cursor.start;
            filter.end = cursor.end;
        }
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let rows = events::list(&mut conn, &filter, page.after, page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page::split(rows, page.size, |s| {
            self.0.tokens.encode(
                &fingerprint,
                &events::Cursor {
                    occurred_at: s.event.occurred_at,
                    seq: s.seq,
                    start: filter.start,
                    end: filter.end,
                },
            )
        });
        Ok(Response::new(pb::ListEventsResponse {
            events: rows.iter().map(convert::stored).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        let raw = request.into_inner().event_id;
        let id = Uuid::parse_str(&raw)
            .map_err(|_| Error::from(FieldViolations::single("event_id", "must be a UUID")))?;
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let event = events::get(&mut conn, id)
            .await
            .map_err(Error::from)?
            .ok_or(Error::NotFound {
                what: "event",
                id: raw,
            })?;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(convert::stored(&event)),
        }))
    }

    async fn get_activity_history(
        &self,
        request: Request<pb::GetActivityHistoryRequest>,
    ) -> Result<Response<pb::GetActivityHistoryResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        let start = parse_date("start_date", &r.start_date, &mut v);
        let end = parse_date("end_date", &r.end_date, &mut v);
        if v.is_empty() && start > end {
            v.add("start_date", "after end_date");
        }
        if r.user_ids.len() > 1000 {
            v.add("user_ids", "at most 1000 users");
        }
        let order = match pb::ActivityOrder::try_from(r.order_by) {
            Ok(pb::ActivityOrder::ActionsDesc) => rollup::Order::ActionsDesc,
            Ok(_) => rollup::Order::UserId,
            Err(_) => {
                v.add("order_by", "unknown order");
                rollup::Order::UserId
            }
        };
        v.check().map_err(Error::from)?;
        let fingerprint = format!("activity|{start}|{end}|{:?}|{order:?}", r.user_ids);
        let page = self
            .0
            .tokens
            .page::<rollup::Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let rows = rollup::activity(
            &mut conn,
            start,
            end,
            &r.user_ids,
            order,
            page.after.as_ref(),
            page.limit(),
        )
        .await
        .map_err(Error::from)?;
        let (rows, next_page_token) = page::split(rows, page.size, |a| {
            self.0.tokens.encode(
                &fingerprint,
                &rollup::Cursor {
                    actions: a.actions,
                    user_id: a.user_id.clone(),
                },
            )
        });
        Ok(Response::new(pb::GetActivityHistoryResponse {
            activities: rows
                .into_iter()
                .map(|a| pb::UserActivity {
                    user_id: a.user_id,
                    actions_count: a.actions,
                })
                .collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    type ExportEventsStream = ExportStream;

    async fn export_events(
        &self,
        request: Request<pb::ExportEventsRequest>,
    ) -> Result<Response<Self::ExportEventsStream>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "audit.events.exported", &request)?;
        let r = request.into_inner();
        let filter = filter_from(r.filter)?;
        let format = match pb::ExportFormat::try_from(r.format) {
            Ok(pb::ExportFormat::Csv) => pb::ExportFormat::Csv,
            Ok(_) => pb::ExportFormat::Xlsx,
            Err(_) => {
                return Err(
                    Error::from(FieldViolations::single("format", "unknown format")).into(),
                );
            }
        };
        let (file_name, content_type) = match format {
            pb::ExportFormat::Csv => ("audit-log.csv", "text/csv"),
            _ => (
                "audit-log.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ),
        };
        let (chunks_tx, chunks) = mpsc::channel::<Vec<u8>>(4);
        let shared = self.0.clone();
        let summary = format!("{filter:?}");
        let producer = tokio::spawn(async move {
            let produced = match format {
                pb::ExportFormat::Csv => export::csv(shared.pool.clone(), filter, chunks_tx).await,
                _ => export::xlsx(shared.pool.clone(), filter, chunks_tx).await,
            };
            // The export is audited whether it completed or not.
            let record = record
                .comment("format", file_name.rsplit('.').next().unwrap_or_default())
                .comment("filter", summary.chars().take(2000).collect::<String>());
            let record = match &produced {
                Ok(rows) => record.comment("rows", rows.to_string()),
                Err(err) => record.failed(err.to_string()),
            };
            let mut conn = shared.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| shared.record_own(conn, &record).await)
                .await?;
            produced
        });
        let stream = export_stream(file_name, content_type, chunks, producer);
        Ok(Response::new(stream))
    }

    async fn list_action_types(
        &self,
        _request: Request<pb::ListActionTypesRequest>,
    ) -> Result<Response<pb::ListActionTypesResponse>, Status> {
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let products = catalog::list(&mut conn).await.map_err(Error::from)?;
        Ok(Response::new(pb::ListActionTypesResponse {
            products: products.into_iter().map(product).collect(),
        }))
    }

    async fn register_action_types(
        &self,
        request: Request<pb::RegisterActionTypesRequest>,
    ) -> Result<Response<pb::RegisterActionTypesResponse>, Status> {
        let (_, record) =
            AuditRecord::for_request(SOURCE, "audit.action_types.registered", &request)?;
        let r = request.into_inner();
        let mut v = FieldViolations::new();
        validate::action_name(&mut v, "product", &r.product);
        validate::required(&mut v, "title", &r.title, validate::MAX_NAME);
        if r.action_types.is_empty() || r.action_types.len() > 500 {
            v.add("action_types", "1 to 500 action types");
        }
        for (i, a) in r.action_types.iter().enumerate() {
            validate::action_name(&mut v, &format!("action_types[{i}].action"), &a.action);
            validate::required(
                &mut v,
                &format!("action_types[{i}].title"),
                &a.title,
                validate::MAX_NAME,
            );
        }
        v.check().map_err(Error::from)?;
        let actions: Vec<(String, String)> = r
            .action_types
            .iter()
            .map(|a| (a.action.clone(), a.title.clone()))
            .collect();
        let record = record
            .comment("product", r.product.clone())
            .comment("actions", actions.len().to_string());
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let shared = &self.0;
        let registered = conn
            .transaction::<_, Error, _>(async |conn| {
                catalog::register(conn, &r.product, &r.title, &actions).await?;
                shared.record_own(conn, &record).await?;
                Ok(catalog::list(conn).await?)
            })
            .await?;
        let registered = registered
            .into_iter()
            .find(|p| p.product == r.product)
            .map(product);
        Ok(Response::new(pb::RegisterActionTypesResponse {
            product: registered,
        }))
    }

    async fn verify_chain(
        &self,
        request: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let r = request.into_inner();
        if r.from_sequence < 0 || r.to_sequence < 0 {
            return Err(Error::from(FieldViolations::single(
                "from_sequence",
                "must not be negative",
            ))
            .into());
        }
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        // One snapshot for the head and the rows: appends committing meanwhile
        // must not look like rows outside the chain.
        let outcome = conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, diesel::result::Error, _>(async |conn| {
                crate::verify::verify(conn, r.from_sequence, r.to_sequence).await
            })
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::VerifyChainResponse {
            ok: outcome.broken.is_none(),
            first_broken_sequence: outcome.broken.as_ref().map(|b| b.0).unwrap_or(0),
            events_checked: outcome.checked,
            reason: outcome.broken.map(|b| b.1).unwrap_or_default(),
        }))
    }

    async fn erase_subject_data(
        &self,
        request: Request<pb::EraseSubjectDataRequest>,
    ) -> Result<Response<pb::EraseSubjectDataResponse>, Status> {
        let user_id = request.get_ref().user_id.clone();
        let (_, record) = AuditRecord::for_request(SOURCE, "audit.subject_data.erased", &request)?;
        let record = record.subject(&user_id);
        let mut v = FieldViolations::new();
        validate::required(&mut v, "user_id", &user_id, validate::MAX_ID);
        v.check().map_err(Error::from)?;
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let shared = &self.0;
        let erased = conn
            .transaction::<_, Error, _>(async |conn| {
                let erased = events::erase_subject(conn, &user_id).await?;
                let record = record.clone().comment("events", erased.to_string());
                shared.record_own(conn, &record).await?;
                Ok(erased)
            })
            .await?;
        Ok(Response::new(pb::EraseSubjectDataResponse {
            events_erased: erased as i64,
        }))
    }

    async fn list_retention_policies(
        &self,
        _request: Request<pb::ListRetentionPoliciesRequest>,
    ) -> Result<Response<pb::ListRetentionPoliciesResponse>, Status> {
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let policies = retention::list(&mut conn).await.map_err(Error::from)?;
        Ok(Response::new(pb::ListRetentionPoliciesResponse {
            policies: policies.iter().map(policy).collect(),
        }))
    }

    async fn set_retention_policy(
        &self,
        request: Request<pb::SetRetentionPolicyRequest>,
    ) -> Result<Response<pb::SetRetentionPolicyResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "audit.retention.updated", &request)?;
        let p = request.into_inner().policy.unwrap_or_default();
        let mut v = FieldViolations::new();
        if !p.product.is_empty() {
            validate::action_name(&mut v, "policy.product", &p.product);
        }
        let category = match pb::Category::try_from(p.category) {
            Ok(c) => c as i16,
            Err(_) => {
                v.add("policy.category", "unknown category");
                0
            }
        };
        if !(1..=36500).contains(&p.retention_days) {
            v.add("policy.retention_days", "between 1 and 36500");
        }
        v.check().map_err(Error::from)?;
        let new = Policy {
            product: p.product.clone(),
            category,
            days: p.retention_days,
        };
        let record = record
            .comment("product", new.product.clone())
            .comment("category", new.category.to_string())
            .comment("retention_days", new.days.to_string());
        let mut conn = self.0.pool.get().await.map_err(Error::from)?;
        let shared = &self.0;
        conn.transaction::<_, Error, _>(async |conn| {
            retention::set(conn, &new).await?;
            shared.record_own(conn, &record).await
        })
        .await?;
        Ok(Response::new(pb::SetRetentionPolicyResponse {
            policy: Some(policy(&new)),
        }))
    }
}

/// File chunks as they are produced; the producer's failure ends the
/// stream with its status (a client never mistakes a cut file for a whole).
fn export_stream(
    file_name: &'static str,
    content_type: &'static str,
    chunks: mpsc::Receiver<Vec<u8>>,
    producer: tokio::task::JoinHandle<Result<u64, Error>>,
) -> ExportStream {
    struct State {
        chunks: mpsc::Receiver<Vec<u8>>,
        producer: Option<tokio::task::JoinHandle<Result<u64, Error>>>,
        first: bool,
    }
    let state = State {
        chunks,
        producer: Some(producer),
        first: true,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut st| async move {
            if let Some(chunk) = st.chunks.recv().await {
                let (file_name, content_type) = if st.first {
                    (file_name.to_owned(), content_type.to_owned())
                } else {
                    Default::default()
                };
                st.first = false;
                let message = pb::ExportEventsResponse {
                    chunk,
                    file_name,
                    content_type,
                };
                return Some((Ok(message), st));
            }
            let producer = st.producer.take()?;
            match producer.await {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => Some((Err(Status::from(err)), st)),
                Err(err) => Some((Err(Status::internal(format!("export task: {err}"))), st)),
            }
        },
    ))
}

fn product(p: catalog::Product) -> pb::ProductActionTypes {
    pb::ProductActionTypes {
        product: p.product,
        title: p.title,
        action_types: p
            .actions
            .into_iter()
            .map(|(action, title)| pb::ActionType { action, title })
            .collect(),
    }
}

fn policy(p: &Policy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        product: p.product.clone(),
        category: i32::from(p.category),
        retention_days: p.days,
    }
}
