//! Erasure use cases.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use steward_kit::{
    Tx,
    outbox::{self, AuditRecord},
};
use steward_proto::common::ErasePersonalDataRequest;
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
    crate::quotas::membership(
        conn,
        crate::quotas::MembershipKind::UserErased,
        user.id,
        &user.group,
    )
    .await?;
    // Every service keeping free text about the user (billing's notes, ...)
    // erases it too, through the outbox: it happens even if one is down now.
    let erasure_id = Uuid::now_v7();
    outbox::enqueue(
        conn,
        outbox::ERASURE,
        erasure_id,
        &ErasePersonalDataRequest {
            event_id: erasure_id.to_string(),
            user_id: user.id.to_string(),
        },
    )
    .await?;
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

/// One pass of the automatic erasure over a page of destroyed accounts.
#[derive(Debug, Default)]
pub struct DuePage {
    pub erased: usize,
    /// Destroyed accounts looked at (erased or not due yet).
    pub scanned: usize,
    /// Where the next page starts.
    pub last: Option<(chrono::DateTime<Utc>, Uuid)>,
}

/// Erases the destroyed accounts of one page (after `after`, at most
/// `limit`; rows another replica holds are skipped) whose delay has passed.
/// Each user's delay is their effective `account.personal.data.removal.delay`
/// quota, asked from quotas; when quotas cannot answer, accounts' own
/// setting. Each audit event says which (`delay_source`).
pub async fn erase_due(
    tx: &mut Tx<'_>,
    limit: i64,
    after: Option<(chrono::DateTime<Utc>, Uuid)>,
    delays: &crate::quotas::Delays,
) -> Result<DuePage, Error> {
    tx.only_extra();
    let (current, platform_salt) = settings::get(tx.conn).await?;
    if !current.auto_erase_enabled {
        return Ok(DuePage::default());
    }
    let page = users::lock_destroyed_page(tx.conn, after, limit).await?;
    let ids: Vec<Uuid> = page.iter().map(|u| u.id).collect();
    let from_quotas = match delays.days(&ids).await {
        Ok(days) => days,
        Err(error) => {
            tracing::warn!(%error, "erasure delays from quotas unavailable; using accounts' setting");
            Default::default()
        }
    };
    let fallback = i64::from(current.auto_erase_delay_days);
    tx.note(|r| r.comment("trigger", "automatic erasure"));
    let now = Utc::now();
    let mut done = DuePage {
        scanned: page.len(),
        last: page
            .last()
            .and_then(|u| u.destroyed_at.map(|at| (at, u.id))),
        ..DuePage::default()
    };
    for user in &page {
        let (days, source) = match from_quotas.get(&user.id) {
            Some(days) => (*days, "quota account.personal.data.removal.delay"),
            None => (fallback, "accounts setting auto_erase_delay_days"),
        };
        let due = user.destroyed_at.is_some_and(|at| {
            chrono::Duration::try_days(days).is_some_and(|delay| at + delay <= now)
        });
        if !due {
            continue;
        }
        let mut event = tx
            .record()
            .clone()
            .comment("delay_days", days.to_string())
            .comment("delay_source", source);
        // Only destroyed users are in the page, and they are not erased yet.
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
            done.erased += 1;
        }
    }
    Ok(done)
}
