//! `steward.accounts.v1.AccountsService`: the only module that sees proto
//! types. A handler decodes (`convert`), runs a command in the command
//! runner (`Commands::run` for changes, `Commands::read` for reads) and
//! encodes; the runner owns the envelope (request-id replay, transaction,
//! audit record, auditing a refusal after the rollback).

pub mod auth;
pub mod convert;

use steward_kit::auth::KeySet;
use steward_kit::{Commands, Error, Key, Tx, auth::Caller, outbox::AuditRecord, page::PageTokens};
use steward_proto::accounts::{
    self as pb, accounts_service_server::AccountsServiceServer,
    auth_service_server::AuthServiceServer,
};
use tonic::{Request, Response, Status};

use crate::{
    SOURCE, collaboration,
    erasure::commands as erasure,
    groups,
    identity::Issuer,
    settings,
    users::{self, batch},
};
use convert::accounts as req;

/// Both services of accounts, ready to serve.
pub fn routes(
    commands: Commands,
    issuer: Issuer,
    retired_keys: KeySet,
    tokens: PageTokens,
    revocations: crate::identity::revocations::hub::Hub,
    templates: crate::notify::Templates,
) -> tonic::service::Routes {
    let auth = auth::AuthApi::new(
        commands.clone(),
        issuer,
        retired_keys,
        tokens.clone(),
        revocations,
    );
    tonic::service::Routes::new(AccountsServiceServer::new(AccountsApi::new(
        commands, tokens, templates,
    )))
    .add_service(AuthServiceServer::new(auth))
}

#[derive(Clone)]
pub struct AccountsApi {
    commands: Commands,
    tokens: PageTokens,
    templates: crate::notify::Templates,
}

impl AccountsApi {
    pub fn new(
        commands: Commands,
        tokens: PageTokens,
        templates: crate::notify::Templates,
    ) -> Self {
        Self {
            commands,
            tokens,
            templates,
        }
    }
}

/// A change request on its way to the command runner: its caller, its
/// audit record and, for RPCs that replay retries, its idempotency key.
pub(crate) struct Change<'a, R> {
    commands: &'a Commands,
    caller: Caller,
    record: AuditRecord,
    key: Option<Key>,
    request: R,
}

/// The change `request` asks for, audited as `action`.
fn change<'a, R>(
    commands: &'a Commands,
    request: Request<R>,
    action: &str,
) -> Result<Change<'a, R>, Status> {
    let (caller, record) = AuditRecord::for_request(SOURCE, action, &request)?;
    Ok(Change {
        commands,
        caller,
        record,
        key: None,
        request: request.into_inner(),
    })
}

impl<R: prost::Message> Change<'_, R> {
    /// Audited on the log of the user the request names.
    fn on(mut self, subject: impl FnOnce(&R) -> &str) -> Self {
        self.record = self.record.subject(subject(&self.request));
        self
    }

    /// A retry with the same request id gets the first response.
    fn idempotent(mut self, method: &str, request_id: impl FnOnce(&R) -> &str) -> Self {
        let id = request_id(&self.request);
        self.key = Key::of(method, &self.caller, id, &self.request);
        self
    }

    /// Runs `body` with the decoded `input` in the command runner.
    async fn run<I, T>(
        self,
        input: Result<I, Error>,
        body: impl AsyncFnOnce(&mut Tx<'_>, I) -> Result<T, Error>,
    ) -> Result<Response<T>, Status>
    where
        T: prost::Message + Default,
    {
        let result = self.commands.run(self.record, self.key, input, body).await;
        result.map(Response::new).map_err(Status::from)
    }
}

fn user(u: &crate::domain::User) -> Option<pb::User> {
    Some(convert::user(u))
}

fn results(outcomes: Vec<batch::Outcome>) -> Vec<pb::UserResult> {
    outcomes.iter().map(convert::user_result).collect()
}

