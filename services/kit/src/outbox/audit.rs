//! Building audit events from a request's caller and context.

use crate::db::Prepare;
use std::{collections::HashMap, time::Instant};

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use steward_proto::{
    audit::{AuditEvent, Category},
    common::Result as Outcome,
};
use uuid::Uuid;

use crate::{auth::Caller, context::RequestContext};

/// An audit event under construction; [`AuditRecord::write`] puts it in the
/// outbox of the current transaction.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    event: AuditEvent,
    caller: Caller,
    started: Instant,
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl AuditRecord {
    /// `source` is the emitting service, `subject_user_id` whose log the
    /// event belongs to.
    pub fn new(
        source: &str,
        action: &str,
        caller: &Caller,
        context: &RequestContext,
        subject_user_id: &str,
    ) -> Self {
        Self {
            event: AuditEvent {
                event_id: String::new(),
                occurred_at: None,
                product: source.to_owned(),
                action: action.to_owned(),
                category: Category::Unspecified as i32,
                actor_user_id: caller.user_id.clone(),
                subject_user_id: String::new(),
                modified_user_id: String::new(),
                impersonator_user_id: caller.impersonator_user_id.clone().unwrap_or_default(),
                impersonation_session_id: caller
                    .impersonation_session_id
                    .clone()
                    .unwrap_or_default(),
                token_id: caller.token_id.clone().unwrap_or_default(),
                project: String::new(),
                comments: HashMap::new(),
                client_ip: context.client_ip.clone(),
                user_agent: context.user_agent.clone(),
                result: Outcome::Success as i32,
                error_message: String::new(),
                duration: None,
                request_id: context.request_id.clone(),
                trace_id: context.trace_id(),
                source: source.to_owned(),
            },
            caller: caller.clone(),
            started: Instant::now(),
        }
        .subject(subject_user_id)
    }

    /// Sets whose audit log the event belongs to (known only after, say, a
    /// user is created); category and modified user follow from it.
    pub fn subject(mut self, subject_user_id: &str) -> Self {
        self.event.subject_user_id = subject_user_id.to_owned();
        self.event.category = self.caller.category_on(subject_user_id) as i32;
        self.event.modified_user_id =
            if !subject_user_id.is_empty() && subject_user_id != self.caller.user_id {
                subject_user_id.to_owned()
            } else {
                String::new()
            };
        self
    }

    /// The record of a request's caller and context; the subject is set
    /// later with [`AuditRecord::subject`] when it is known.
    pub fn for_request<T>(
        source: &str,
        action: &str,
        request: &tonic::Request<T>,
    ) -> Result<(Caller, Self), tonic::Status> {
        let caller = Caller::of(request)?;
        let record = Self::new(source, action, &caller, &RequestContext::of(request), "");
        Ok((caller, record))
    }

    pub fn product(mut self, product: &str) -> Self {
        self.event.product = product.to_owned();
        self
    }

    pub fn action(mut self, action: &str) -> Self {
        self.event.action = action.to_owned();
        self
    }

    pub fn category(mut self, category: Category) -> Self {
        self.event.category = category as i32;
        self
    }

    pub fn comment(mut self, key: &str, value: impl Into<String>) -> Self {
        self.event.comments.insert(key.to_owned(), value.into());
        self
    }

    /// The API token the action concerns (token lifecycle events).
    pub fn token_id(mut self, token_id: &str) -> Self {
        self.event.token_id = token_id.to_owned();
        self
    }

    /// The impersonation session the action concerns (its start and stop).
    pub fn impersonation(mut self, impersonator_user_id: &str, session_id: &str) -> Self {
        self.event.impersonator_user_id = impersonator_user_id.to_owned();
        self.event.impersonation_session_id = session_id.to_owned();
        self
    }

    pub fn failed(mut self, error_message: impl Into<String>) -> Self {
        self.event.result = Outcome::Failure as i32;
        self.event.error_message = error_message.into();
        self
    }

    pub fn action_name(&self) -> &str {
        &self.event.action
    }

    /// The finished event, stamped with a fresh UUIDv7 and the duration.
    pub fn finish(&self) -> (Uuid, AuditEvent) {
        let id = Uuid::now_v7();
        let mut event = self.event.clone();
        event.event_id = id.to_string();
        event.occurred_at = Some(timestamp(chrono::Utc::now()));
        let elapsed = self.started.elapsed();
        event.duration = Some(prost_types::Duration {
            seconds: elapsed.as_secs() as i64,
            nanos: elapsed.subsec_nanos() as i32,
        });
        // Whatever the request carried, ingest accepts this event.
        super::contract::conform(&mut event);
        (id, event)
    }

    /// Writes the event to the outbox; call inside the change's transaction.
    pub async fn write(&self, conn: &mut AsyncPgConnection) -> QueryResult<Uuid> {
        let (id, event) = self.finish();
        super::enqueue(conn, super::AUDIT, id, &event).await?;
        Ok(id)
    }

    /// Writes many events to the outbox in one insert and one notification,
    /// sent together (a batch of commands sharing a transaction); each
    /// carries the trace context of its own request rather than the writer's.
    pub async fn write_all(
        conn: &AsyncPgConnection,
        records: &[(AuditRecord, Option<String>)],
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bytea, Nullable, Text, Uuid as SqlUuid};
        use diesel_async::RunQueryDsl;

        if records.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(records.len());
        let mut payloads = Vec::with_capacity(records.len());
        let mut parents = Vec::with_capacity(records.len());
        for (record, traceparent) in records {
            let (id, event) = record.finish();
            ids.push(id);
            payloads.push(prost::Message::encode_to_vec(&event));
            parents.push(traceparent.clone());
        }
        let (mut a, mut b) = (conn, conn);
        let insert = diesel::sql_query(
            "INSERT INTO outbox (destination, event_id, payload, traceparent)
             SELECT $1, e, p, t FROM UNNEST($2::uuid[], $3::bytea[], $4::text[])
                 WITH ORDINALITY AS x(e, p, t, i)
             ORDER BY i",
        )
        .bind::<Text, _>(super::AUDIT)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Bytea>, _>(&payloads)
        .bind::<Array<Nullable<Text>>, _>(&parents)
        .prepared()
        .execute(&mut a);
        let notify = super::notify(&mut b, super::AUDIT);
        futures_util::try_join!(insert, notify)?;
        Ok(())
    }
}

/// Audits a refused command as FAILURE in a transaction of its own (the
/// command's was rolled back). Failing to write is logged, never raised:
/// the caller still gets the refusal.
pub async fn record_refusal(
    pool: &crate::db::Pool,
    record: AuditRecord,
    message: impl Into<String>,
) {
    let record = record.failed(message);
    // The auth layer must not record this refusal a second time.
    crate::auth::refusals::mark_audited();
    let written = match pool.get().await {
        Ok(mut conn) => record
            .write(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = written {
        tracing::error!(%error, action = record.action_name(), "cannot audit a refused command");
    }
}
