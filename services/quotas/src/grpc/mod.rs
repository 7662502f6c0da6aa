//! `steward.quotas.v1.QuotasService` and `QuotasSyncService`: the only
//! module that sees proto types. Each handler decodes (`convert`), runs a
//! command of a feature folder (writes in kit's command runner, then waits
//! for the replicas' caches: `Cache::settle`), and encodes.

pub mod convert;

use serde::{Deserialize, Serialize};
use steward_kit::{
    Commands, Key, Tx,
    auth::Caller,
    db::Pool,
    outbox::AuditRecord,
    page::{self, PageTokens},
    validate::{DEFAULT_PAGE, MAX_PAGE},
};
use steward_proto::{common, quotas as pb};
use tonic::{Request, Response, Status};

use crate::{
    SOURCE,
    cache::Touched,
    definitions,
    domain::Source,
    error::{CONSTRAINTS, Error},
    groups, membership,
    users::{self, resolver::Resolver},
};

#[derive(Clone)]
pub struct QuotasApi {
    commands: Commands,
    resolver: Resolver,
    tokens: PageTokens,
}

/// Where a page of definitions continues.
#[derive(Serialize, Deserialize)]
struct KeyCursor {
    key: String,
}

impl QuotasApi {
    pub fn new(pool: Pool, resolver: Resolver, tokens: PageTokens) -> Self {
        Self {
            commands: Commands::new(pool, CONSTRAINTS),
            resolver,
            tokens,
        }
    }

    /// A state change: the command runs in the envelope, then the change
    /// is applied to every replica's cache before the caller hears of it.
    async fn write<I, T, F>(
        &self,
        record: AuditRecord,
        key: Option<Key>,
        input: Result<I, Error>,
        body: F,
    ) -> Result<Response<T>, Status>
    where
        T: prost::Message + Default,
        F: AsyncFnOnce(&mut Tx<'_>, I, &mut Touched) -> Result<(T, i64), Error>,
    {
        let mut touched = Touched::default();
        let mut seq = 0;
        let response = self
            .commands
            .run(record, key, input, async |tx, input| {
                let (response, s) = body(tx, input, &mut touched).await?;
                seq = s;
                Ok(response)
            })
            .await?;
        self.resolver.cache.settle(&touched, seq).await?;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl pb::quotas_service_server::QuotasService for QuotasApi {
    async fn list_quota_definitions(
        &self,
        request: Request<pb::ListQuotaDefinitionsRequest>,
    ) -> Result<Response<pb::ListQuotaDefinitionsResponse>, Status> {
        let r = request.into_inner();
        let filter = convert::key_contains(&r.key_contains)?;
        let fingerprint = format!("definitions|{filter}|{}", r.product);
        let page = self
            .tokens
            .page::<KeyCursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let after = page.after.as_ref().map(|c| c.key.as_str());
        let rows = self
            .commands
            .read(async |conn| {
                Ok(
                    definitions::store::list(conn, &filter, &r.product, after, page.limit())
                        .await?,
                )
            })
            .await?;
        let (rows, next_page_token) = page::split(rows, page.size, |d| {
            self.tokens
                .encode(&fingerprint, &KeyCursor { key: d.key.clone() })
        });
        Ok(Response::new(pb::ListQuotaDefinitionsResponse {
            definitions: rows.iter().map(convert::definition).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn register_quota_definitions(
        &self,
        request: Request<pb::RegisterQuotaDefinitionsRequest>,
    ) -> Result<Response<pb::RegisterQuotaDefinitionsResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "quotas.definitions.registered", &request)?;
        let r = request.into_inner();
        let input = convert::definitions(&r);
        let key = Key::of("RegisterQuotaDefinitions", &caller, &r.request_id, &r);
        self.write(record, key, input, async |tx, defs, touched| {
            let (stored, created, seq) =
                definitions::commands::register(tx, &defs, touched).await?;
            Ok((
                pb::RegisterQuotaDefinitionsResponse {
                    definitions: stored.iter().map(convert::definition).collect(),
                    created: created as i32,
                },
                seq,
            ))
        })
        .await
    }

    async fn get_group_quotas(
        &self,
        request: Request<pb::GetGroupQuotasRequest>,
    ) -> Result<Response<pb::GetGroupQuotasResponse>, Status> {
        let r = request.into_inner();
        let mut v = steward_kit::FieldViolations::new();
        let group = convert::group("group", &r.group, &mut v);
        v.check().map_err(Error::from)?;
        let filter = convert::key_contains(&r.key_contains)?;
        let catalog = self.resolver.catalog().await?;
        let quotas = catalog
            .definitions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.key.contains(&filter))
            .map(|(i, d)| match catalog.group_value(&group, i) {
                Some(value) => convert::group_quota(d, value, Source::Group),
                None => convert::group_quota(d, &d.default, Source::Default),
            })
            .collect();
        Ok(Response::new(pb::GetGroupQuotasResponse { group, quotas }))
    }

    async fn set_group_quotas(
        &self,
        request: Request<pb::SetGroupQuotasRequest>,
    ) -> Result<Response<pb::SetGroupQuotasResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "quotas.group.updated", &request)?;
        let r = request.into_inner();
        let catalog = self.resolver.catalog().await?;
        let input = convert::group_edit(&catalog, &r);
        let record = record
            .comment("group", &r.group)
            .comment("reason", &r.reason);
        let key = Key::of("SetGroupQuotas", &caller, &r.request_id, &r);
        self.write(record, key, input, async |tx, edit, touched| {
            let (changes, seq) = groups::commands::set(tx, &catalog, &edit, touched).await?;
            Ok((
                pb::SetGroupQuotasResponse {
                    changes: changes.iter().map(convert::change).collect(),
                },
                seq,
            ))
        })
        .await
    }

    async fn reset_group_quota(
        &self,
        request: Request<pb::ResetGroupQuotaRequest>,
    ) -> Result<Response<pb::ResetGroupQuotaResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "quotas.group.reset", &request)?;
        let r = request.into_inner();
        let catalog = self.resolver.catalog().await?;
        let input = convert::group_reset(&catalog, &r);
        let record = record
            .comment("group", &r.group)
            .comment("key", &r.key)
            .comment("reason", &r.reason);
        let key = Key::of("ResetGroupQuota", &caller, &r.request_id, &r);
        self.write(
            record,
            key,
            input,
            async |tx, (group, key, reason), touched| {
                let (change, seq) =
                    groups::commands::reset(tx, &catalog, &group, &key, &reason, touched).await?;
                Ok((
                    pb::ResetGroupQuotaResponse {
                        change: Some(convert::change(&change)),
                    },
                    seq,
                ))
            },
        )
        .await
    }

