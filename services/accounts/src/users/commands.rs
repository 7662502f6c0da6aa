//! Registration and profile use cases. Each runs in the command runner's
//! transaction ([`Tx`]) and notes its audit comments there; the gRPC layer
//! and the `steward` CLI call the same functions.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use steward_kit::{
    Commands, FieldViolations, RequestContext, Tx, auth::Caller, db::Pool, outbox::AuditRecord,
};
use uuid::Uuid;

use super::store::{self as users, NewUser, UserChanges};
use crate::{
    SOURCE,
    domain::{Role, User, UserStatus, erasure::digest, identity, validate},
    error::{self, CONSTRAINTS, Error},
    groups::store as groups,
    identity::passwords,
    notify,
    settings::store as settings,
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
    /// The password as typed; hashed by [`hash_password`] before the
    /// transaction starts (argon2 is slow on purpose).
    pub password: Option<String>,
}

/// A registration whose password is hashed: what [`create_user`] takes.
#[derive(Debug, Clone)]
pub struct Registration {
    input: NewUserInput,
    password_hash: Option<String>,
}

/// Hashes the password of a validated registration (outside any
/// transaction: the hash is CPU work, not a reason to hold a connection).
pub async fn hash_password(input: Result<NewUserInput, Error>) -> Result<Registration, Error> {
    let mut input = input?;
    let password_hash = match input.password.take() {
        Some(password) => Some(passwords::hash(password).await?),
        None => None,
    };
    Ok(Registration {
        input,
        password_hash,
    })
}

/// The user, locked for the rest of the transaction.
pub async fn load_user(conn: &mut AsyncPgConnection, id: Uuid) -> Result<User, Error> {
    users::lock(conn, id)
        .await?
        .ok_or_else(|| error::user_not_found(id))
}

pub async fn get_user(conn: &mut AsyncPgConnection, id: Uuid) -> Result<User, Error> {
    users::get(conn, id)
        .await?
        .ok_or_else(|| error::user_not_found(id))
}

fn check_etag(user: &User, etag: &str) -> Result<(), Error> {
    if !etag.is_empty() && etag != user.etag() {
        return Err(error::etag_mismatch());
    }
    Ok(())
}

/// Refuses an email held by a live account, or one erased under
/// PSEUDOANONYMIZATION (the platform salt makes its digest recognisable).
pub async fn ensure_email_available(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> Result<(), Error> {
    if users::find_live_by_email(conn, email).await?.is_some() {
        return Err(error::email_taken());
    }
    let (_, platform_salt) = settings::get(conn).await?;
    if users::erased_digest_exists(conn, &digest(&platform_salt, email)).await? {
        return Err(error::email_blocked());
    }
    Ok(())
}

/// Registers a user; a concurrent registration of the same email is
/// refused through the constraint table.
pub async fn create_user(tx: &mut Tx<'_>, registration: Registration) -> Result<User, Error> {
    let Registration {
        input,
        password_hash,
    } = registration;
    if !groups::exists(tx.conn, &input.group).await? {
        return Err(Error::invalid("group", "unknown group"));
    }
    ensure_email_available(tx.conn, &input.email).await?;
    let new = NewUser {
        id: Uuid::now_v7(),
        email: input.email,
        status: input.status.as_str().to_owned(),
        group_name: input.group,
        roles: input.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        phone: input.phone,
        reseller: input.reseller,
        notes: input.notes,
        ext_billing_id: input.ext_billing_id,
        password_hash,
    };
    let user = users::insert(tx.conn, new).await?;
    crate::quotas::membership(
        tx.conn,
        crate::quotas::MembershipKind::UserCreated,
        user.id,
        &user.group,
    )
    .await?;
    tx.note(|r| {
        r.subject(&user.id.to_string())
            .comment("email", user.email.clone())
            .comment("group", user.group.clone())
            .comment("roles", role_names(&user.roles).join(","))
    });
    Ok(user)
}

fn role_names(roles: &[Role]) -> Vec<&'static str> {
    roles.iter().map(|r| r.as_str()).collect()
}

