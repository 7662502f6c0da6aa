//! Erasure: the personal data of a user's events blanked (the chain covers
//! only its salted digest, so it still verifies).

use steward_kit::{FieldViolations, outbox::AuditRecord};

use crate::{domain::validate, error::Error, state::State, store::events};

/// Erases `user_id`'s personal data from every event they are subject,
/// actor or modified user of; returns how many events changed.
pub async fn erase(state: &State, record: AuditRecord, user_id: String) -> Result<usize, Error> {
    let record = record.subject(&user_id);
    let mut v = FieldViolations::new();
    validate::required(&mut v, "user_id", &user_id, validate::MAX_ID);
    let input = v.check().map(|_| user_id).map_err(Error::from);
    state
        .run_own(record, input, async |tx, user_id: String| {
            let erased = events::erase_subject(tx.conn, &state.signer, &user_id).await?;
            tx.note(|r| r.comment("events", erased.to_string()));
            Ok(erased)
        })
        .await
}