    async fn copy_group_quotas(
        &self,
        request: Request<pb::CopyGroupQuotasRequest>,
    ) -> Result<Response<pb::CopyGroupQuotasResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "quotas.group.copied", &request)?;
        let r = request.into_inner();
        let catalog = self.resolver.catalog().await?;
        let input = convert::group_copy(&r);
        let record = record
            .comment("group", &r.group)
            .comment("source_group", &r.source_group)
            .comment("reason", &r.reason);
        let key = Key::of("CopyGroupQuotas", &caller, &r.request_id, &r);
        self.write(
            record,
            key,
            input,
            async |tx, (group, source, reason), touched| {
                let (changes, seq) =
                    groups::commands::copy(tx, &catalog, &group, &source, &reason, touched).await?;
                Ok((
                    pb::CopyGroupQuotasResponse {
                        changes: changes.iter().map(convert::change).collect(),
                    },
                    seq,
                ))
            },
        )
        .await
    }

    async fn get_user_quotas(
        &self,
        request: Request<pb::GetUserQuotasRequest>,
    ) -> Result<Response<pb::GetUserQuotasResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = convert::id("user_id", &r.user_id)?;
        caller.may_act_on(&r.user_id)?;
        let filter = convert::key_contains(&r.key_contains)?;
        let fingerprint = format!("user-quotas|{id}|{filter}");
        let page = self
            .tokens
            .page::<KeyCursor>(&fingerprint, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let catalog = self.resolver.catalog().await?;
        let entry = self.resolver.user(&catalog, id).await?;
        let after = page.after.as_ref().map(|c| c.key.as_str());
        let rows: Vec<usize> = catalog
            .definitions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.key.contains(&filter) && after.is_none_or(|a| d.key.as_str() > a))
            .map(|(i, _)| i)
            .take(page.limit() as usize)
            .collect();
        let (rows, next_page_token) = page::split(rows, page.size, |&i| {
            self.tokens.encode(
                &fingerprint,
                &KeyCursor {
                    key: catalog.definitions[i].key.clone(),
                },
            )
        });
        Ok(Response::new(pb::GetUserQuotasResponse {
            user_id: id.to_string(),
            group: entry.group.clone(),
            quotas: rows
                .into_iter()
                .map(|i| {
                    let e = catalog.effective(i, &entry.group, &entry.overrides);
                    convert::user_quota(&catalog.definitions[i], &e)
                })
                .collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn set_user_quotas(
        &self,
        request: Request<pb::SetUserQuotasRequest>,
    ) -> Result<Response<pb::SetUserQuotasResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "quotas.user.updated", &request)?;
        let r = request.into_inner();
        let catalog = self.resolver.catalog().await?;
        let input = match convert::user_edit(&catalog, &r) {
            Ok(edit) => self.resolver.ensure_known(&edit.users).await.map(|()| edit),
            Err(e) => Err(e),
        };
        let record = record.comment("reason", &r.reason);
        let key = Key::of("SetUserQuotas", &caller, &r.request_id, &r);
        self.write(record, key, input, async |tx, edit, touched| {
            let (changes, seq) = users::commands::set(tx, &catalog, &edit, touched).await?;
            Ok((
                pb::SetUserQuotasResponse {
                    changes: changes.iter().map(convert::change).collect(),
                },
                seq,
            ))
        })
        .await
    }

    async fn reset_user_quotas(
        &self,
        request: Request<pb::ResetUserQuotasRequest>,
    ) -> Result<Response<pb::ResetUserQuotasResponse>, Status> {
        let (caller, record) = AuditRecord::for_request(SOURCE, "quotas.user.reset", &request)?;
        let r = request.into_inner();
        let catalog = self.resolver.catalog().await?;
        let input = match convert::user_reset(&catalog, &r) {
            Ok(reset) => self
                .resolver
                .ensure_known(&reset.users)
                .await
                .map(|()| reset),
            Err(e) => Err(e),
        };
        let record = record.comment("reason", &r.reason);
        let key = Key::of("ResetUserQuotas", &caller, &r.request_id, &r);
        self.write(record, key, input, async |tx, reset, touched| {
            let (changes, seq) = users::commands::reset(tx, &catalog, &reset, touched).await?;
            Ok((
                pb::ResetUserQuotasResponse {
                    changes: changes.iter().map(convert::change).collect(),
                },
                seq,
            ))
        })
        .await
    }

    async fn preview_group_change(
        &self,
        request: Request<pb::PreviewGroupChangeRequest>,
    ) -> Result<Response<pb::PreviewGroupChangeResponse>, Status> {
        let (id, target) = convert::preview(request.get_ref())?;
        let catalog = self.resolver.catalog().await?;
        let entry = self.resolver.user(&catalog, id).await?;
        let changes = users::commands::preview(&catalog, id, &entry, &target);
        Ok(Response::new(pb::PreviewGroupChangeResponse {
            user_id: id.to_string(),
            current_group: entry.group.clone(),
            target_group: target,
            changes: changes.iter().map(convert::change).collect(),
        }))
    }

    async fn check_quotas(
        &self,
        request: Request<pb::CheckQuotasRequest>,
    ) -> Result<Response<pb::CheckQuotasResponse>, Status> {
        let (id, requests) = convert::check_request(request.get_ref())?;
        let catalog = self.resolver.catalog().await?;
        let entry = self.resolver.user(&catalog, id).await?;
        let checks = users::commands::check(&catalog, &entry, &requests)?;
        Ok(Response::new(pb::CheckQuotasResponse {
            user_id: id.to_string(),
            group: entry.group.clone(),
            allowed: checks.iter().all(|c| c.allowed),
            checks: checks.iter().map(convert::check).collect(),
        }))
    }

    async fn batch_get_effective_quotas(
        &self,
        request: Request<pb::BatchGetEffectiveQuotasRequest>,
    ) -> Result<Response<pb::BatchGetEffectiveQuotasResponse>, Status> {
        let catalog = self.resolver.catalog().await?;
        let (ids, keys) = convert::batch_get(&catalog, request.get_ref())?;
        let entries = self.resolver.users(&catalog, &ids).await?;
        Ok(Response::new(pb::BatchGetEffectiveQuotasResponse {
            users: ids
                .iter()
                .zip(&entries)
                .map(|(id, entry)| pb::UserEffectiveQuotas {
                    user_id: id.to_string(),
                    group: entry.group.clone(),
                    quotas: keys
                        .iter()
                        .map(|&i| {
                            let e = catalog.effective(i, &entry.group, &entry.overrides);
                            convert::effective(&catalog.definitions[i].key, &e)
                        })
                        .collect(),
                })
                .collect(),
        }))
    }
}

/// Accounts' membership events (its outbox relay calls this).
#[derive(Clone)]
pub struct SyncApi {
    pool: Pool,
    resolver: Resolver,
}

impl SyncApi {
    pub fn new(pool: Pool, resolver: Resolver) -> Self {
        Self { pool, resolver }
    }
}

#[tonic::async_trait]
impl pb::quotas_sync_service_server::QuotasSyncService for SyncApi {
    async fn apply_membership_events(
        &self,
        request: Request<pb::ApplyMembershipEventsRequest>,
    ) -> Result<Response<pb::ApplyMembershipEventsResponse>, Status> {
        let events = convert::events(&request.get_ref().events)?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let done = membership::commands::apply(&mut conn, &events)
            .await
            .map_err(|e| e.resolve(CONSTRAINTS))?;
        drop(conn);
        self.resolver.cache.settle(&done.touched, done.seq).await?;
        Ok(Response::new(pb::ApplyMembershipEventsResponse {
            applied: done.applied as i32,
            duplicates: done.duplicates as i32,
        }))
    }
}
