//! `AuthService` requests and responses.

use std::time::Duration;

use chrono::Utc;
use steward_kit::{Error, FieldViolations, auth::Caller, page::PageTokens};
use steward_proto::accounts as pb;
use uuid::Uuid;

use super::{Query, query, timestamp};
use crate::{
    IdentityConfig,
    domain::{identity, identity::API_TOKEN_PREFIX, validate},
    identity::{
        Expiring, Tokens,
        api_tokens::NewApiToken,
        commands::SignIn,
        impersonation::Start,
        passwords::PasswordChange,
        revocations::hub::Update,
        store::{ApiToken, ImpersonationSession, SessionFilter},
    },
};

pub fn tokens(t: Tokens) -> pb::TokenPair {
    let (refresh_token, refresh_token_expire_time) = match t.refresh {
        Some(r) => (r.token, Some(timestamp(r.expires))),
        None => (String::new(), None),
    };
    pb::TokenPair {
        access_token: t.access.token,
        access_token_expire_time: Some(timestamp(t.access.expires)),
        refresh_token,
        refresh_token_expire_time,
    }
}

pub fn access_only(access: Expiring) -> pb::TokenPair {
    tokens(Tokens {
        access,
        refresh: None,
    })
}

pub fn revocations(update: Update) -> pb::WatchRevocationsResponse {
    let (snapshot, entries) = match update {
        Update::Snapshot(entries) => (true, entries),
        Update::Added(entries) => (false, entries),
    };
    pb::WatchRevocationsResponse {
        snapshot,
        revocations: entries.iter().map(|e| e.to_proto()).collect(),
    }
}

pub fn api_token(t: &ApiToken) -> pb::ApiToken {
    pb::ApiToken {
        id: t.id.to_string(),
        user_id: t.user_id.to_string(),
        name: t.name.clone(),
        create_time: Some(timestamp(t.created_at)),
        expire_time: Some(timestamp(t.expires_at)),
        last_use_time: t.last_used_at.map(timestamp),
    }
}

pub fn session(s: &ImpersonationSession) -> pb::ImpersonationSession {
    pb::ImpersonationSession {
        id: s.id.to_string(),
        admin_user_id: s.admin_id.clone(),
        user_id: s.user_id.to_string(),
        reason: s.reason.clone(),
        start_time: Some(timestamp(s.started_at)),
        expire_time: Some(timestamp(s.expires_at)),
        end_time: s.ended_at.map(timestamp),
        active: s.is_active(Utc::now()),
    }
}

/// A lifetime: zero or absent is `default`, beyond `max` is refused.
fn duration(
    field: &str,
    value: Option<&prost_types::Duration>,
    default: Duration,
    max: Duration,
    v: &mut FieldViolations,
) -> Duration {
    let Some(d) = value else { return default };
    if d.seconds < 0 || d.nanos < 0 {
        v.add(field, "must not be negative");
        return default;
    }
    let d = Duration::new(d.seconds as u64, d.nanos as u32);
    if d.is_zero() {
        default
    } else if d > max {
        v.add(
            field,
            format!("must be at most {}", humantime::format_duration(max)),
        );
        default
    } else {
        d
    }
}

/// Text of `min..=max` characters after trimming.
fn bounded(field: &str, raw: &str, max: usize, v: &mut FieldViolations) -> String {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > max {
        v.add(field, format!("must be 1 to {max} characters"));
    }
    text.to_owned()
}

pub fn sign_in(r: pb::SignInRequest) -> Result<SignIn, Error> {
    let mut v = FieldViolations::new();
    let email = validate::email("email", &r.email, &mut v);
    if r.password.is_empty() {
        v.add("password", "required");
    }
    if r.device.chars().count() > 200 {
        v.add("device", "must be at most 200 characters");
    }
    v.check()?;
    Ok(SignIn {
        email,
        password: r.password,
        totp_code: r.totp_code,
        device: r.device,
    })
}

pub fn refresh_token(raw: String) -> Result<String, Error> {
    if raw.is_empty() {
        return Err(Error::invalid("refresh_token", "required"));
    }
    Ok(raw)
}

pub fn api_token_secret(raw: String) -> Result<String, Error> {
    if !raw.starts_with(API_TOKEN_PREFIX) {
        return Err(Error::invalid("secret", "not an API token"));
    }
    Ok(raw)
}

/// The user a caller acts on: its id, and the caller may.
pub fn own_user(caller: &Caller, raw: &str) -> Result<Uuid, Error> {
    let id = super::id("user_id", raw)?;
    caller.may_act_on(raw)?;
    Ok(id)
}

pub fn password_change(
    caller: &Caller,
    r: &pb::ChangePasswordRequest,
) -> Result<PasswordChange, Error> {
    let mut v = FieldViolations::new();
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    identity::password("new_password", &r.new_password, &mut v);
    if r.new_password == r.current_password {
        v.add("new_password", "must differ from the current password");
    }
    v.check()?;
    caller.may_act_on(&r.user_id)?;
    Ok(PasswordChange {
        user_id,
        current: r.current_password.clone(),
        new: r.new_password.clone(),
    })
}

pub fn new_api_token(
    caller: &Caller,
    config: &IdentityConfig,
    r: &pb::CreateApiTokenRequest,
) -> Result<NewApiToken, Error> {
    let mut v = FieldViolations::new();
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    let name = bounded("name", &r.name, 100, &mut v);
    let ttl = duration(
        "ttl",
        r.ttl.as_ref(),
        config.api_token_default_ttl,
        config.api_token_max_ttl,
        &mut v,
    );
    v.check()?;
    caller.may_act_on(&r.user_id)?;
    Ok(NewApiToken { user_id, name, ttl })
}

pub fn list_api_tokens(
    tokens: &PageTokens,
    caller: &Caller,
    r: &pb::ListApiTokensRequest,
) -> Result<Query<Uuid, Uuid>, Error> {
    let mut v = FieldViolations::new();
    let id = validate::id("user_id", &r.user_id, &mut v);
    let fingerprint = format!("api_tokens|{id}");
    let q = query(tokens, id, fingerprint, r.page.as_ref(), v)?;
    caller.may_act_on(&r.user_id)?;
    Ok(q)
}

pub fn start_impersonation(
    config: &IdentityConfig,
    r: &pb::StartImpersonationRequest,
) -> Result<Start, Error> {
    let mut v = FieldViolations::new();
    let user_id = validate::id("user_id", &r.user_id, &mut v);
    let reason = bounded("reason", &r.reason, 500, &mut v);
    let ttl = duration(
        "ttl",
        r.ttl.as_ref(),
        config.impersonation_default_ttl,
        config.impersonation_max_ttl,
        &mut v,
    );
    v.check()?;
    Ok(Start {
        user_id,
        reason,
        ttl,
    })
}

pub fn list_sessions(
    tokens: &PageTokens,
    r: &pb::ListImpersonationSessionsRequest,
) -> Result<Query<SessionFilter, Uuid>, Error> {
    let mut v = FieldViolations::new();
    let filter = SessionFilter {
        admin_id: Some(r.admin_user_id.clone()).filter(|a| !a.is_empty()),
        user_id: (!r.user_id.is_empty()).then(|| validate::id("user_id", &r.user_id, &mut v)),
        active_only: r.active_only,
    };
    let fingerprint = format!("sessions|{filter:?}");
    query(tokens, filter, fingerprint, r.page.as_ref(), v)
}
