//! Commands shared by the gRPC API, the erasure job and the `steward` CLI.
//! Each runs inside the caller's transaction and writes its audit record
//! there too.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use steward_kit::{FieldViolations, outbox::AuditRecord};
use tonic::Code;
use uuid::Uuid;

use crate::{
    domain::{
        CollaborationStatus, ErasureMode, Refusal, Role, User, UserStatus,
        erasure::{digest, salt_for},
    },
    error::Error,
    store::{
        self, groups, settings,
        users::{self, NewUser, UserChanges},
    },
};

/// A validated registration.
#[derive(Debug, Clone)]
pub struct NewUserInput {
    pub email: String,
    pub group: String,
    pub roles: Vec<Role>,
    pub phone: Option<String>,
    pub reseller: Option<String>,
    pub ext_billing_id: Option<String>,
    pub notes: String,
    pub status: UserStatus,
    pub password_hash: Option<String>,
}

/// Refuses an email held by a live account, or one erased under
/// PSEUDOANONYMIZATION (the platform salt makes its digest recognisable).
pub async fn ensure_email_available(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> Result<(), Error> {
    if users::find_live_by_email(conn, email).await?.is_some() {
        return Err(email_taken());
    }
    let (_, platform_salt) = settings::get(conn).await?;
    if users::erased_digest_exists(conn, &digest(&platform_salt, email)).await? {
        return Err(Error::precondition(
            "EMAIL_BLOCKED",
            "this email belonged to an erased account and cannot be used again",
        ));
    }
    Ok(())
}

/// A concurrent writer won the race for the email: same refusal as the
/// check that came first.
pub fn email_taken_on_conflict(err: diesel::result::Error) -> Error {
    if store::is_unique_violation(&err, "users_live_email") {
        email_taken()
    } else {
        err.into()
    }
}

fn email_taken() -> Error {
    Error::Refused(
        Code::AlreadyExists,
        Refusal::new("EMAIL_TAKEN", "another account uses this email"),
    )
}

pub async fn create_user(
    conn: &mut AsyncPgConnection,
    input: NewUserInput,
    record: AuditRecord,
) -> Result<User, Error> {
    if !groups::exists(conn, &input.group).await? {
        return Err(FieldViolations::single("group", "unknown group").into());
    }
    ensure_email_available(conn, &input.email).await?;
    let id = Uuid::now_v7();
    let new = NewUser {
        id,
        email: input.email.clone(),
        status: input.status.as_str().to_owned(),
        group_name: input.group.clone(),
        roles: input.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        phone: input.phone,
        reseller: input.reseller,
        notes: input.notes,
        ext_billing_id: input.ext_billing_id,
        password_hash: input.password_hash,
    };
    let user = users::insert(conn, new)
        .await
        .map_err(email_taken_on_conflict)?;
    record
        .subject(&user.id.to_string())
        .comment("email", user.email.clone())
        .comment("group", user.group.clone())
        .comment(
            "roles",
            user.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
        .write(conn)
        .await?;
    Ok(user)
}

/// Destroys (if needed) and erases `user`: email and phone become salted
/// MD5 digests, credentials go, open collaborations are revoked, status
/// DELETED. `user` must be locked by the caller.
pub async fn erase_personal_data(
    conn: &mut AsyncPgConnection,
    user: &User,
    mode: ErasureMode,
    platform_salt: &str,
    record: AuditRecord,
) -> Result<User, Error> {
    if user.status == UserStatus::Deleted {
        return Err(Error::precondition(
            "ALREADY_DELETED",
            "personal data was already erased",
        ));
    }
    let salt = salt_for(mode, platform_salt);
    let now = Utc::now();
    let erased = users::update(
        conn,
        user.id,
        UserChanges {
            email: Some(digest(&salt, &user.email)),
            phone: Some(user.phone.as_deref().map(|p| digest(&salt, p))),
            status: Some(UserStatus::Deleted.as_str().to_owned()),
            destroyed_at: Some(Some(user.destroyed_at.unwrap_or(now))),
            erased_at: Some(Some(now)),
            password_hash: Some(None),
            two_factor_enabled: Some(false),
            ..UserChanges::default()
        },
    )
    .await?;
    revoke_open_collaborations(conn, user.id).await?;
    record
        .subject(&user.id.to_string())
        .comment("previous_status", user.status.as_str())
        .comment("mode", mode.as_str())
        .write(conn)
        .await?;
    Ok(erased)
}

async fn revoke_open_collaborations(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<()> {
    use store::schema::collaborations::dsl as c;
    diesel::update(
        c::collaborations
            .filter(c::owner_id.eq(user_id).or(c::collaborator_id.eq(user_id)))
            .filter(c::status.ne(CollaborationStatus::Revoked.as_str())),
    )
    .set((
        c::status.eq(CollaborationStatus::Revoked.as_str()),
        c::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
    .map(|_| ())
}

/// argon2id with the crate's default (OWASP-recommended) parameters. CPU
/// bound: run off the async workers.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        use argon2::{
            Argon2, PasswordHasher,
            password_hash::{SaltString, rand_core::OsRng},
        };
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password hashing: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
}

/// Does `password` match the stored argon2id `hash`? A hash that does not
/// parse matches nothing.
pub async fn verify_password(hash: String, password: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || {
        use argon2::{Argon2, PasswordHash, PasswordVerifier};
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| Error::Internal(format!("password check task: {e}")))
}

/// A hash of a random password, checked against when the email is unknown
/// so that a miss costs as much as a hit.
pub fn decoy_hash() -> String {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY
        .get_or_init(|| {
            use argon2::{
                Argon2, PasswordHasher,
                password_hash::{SaltString, rand_core::OsRng},
            };
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}
