//! Notifications accounts sends through its outbox (they commit with the
//! change that causes them).

use std::collections::HashMap;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use steward_kit::outbox;
use steward_proto::notifications::Notification;
use uuid::Uuid;

use crate::{SOURCE, domain::User};

/// Queues `template_id` for `recipients` about `subject`.
pub async fn send(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    recipients: Vec<String>,
    subject: &User,
    params: HashMap<String, String>,
) -> QueryResult<()> {
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    let message = Notification {
        event_id: id.to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        template_id: template_id.to_owned(),
        recipients,
        subject_user_id: subject.id.to_string(),
        params,
        source: SOURCE.to_owned(),
    };
    outbox::enqueue(conn, outbox::NOTIFICATIONS, id, &message).await
}
