//! Impersonation: an administrator signs in as a plain user for a while,
//! with a reason; the user is told when it starts and stops.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use steward_kit::{
    Tx,
    auth::{Actor, Caller, Grant, Role},
};
use uuid::Uuid;

use super::{
    Expiring, Issuer, chrono_duration,
    store::{self, ImpersonationSession},
};
use crate::{
    domain::User,
    error::{self, Error},
    notify,
    users::commands::load_user,
};

#[derive(Debug, Clone)]
pub struct Start {
    pub user_id: Uuid,
    pub reason: String,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Started {
    pub session: ImpersonationSession,
    pub access: Expiring,
}

/// Tells the user an administrator signed in as them (or stopped).
async fn tell_user(
    conn: &mut AsyncPgConnection,
    template: &str,
    user: &User,
    s: &ImpersonationSession,
) -> Result<(), Error> {
    let params = HashMap::from([
        ("admin_user_id".to_owned(), s.admin_id.clone()),
        ("reason".to_owned(), s.reason.clone()),
        ("session_id".to_owned(), s.id.to_string()),
        ("expire_time".to_owned(), s.expires_at.to_rfc3339()),
    ]);
    notify::send(conn, template, vec![user.email.clone()], user, params).await?;
    Ok(())
}

pub async fn start(
    tx: &mut Tx<'_>,
    issuer: &Issuer,
    caller: &Caller,
    input: Start,
) -> Result<Started, Error> {
    if caller.user_id == input.user_id.to_string() {
        return Err(Error::precondition(
            "CANNOT_IMPERSONATE_SELF",
            "an administrator cannot sign in as themselves",
        ));
    }
    let user = load_user(tx.conn, input.user_id).await?;
    error::ensure_live(&user)?;
    if user.roles.iter().any(|r| *r != Role::User) {
        return Err(error::cannot_impersonate_privileged());
    }
    let new = store::NewImpersonationSession {
        id: Uuid::now_v7(),
        admin_id: caller.user_id.clone(),
        user_id: user.id,
        reason: input.reason,
        expires_at: Utc::now() + chrono_duration(input.ttl),
    };
    let session = store::insert_session(tx.conn, new).await?;
    let sid = session.id.to_string();
    let access = issuer.access_token(&user, input.ttl, |c| {
        c.act = Some(Actor {
            sub: caller.user_id.clone(),
        });
        c.sid = Some(sid.clone());
    });
    tell_user(tx.conn, "impersonation.started", &user, &session).await?;
    tx.note(|r| {
        r.impersonation(&caller.user_id, &sid)
            .comment("reason", session.reason.clone())
            .comment("expire_time", session.expires_at.to_rfc3339())
    });
    Ok(Started { session, access })
}

/// An administrator stops any session; an impersonation token only its own.
pub fn ensure_may_stop(caller: &Caller, session_id: &str) -> Result<(), Error> {
    let own = caller.impersonation_session_id.as_deref() == Some(session_id);
    if caller.grant != Grant::Role(Role::UserAdmin) && !own {
        return Err(error::not_your_session());
    }
    Ok(())
}

pub async fn stop(
    tx: &mut Tx<'_>,
    caller: &Caller,
    id: Uuid,
) -> Result<ImpersonationSession, Error> {
    let current = store::get_session(tx.conn, id, true)
        .await?
        .ok_or_else(|| Error::not_found("impersonation_session", id))?;
    if current.ended_at.is_some() {
        return Err(Error::precondition(
            "SESSION_ENDED",
            "the impersonation session already ended",
        ));
    }
    let by = caller
        .impersonator_user_id
        .clone()
        .unwrap_or_else(|| caller.user_id.clone());
    let ended = store::end_session(tx.conn, id, &by).await?;
    super::revocations::revoke_session(tx.conn, &ended).await?;
    let user = load_user(tx.conn, ended.user_id).await?;
    tell_user(tx.conn, "impersonation.stopped", &user, &ended).await?;
    tx.note(|r| {
        r.subject(&ended.user_id.to_string())
            .impersonation(&ended.admin_id, &ended.id.to_string())
            .comment("stopped_by", by)
    });
    Ok(ended)
}
