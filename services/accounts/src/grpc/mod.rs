//! `steward.accounts.v1.AccountsService`: the only module that sees proto
//! types. A handler decodes (`convert`), runs a command in the command
//! runner (`Commands::run` for changes, `Commands::read` for reads) and
//! encodes; the runner owns the envelope (request-id replay, transaction,
//! audit record, auditing a refusal after the rollback).

pub mod auth;
pub mod convert;

use steward_kit::{Commands, Error, Key, auth::Caller, outbox::AuditRecord, page::PageTokens};
use steward_proto::accounts as pb;
use tonic::{Request, Response, Status};

use crate::{
    SOURCE, collaboration,
    erasure::commands as erasure,
    groups, settings,
    users::{self, batch},
};
use convert::accounts as req;

#[derive(Clone)]
pub struct AccountsApi {
    commands: Commands,
    tokens: PageTokens,
}

impl AccountsApi {
    pub fn new(commands: Commands, tokens: PageTokens) -> Self {
        Self { commands, tokens }
    }
}

/// The caller and the audit record of a change request.
fn audit<T>(request: &Request<T>, action: &str) -> Result<(Caller, AuditRecord), Status> {
    AuditRecord::for_request(SOURCE, action, request)
}

fn respond<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
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
        let (caller, record) = audit(&request, "user.created")?;
        let r = request.into_inner();
        // The password is no part of the fingerprint (it is not stored).
        let unsecret = pb::CreateUserRequest {
            password: String::new(),
            ..r.clone()
        };
        let key = Key::of("CreateUser", &caller, &r.request_id, &unsecret);
        let input = users::commands::hash_password(req::new_user(&caller, &r)).await;
        respond(
            self.commands
                .run(record, key, input, async |tx, input| {
                    let created = users::commands::create_user(tx, input).await?;
                    Ok(pb::CreateUserResponse {
                        user: user(&created),
                    })
                })
                .await,
        )
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
        let (caller, record) = audit(&request, "user.profile.updated")?;
        let r = request.into_inner();
        let target = r.user.as_ref().map(|u| u.id.as_str()).unwrap_or_default();
        let record = record.subject(target);
        let input = req::profile_update(&caller, &r);
        respond(
            self.commands
                .run(record, None, input, async |tx, input| {
                    let updated = users::commands::update_profile(tx, input).await?;
                    Ok(pb::UpdateUserResponse {
                        user: user(&updated),
                    })
                })
                .await,
        )
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
        let (caller, record) = audit(&request, "user.status.changed")?;
        let r = request.into_inner();
        let key = Key::of("BatchChangeStatus", &caller, &r.request_id, &r);
        let input = req::status_change(&r);
        respond(
            self.commands
                .run(record, key, input, async |tx, input| {
                    let outcomes = batch::change_status(tx, input).await?;
                    Ok(pb::BatchChangeStatusResponse {
                        results: results(outcomes),
                    })
                })
                .await,
        )
    }

    async fn batch_change_group(
        &self,
        request: Request<pb::BatchChangeGroupRequest>,
    ) -> Result<Response<pb::BatchChangeGroupResponse>, Status> {
        let (caller, record) = audit(&request, "user.group.changed")?;
        let r = request.into_inner();
        let key = Key::of("BatchChangeGroup", &caller, &r.request_id, &r);
        let input = req::group_change(&r);
        respond(
            self.commands
                .run(record, key, input, async |tx, input| {
                    let outcomes = batch::change_group(tx, input).await?;
                    Ok(pb::BatchChangeGroupResponse {
                        results: results(outcomes),
                    })
                })
                .await,
        )
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Result<Response<pb::ChangeEmailResponse>, Status> {
        let (caller, record) = audit(&request, "user.email.changed")?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let key = Key::of("ChangeEmail", &caller, &r.request_id, &r);
        let input = req::email_change(&r);
        respond(
            self.commands
                .run(record, key, input, async |tx, input| {
                    let updated = users::commands::change_email(tx, input).await?;
                    Ok(pb::ChangeEmailResponse {
                        user: user(&updated),
                    })
                })
                .await,
        )
    }

    async fn set_roles(
        &self,
        request: Request<pb::SetRolesRequest>,
    ) -> Result<Response<pb::SetRolesResponse>, Status> {
        let (_, record) = audit(&request, "user.roles.updated")?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        respond(
            self.commands
                .run(record, None, req::roles_change(&r), async |tx, input| {
                    let updated = users::commands::set_roles(tx, input).await?;
                    Ok(pb::SetRolesResponse {
                        user: user(&updated),
                    })
                })
                .await,
        )
    }

    async fn set_notes(
        &self,
        request: Request<pb::SetNotesRequest>,
    ) -> Result<Response<pb::SetNotesResponse>, Status> {
        let (_, record) = audit(&request, "user.notes.updated")?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        respond(
            self.commands
                .run(record, None, req::notes_change(&r), async |tx, input| {
                    let updated = users::commands::set_notes(tx, input).await?;
                    Ok(pb::SetNotesResponse {
                        user: user(&updated),
                    })
                })
                .await,
        )
    }

    async fn batch_delete_personal_data(
        &self,
        request: Request<pb::BatchDeletePersonalDataRequest>,
    ) -> Result<Response<pb::BatchDeletePersonalDataResponse>, Status> {
        let (caller, record) = audit(&request, "user.personal_data.deleted")?;
        let r = request.into_inner();
        let key = Key::of("BatchDeletePersonalData", &caller, &r.request_id, &r);
        respond(
            self.commands
                .run(record, key, req::erasure(&r), async |tx, ids| {
                    let outcomes = erasure::erase_users(tx, ids).await?;
                    Ok(pb::BatchDeletePersonalDataResponse {
                        results: results(outcomes),
                    })
                })
                .await,
        )
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
        let (_, record) = audit(&request, "settings.updated")?;
        let input = req::settings_patch(request.get_ref());
        respond(
            self.commands
                .run(record, None, input, async |tx, patch| {
                    let next = settings::commands::update_settings(tx, patch).await?;
                    Ok(pb::UpdateSettingsResponse {
                        settings: Some(convert::settings(&next)),
                    })
                })
                .await,
        )
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
        let (_, record) = audit(&request, "group.created")?;
        let input = req::new_group(request.get_ref());
        respond(
            self.commands
                .run(record, None, input, async |tx, input| {
                    let group = groups::commands::create_group(tx, input).await?;
                    Ok(pb::CreateGroupResponse {
                        group: Some(convert::group(&group)),
                    })
                })
                .await,
        )
    }

    async fn create_collaboration(
        &self,
        request: Request<pb::CreateCollaborationRequest>,
    ) -> Result<Response<pb::CreateCollaborationResponse>, Status> {
        let (caller, record) = audit(&request, "collaboration.created")?;
        let r = request.into_inner();
        let record = record.subject(&r.owner_user_id);
        respond(
            self.commands
                .run(
                    record,
                    None,
                    req::invitation(&caller, &r),
                    async |tx, input| {
                        let created = collaboration::commands::create(tx, input).await?;
                        Ok(pb::CreateCollaborationResponse {
                            collaboration: Some(convert::collaboration(&created)),
                        })
                    },
                )
                .await,
        )
    }

    async fn accept_collaboration(
        &self,
        request: Request<pb::AcceptCollaborationRequest>,
    ) -> Result<Response<pb::AcceptCollaborationResponse>, Status> {
        let (caller, record) = audit(&request, "collaboration.accepted")?;
        let input = req::collaboration_move(&caller, &request.get_ref().collaboration_id, true);
        respond(
            self.commands
                .run(record, None, input, async |tx, input| {
                    let moved = collaboration::commands::transition(tx, input).await?;
                    Ok(pb::AcceptCollaborationResponse {
                        collaboration: Some(convert::collaboration(&moved)),
                    })
                })
                .await,
        )
    }

    async fn revoke_collaboration(
        &self,
        request: Request<pb::RevokeCollaborationRequest>,
    ) -> Result<Response<pb::RevokeCollaborationResponse>, Status> {
        let (caller, record) = audit(&request, "collaboration.revoked")?;
        let input = req::collaboration_move(&caller, &request.get_ref().collaboration_id, false);
        respond(
            self.commands
                .run(record, None, input, async |tx, input| {
                    let moved = collaboration::commands::transition(tx, input).await?;
                    Ok(pb::RevokeCollaborationResponse {
                        collaboration: Some(convert::collaboration(&moved)),
                    })
                })
                .await,
        )
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