/// `steward user create-admin`: an ACTIVE USER_ADMIN in the `billing`
/// group, audited as a SYSTEM action.
pub async fn create_admin(pool: &Pool, email: &str, password: &str) -> Result<User, Error> {
    let mut v = FieldViolations::new();
    let email = validate::email("email", email, &mut v);
    identity::password("password", password, &mut v);
    let input = v.check().map_err(Error::from).map(|()| NewUserInput {
        email,
        group: "billing".into(),
        roles: vec![Role::UserAdmin],
        phone: None,
        reseller: None,
        ext_billing_id: None,
        notes: "created with `steward user create-admin`".into(),
        status: UserStatus::Active,
        password: Some(password.to_owned()),
    });
    let input = hash_password(input).await;
    let record = AuditRecord::new(
        SOURCE,
        "user.created",
        &Caller::system(),
        &RequestContext::default(),
        "",
    )
    .comment("trigger", "steward user create-admin");
    let mut created = None;
    Commands::new(pool.clone(), CONSTRAINTS)
        .run(record, None, input, async |tx, input| {
            created = Some(create_user(tx, input).await?);
            Ok(())
        })
        .await?;
    created.ok_or_else(|| Error::Internal("create-admin returned no user".into()))
}

/// A profile patch: the columns to change and the mask's field names.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    pub id: Uuid,
    pub etag: String,
    pub changes: UserChanges,
    pub fields: Vec<String>,
}

pub async fn update_profile(tx: &mut Tx<'_>, input: ProfileUpdate) -> Result<User, Error> {
    let user = load_user(tx.conn, input.id).await?;
    check_etag(&user, &input.etag)?;
    error::ensure_live(&user)?;
    let updated = users::update(tx.conn, input.id, input.changes).await?;
    tx.note(|r| r.comment("fields", input.fields.join(",")));
    Ok(updated)
}

#[derive(Debug, Clone)]
pub struct EmailChange {
    pub id: Uuid,
    pub email: String,
    pub notify: bool,
}

/// Changes the email; with `notify`, both addresses are told.
pub async fn change_email(tx: &mut Tx<'_>, input: EmailChange) -> Result<User, Error> {
    let EmailChange { id, email, notify } = input;
    let user = load_user(tx.conn, id).await?;
    error::ensure_live(&user)?;
    if user.email == email {
        return Err(Error::precondition(
            "EMAIL_UNCHANGED",
            "the user already has this email",
        ));
    }
    ensure_email_available(tx.conn, &email).await?;
    let changes = UserChanges {
        email: Some(email.clone()),
        ..UserChanges::default()
    };
    let updated = users::update(tx.conn, id, changes).await?;
    tx.note(|r| {
        r.comment("old_email", user.email.clone())
            .comment("new_email", email.clone())
            .comment("notify", notify.to_string())
    });
    if notify {
        let params = HashMap::from([
            ("old_email".to_owned(), user.email.clone()),
            ("new_email".to_owned(), email.clone()),
        ]);
        let recipients = vec![user.email.clone(), email];
        notify::send(tx.conn, "user.email.changed", recipients, &updated, params).await?;
    }
    Ok(updated)
}

#[derive(Debug, Clone)]
pub struct RolesChange {
    pub id: Uuid,
    pub etag: String,
    pub roles: Vec<Role>,
}

pub async fn set_roles(tx: &mut Tx<'_>, input: RolesChange) -> Result<User, Error> {
    let user = load_user(tx.conn, input.id).await?;
    check_etag(&user, &input.etag)?;
    error::ensure_live(&user)?;
    let names = role_names(&input.roles);
    let changes = UserChanges {
        roles: Some(names.iter().map(|r| (*r).to_owned()).collect()),
        ..UserChanges::default()
    };
    let updated = users::update(tx.conn, input.id, changes).await?;
    tx.note(|r| {
        r.comment("from", role_names(&user.roles).join(","))
            .comment("to", names.join(","))
    });
    Ok(updated)
}

#[derive(Debug, Clone)]
pub struct NotesChange {
    pub id: Uuid,
    pub etag: String,
    pub notes: String,
}

/// Notes are administrators' remarks: settable on any account, erased or not.
pub async fn set_notes(tx: &mut Tx<'_>, input: NotesChange) -> Result<User, Error> {
    let user = load_user(tx.conn, input.id).await?;
    check_etag(&user, &input.etag)?;
    let changes = UserChanges {
        notes: Some(input.notes),
        ..UserChanges::default()
    };
    Ok(users::update(tx.conn, input.id, changes).await?)
}
