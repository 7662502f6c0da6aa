//! Erasure use cases.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use steward_kit::{Tx, outbox::AuditRecord};
use uuid::Uuid;

use crate::{
    collaboration::store as collaborations,
    domain::{
        ErasureMode, Refusal, User, UserStatus,
        erasure::{digest, salt_for},
    },
    error::Error,
    identity::revocations,
    settings::store as settings,
    users::{
        batch::{Batch, Outcome},
        store::{self as users, UserChanges},
    },
};

/// Erasing twice is refused: the second would digest a digest.
fn ensure_not_erased(user: &User) -> Result<(), Refusal> {
    if user.status == UserStatus::Deleted {
        return Err(Refusal::new(
            "ALREADY_DELETED",
            "personal data was already erased",
        ));
    }
    Ok(())
}

/// Destroys (if needed) and erases `user`: email and phone become salted
/// MD5 digests, credentials go, open collaborations are revoked, status
/// DELETED. `user` must be locked; `record` (the user's) gets the mode.
pub async fn erase_personal_data(
    conn: &mut AsyncPgConnection,
    user: &User,
    mode: ErasureMode,
    platform_salt: &str,
    record: &mut AuditRecord,
) -> Result<Result<User, Refusal>, Error> {
    if let Err(refusal) = ensure_not_erased(user) {
        return Ok(Err(refusal));
    }
    let salt = salt_for(mode, platform_salt);
    let now = Utc::now();
    let changes = UserChanges {
        email: Some(digest(&salt, &user.email)),
        phone: Some(user.phone.as_deref().map(|p| digest(&salt, p))),
        status: Some(UserStatus::Deleted.as_str().to_owned()),
        destroyed_at: Some(Some(user.destroyed_at.unwrap_or(now))),
        erased_at: Some(Some(now)),
        password_hash: Some(None),
        two_factor_enabled: Some(false),
        ..UserChanges::default()
    };
    let erased = users::update(conn, user.id, changes).await?;
    collaborations::revoke_open_for_user(conn, user.id).await?;
    revocations::revoke_user(conn, user.id).await?;
    *record = record
        .clone()
        .subject(&user.id.to_string())
        .comment("previous_status", user.status.as_str())
        .comment("mode", mode.as_str());
    Ok(Ok(erased))
}

/// Erases each user under the current erasure mode.
pub async fn erase_users(tx: &mut Tx<'_>, ids: Vec<Uuid>) -> Result<Vec<Outcome>, Error> {
    let (current, platform_salt) = settings::get(tx.conn).await?;
    let mut batch = Batch::lock(tx, &ids).await?;
    for id in ids {
        if let Some((user, mut event)) = batch.next(tx, id) {
            let mode = current.erasure_mode;
            let result =
                erase_personal_data(tx.conn, &user, mode, &platform_salt, &mut event).await?;
            batch.done(tx, id, event, result);
        }
    }
    Ok(batch.outcomes())
}

/// Erases destroyed accounts whose delay has passed, at most `limit`
/// (rows another replica holds are skipped); returns how many.
pub async fn erase_due(tx: &mut Tx<'_>, limit: i64) -> Result<usize, Error> {
    tx.only_extra();
    let (current, platform_salt) = settings::get(tx.conn).await?;
    if !current.auto_erase_enabled {
        return Ok(0);
    }
    let delay = chrono::Duration::days(current.auto_erase_delay_days.into());
    let due = users::lock_due_for_erasure(tx.conn, Utc::now() - delay, limit).await?;
    tx.note(|r| {
        r.comment("trigger", "automatic erasure")
            .comment("delay_days", current.auto_erase_delay_days.to_string())
    });
    for user in &due {
        let mut event = tx.record().clone();
        // Only destroyed users are due, and they are not erased yet.
        if let Ok(_erased) = erase_personal_data(
            tx.conn,
            user,
            current.erasure_mode,
            &platform_salt,
            &mut event,
        )
        .await?
        {
            tx.audit(event);
        }
    }
    Ok(due.len())
}
