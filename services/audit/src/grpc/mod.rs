//! `AuditIngestService` and `AuditService`: the only module that sees
//! proto types (besides the `AuditEvent` contract ingest decodes). Each
//! handler decodes, calls a command or query of a feature folder, encodes.

pub mod convert;

use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use steward_kit::{
    auth::Caller,
    outbox::AuditRecord,
    page,
    validate::{DEFAULT_PAGE, MAX_PAGE},
};
use steward_proto::{audit as pb, common};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::{
    catalog, chain, erasure,
    error::Error,
    events, export, ingest,
    state::{SOURCE, State},
    store::{events::Cursor, rollup},
};

/// Both services, ready to serve.
pub fn routes(state: State) -> tonic::service::Routes {
    tonic::service::Routes::new(
        pb::audit_ingest_service_server::AuditIngestServiceServer::new(IngestApi(state.clone())),
    )
    .add_service(pb::audit_service_server::AuditServiceServer::new(AuditApi(
        state,
    )))
}

#[derive(Clone)]
pub struct IngestApi(pub State);

#[tonic::async_trait]
impl pb::audit_ingest_service_server::AuditIngestService for IngestApi {
    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        let done = ingest::ingest(&self.0, request.into_inner().events).await?;
        Ok(Response::new(pb::IngestEventsResponse {
            accepted: done.accepted as i32,
            duplicates: done.duplicates as i32,
        }))
    }
}

#[derive(Clone)]
pub struct AuditApi(pub State);

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
        let filter = convert::filter_from(r.filter)?;
        let tokens = &self.0.tokens;
        let page = tokens
            .page::<Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let (filter, rows) = events::search(&self.0, &caller, filter, &page).await?;
        let (rows, next_page_token) = page::split(rows, page.size, |s| {
            tokens.encode(&fingerprint, &convert::cursor(s, &filter))
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
        let id = convert::event_id(&request.into_inner().event_id)?;
        let event = events::get(&self.0, id).await?;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(convert::stored(&event)),
        }))
    }

    async fn get_activity_history(
        &self,
        request: Request<pb::GetActivityHistoryRequest>,
    ) -> Result<Response<pb::GetActivityHistoryResponse>, Status> {
        let r = request.into_inner();
        let query = convert::activity_query(&r)?;
        let fingerprint = query.fingerprint();
        let tokens = &self.0.tokens;
        let page = tokens
            .page::<rollup::Cursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let rows = events::activity(&self.0, &query, &page).await?;
        let (rows, next_page_token) = page::split(rows, page.size, |a| {
            tokens.encode(
                &fingerprint,
                &rollup::Cursor {
                    actions: a.actions,
                    user_id: a.user_id.clone(),
                },
            )
        });
        Ok(Response::new(pb::GetActivityHistoryResponse {
            activities: rows.into_iter().map(convert::activity).collect(),
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
        let filter = convert::filter_from(r.filter)?;
        let format = convert::export_format(r.format)?;
        let (chunks, producer) = export::start(&self.0, record, filter, format);
        Ok(Response::new(export_stream(format, chunks, producer)))
    }

    async fn list_action_types(
        &self,
        _request: Request<pb::ListActionTypesRequest>,
    ) -> Result<Response<pb::ListActionTypesResponse>, Status> {
        let products = catalog::list(&self.0).await?;
        Ok(Response::new(pb::ListActionTypesResponse {
            products: products.into_iter().map(convert::product).collect(),
        }))
    }

    async fn register_action_types(
        &self,
        request: Request<pb::RegisterActionTypesRequest>,
    ) -> Result<Response<pb::RegisterActionTypesResponse>, Status> {
        let (_, record) =
            AuditRecord::for_request(SOURCE, "audit.action_types.registered", &request)?;
        let registration = convert::registration(request.into_inner());
        let product = catalog::register(&self.0, record, registration).await?;
        Ok(Response::new(pb::RegisterActionTypesResponse {
            product: product.map(convert::product),
        }))
    }

    async fn verify_chain(
        &self,
        request: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let r = request.into_inner();
        let outcome = chain::verify(&self.0, r.from_sequence, r.to_sequence).await?;
        Ok(Response::new(convert::verified(outcome)))
    }

    async fn create_checkpoint(
        &self,
        _request: Request<pb::CreateCheckpointRequest>,
    ) -> Result<Response<pb::CreateCheckpointResponse>, Status> {
        let checkpoint = chain::checkpoint::issue(&self.0).await?;
        Ok(Response::new(pb::CreateCheckpointResponse {
            checkpoint: Some(convert::checkpoint(&checkpoint)),
        }))
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let r = request.into_inner();
        let tokens = &self.0.tokens;
        let page = tokens
            .page::<(DateTime<Utc>, i64)>("checkpoints", r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let rows = chain::checkpoint::list(&self.0, page.after, page.limit()).await?;
        let (rows, next_page_token) = page::split(rows, page.size, |c| {
            tokens.encode("checkpoints", &(c.issued_at, c.sequence))
        });
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: rows.iter().map(convert::checkpoint).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn erase_subject_data(
        &self,
        request: Request<pb::EraseSubjectDataRequest>,
    ) -> Result<Response<pb::EraseSubjectDataResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "audit.subject_data.erased", &request)?;
        let erased = erasure::erase(&self.0, record, request.into_inner().user_id).await?;
        Ok(Response::new(pb::EraseSubjectDataResponse {
            events_erased: erased as i64,
        }))
    }

    async fn list_retention_policies(
        &self,
        _request: Request<pb::ListRetentionPoliciesRequest>,
    ) -> Result<Response<pb::ListRetentionPoliciesResponse>, Status> {
        let policies = crate::retention::list(&self.0).await?;
        Ok(Response::new(pb::ListRetentionPoliciesResponse {
            policies: policies.iter().map(convert::policy).collect(),
        }))
    }

    async fn set_retention_policy(
        &self,
        request: Request<pb::SetRetentionPolicyRequest>,
    ) -> Result<Response<pb::SetRetentionPolicyResponse>, Status> {
        let (_, record) = AuditRecord::for_request(SOURCE, "audit.retention.updated", &request)?;
        let p = request.into_inner().policy.unwrap_or_default();
        let category = convert::category(p.category);
        let policy =
            crate::retention::set(&self.0, record, p.product, category, p.retention_days).await?;
        Ok(Response::new(pb::SetRetentionPolicyResponse {
            policy: Some(convert::policy(&policy)),
        }))
    }
}

/// File chunks as they are produced; the producer's failure ends the
/// stream with its status (a client never mistakes a cut file for a whole).
fn export_stream(
    format: export::Format,
    chunks: mpsc::Receiver<Vec<u8>>,
    producer: tokio::task::JoinHandle<Result<u64, Error>>,
) -> ExportStream {
    struct St {
        chunks: mpsc::Receiver<Vec<u8>>,
        producer: Option<tokio::task::JoinHandle<Result<u64, Error>>>,
        first: bool,
    }
    let state = St {
        chunks,
        producer: Some(producer),
        first: true,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut st| async move {
            if let Some(chunk) = st.chunks.recv().await {
                let (file_name, content_type) = if st.first {
                    (
                        format.file_name().to_owned(),
                        format.content_type().to_owned(),
                    )
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