#[tonic::async_trait]
impl pb::accounts_service_server::AccountsService for AccountsApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let mut c = change(&self.commands, request, "user.created")?;
        // The password is no part of the fingerprint (it is not stored).
        let unsecret = pb::CreateUserRequest {
            password: String::new(),
            ..c.request.clone()
        };
        c.key = Key::of("CreateUser", &c.caller, &c.request.request_id, &unsecret);
        let input = users::commands::hash_password(req::new_user(&c.caller, &c.request)).await;
        c.run(input, async |tx, input| {
            let created = users::commands::create_user(tx, input).await?;
            Ok(pb::CreateUserResponse {
                user: user(&created),
            })
        })
        .await
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = convert::auth::own_user(&caller, &request.get_ref().user_id)?;
        let found = self
            .commands
            .read(async |conn| users::commands::get_user(conn, id).await)
            .await?;
        Ok(Response::new(pb::GetUserResponse { user: user(&found) }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let c = change(&self.commands, request, "user.profile.updated")?
            .on(|r| r.user.as_ref().map(|u| u.id.as_str()).unwrap_or_default());
        let input = req::profile_update(&c.caller, &c.request);
        c.run(input, async |tx, input| {
            let updated = users::commands::update_profile(tx, input).await?;
            Ok(pb::UpdateUserResponse {
                user: user(&updated),
            })
        })
        .await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let q = req::list_users(&self.tokens, request.get_ref())?;
        let ((filter, order), after) = (&q.filter, q.page.after.as_ref());
        let rows = self
            .commands
            .read(async |conn| {
                Ok(users::store::list(conn, filter, *order, after, q.page.limit()).await?)
            })
            .await?;
        let (rows, page) = q.split(&self.tokens, rows, |u| users::store::Cursor::of(u, *order));
        Ok(Response::new(pb::ListUsersResponse {
            users: rows.iter().map(convert::user).collect(),
            page,
        }))
    }

    async fn batch_change_status(
        &self,
        request: Request<pb::BatchChangeStatusRequest>,
    ) -> Result<Response<pb::BatchChangeStatusResponse>, Status> {
        let c = change(&self.commands, request, "user.status.changed")?
            .idempotent("BatchChangeStatus", |r| &r.request_id);
        let input = req::status_change(&c.request);
        c.run(input, async |tx, input| {
            let results = results(batch::change_status(tx, input).await?);
            Ok(pb::BatchChangeStatusResponse { results })
        })
        .await
    }

    async fn batch_change_group(
        &self,
        request: Request<pb::BatchChangeGroupRequest>,
    ) -> Result<Response<pb::BatchChangeGroupResponse>, Status> {
        let c = change(&self.commands, request, "user.group.changed")?
            .idempotent("BatchChangeGroup", |r| &r.request_id);
        let mut input = req::group_change(&c.request);
        // The template is checked before the change commits (see notify.rs).
        if let Ok(change) = &input
            && let Some(template) = &change.notify
            && let Err(refused) = self.templates.check("mail_template_id", template).await
        {
            input = Err(refused);
        }
        c.run(input, async |tx, input| {
            let results = results(batch::change_group(tx, input).await?);
            Ok(pb::BatchChangeGroupResponse { results })
        })
        .await
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Result<Response<pb::ChangeEmailResponse>, Status> {
        let c = change(&self.commands, request, "user.email.changed")?
            .on(|r| &r.user_id)
            .idempotent("ChangeEmail", |r| &r.request_id);
        let input = req::email_change(&c.request);
        c.run(input, async |tx, input| {
            let user = user(&users::commands::change_email(tx, input).await?);
            Ok(pb::ChangeEmailResponse { user })
        })
        .await
    }

    async fn set_roles(
        &self,
        request: Request<pb::SetRolesRequest>,
    ) -> Result<Response<pb::SetRolesResponse>, Status> {
        let c = change(&self.commands, request, "user.roles.updated")?.on(|r| &r.user_id);
        let input = req::roles_change(&c.request);
        c.run(input, async |tx, input| {
            let user = user(&users::commands::set_roles(tx, input).await?);
            Ok(pb::SetRolesResponse { user })
        })
        .await
    }

    async fn set_notes(
        &self,
        request: Request<pb::SetNotesRequest>,
    ) -> Result<Response<pb::SetNotesResponse>, Status> {
        let c = change(&self.commands, request, "user.notes.updated")?.on(|r| &r.user_id);
        let input = req::notes_change(&c.request);
        c.run(input, async |tx, input| {
            let user = user(&users::commands::set_notes(tx, input).await?);
            Ok(pb::SetNotesResponse { user })
        })
        .await
    }

    async fn batch_delete_personal_data(
        &self,
        request: Request<pb::BatchDeletePersonalDataRequest>,
    ) -> Result<Response<pb::BatchDeletePersonalDataResponse>, Status> {
        let c = change(&self.commands, request, "user.personal_data.deleted")?
            .idempotent("BatchDeletePersonalData", |r| &r.request_id);
        let input = req::erasure(&c.request);
        c.run(input, async |tx, ids| {
            let results = results(erasure::erase_users(tx, ids).await?);
            Ok(pb::BatchDeletePersonalDataResponse { results })
        })
        .await
    }

    async fn get_settings(
        &self,
        _request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        let (current, _) = self
            .commands
            .read(async |conn| Ok(settings::store::get(conn).await?))
            .await?;
        Ok(Response::new(pb::GetSettingsResponse {
            settings: Some(convert::settings(&current)),
        }))
    }

    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::UpdateSettingsResponse>, Status> {
        let c = change(&self.commands, request, "settings.updated")?;
        let input = req::settings_patch(&c.request);
        c.run(input, async |tx, patch| {
            let next = settings::commands::update_settings(tx, patch).await?;
            Ok(pb::UpdateSettingsResponse {
                settings: Some(convert::settings(&next)),
            })
        })
        .await
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let q = req::list_groups(&self.tokens, request.get_ref())?;
        let after = q.page.after.as_deref();
        let rows = self
            .commands
            .read(async |conn| Ok(groups::store::list(conn, after, q.page.limit()).await?))
            .await?;
        let (rows, page) = q.split(&self.tokens, rows, |g| g.name.clone());
        Ok(Response::new(pb::ListGroupsResponse {
            groups: rows.iter().map(convert::group).collect(),
            page,
        }))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let c = change(&self.commands, request, "group.created")?;
        let input = req::new_group(&c.request);
        c.run(input, async |tx, input| {
            let group = groups::commands::create_group(tx, input).await?;
            Ok(pb::CreateGroupResponse {
                group: Some(convert::group(&group)),
            })
        })
        .await
    }

    async fn create_collaboration(
        &self,
        request: Request<pb::CreateCollaborationRequest>,
    ) -> Result<Response<pb::CreateCollaborationResponse>, Status> {
        let c = change(&self.commands, request, "collaboration.created")?.on(|r| &r.owner_user_id);
        let input = req::invitation(&c.caller, &c.request);
        c.run(input, async |tx, input| {
            let created = collaboration::commands::create(tx, input).await?;
            Ok(pb::CreateCollaborationResponse {
                collaboration: Some(convert::collaboration(&created)),
            })
        })
        .await
    }

    async fn accept_collaboration(
        &self,
        request: Request<pb::AcceptCollaborationRequest>,
    ) -> Result<Response<pb::AcceptCollaborationResponse>, Status> {
        let c = change(&self.commands, request, "collaboration.accepted")?;
        let input = req::collaboration_move(&c.caller, &c.request.collaboration_id, true);
        c.run(input, async |tx, input| {
            let collaboration = Some(convert::collaboration(
                &collaboration::commands::transition(tx, input).await?,
            ));
            Ok(pb::AcceptCollaborationResponse { collaboration })
        })
        .await
    }

    async fn revoke_collaboration(
        &self,
        request: Request<pb::RevokeCollaborationRequest>,
    ) -> Result<Response<pb::RevokeCollaborationResponse>, Status> {
        let c = change(&self.commands, request, "collaboration.revoked")?;
        let input = req::collaboration_move(&c.caller, &c.request.collaboration_id, false);
        c.run(input, async |tx, input| {
            let collaboration = Some(convert::collaboration(
                &collaboration::commands::transition(tx, input).await?,
            ));
            Ok(pb::RevokeCollaborationResponse { collaboration })
        })
        .await
    }

    async fn list_collaborations(
        &self,
        request: Request<pb::ListCollaborationsRequest>,
    ) -> Result<Response<pb::ListCollaborationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let q = req::list_collaborations(&self.tokens, &caller, request.get_ref())?;
        let ((user_id, direction), after) = (q.filter, q.page.after);
        let rows = self
            .commands
            .read(async |conn| {
                let limit = q.page.limit();
                Ok(collaboration::store::list(conn, user_id, direction, after, limit).await?)
            })
            .await?;
        let (rows, page) = q.split(&self.tokens, rows, |c| c.id);
        Ok(Response::new(pb::ListCollaborationsResponse {
            collaborations: rows.iter().map(convert::collaboration).collect(),
            page,
        }))
    }
}
