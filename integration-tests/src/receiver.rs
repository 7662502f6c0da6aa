//! A real `AuditIngestService` server that records what it receives: the
//! far end of the outbox relay in tests (the audit service has its own issue).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use steward_proto::audit::{
    AuditEvent, IngestEventsRequest, IngestEventsResponse,
    audit_ingest_service_server::{AuditIngestService, AuditIngestServiceServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
pub struct AuditReceiver {
    events: Arc<Mutex<Vec<AuditEvent>>>,
    /// Calls left to refuse with UNAVAILABLE (to exercise retries).
    fail_next: Arc<Mutex<u32>>,
    calls: Arc<Mutex<u32>>,
}

impl AuditReceiver {
    /// Starts on 127.0.0.1:0 and returns the receiver and its endpoint.
    pub async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = AuditIngestServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (receiver, endpoint)
    }

    pub fn fail_next(&self, calls: u32) {
        *self.fail_next.lock().unwrap() = calls;
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn calls(&self) -> u32 {
        *self.calls.lock().unwrap()
    }
}

#[tonic::async_trait]
impl AuditIngestService for AuditReceiver {
    async fn ingest_events(
        &self,
        request: Request<IngestEventsRequest>,
    ) -> Result<Response<IngestEventsResponse>, Status> {
        *self.calls.lock().unwrap() += 1;
        if request.metadata().get("authorization").is_none() {
            return Err(Status::unauthenticated("relay sent no token"));
        }
        {
            let mut fail = self.fail_next.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(Status::unavailable("refusing on purpose"));
            }
        }
        let mut events = self.events.lock().unwrap();
        let known: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let mut accepted = 0;
        let mut duplicates = 0;
        for event in request.into_inner().events {
            if known.contains(&event.event_id) {
                duplicates += 1;
            } else {
                accepted += 1;
                events.push(event);
            }
        }
        Ok(Response::new(IngestEventsResponse {
            accepted,
            duplicates,
        }))
    }
}
