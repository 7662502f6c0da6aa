//! `steward.notifications.v1`: the only module that sees proto types. Each
//! handler decodes (`convert`), runs a command of a feature folder in kit's
//! command runner, and encodes.

pub mod convert;

use std::sync::Arc;

use steward_kit::{
    Commands, Error as KitError, Key,
    db::Pool,
    outbox::AuditRecord,
    page::{self, PageTokens},
    validate::{self, DEFAULT_PAGE, MAX_PAGE},
};
use steward_proto::{audit::Category, common, notifications as pb};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, service::Routes};
use uuid::Uuid;

use crate::{
    NotificationsConfig, SOURCE,
    error::{CONSTRAINTS, Error},
    mails::{self, commands::Globals},
    suppressions,
    templates::{self, commands::Draft},
};

/// Both services of this component.
pub fn routes(
    pool: Pool,
    tokens: PageTokens,
    config: NotificationsConfig,
    wake: Arc<Notify>,
) -> Routes {
    let commands = Commands::new(pool, CONSTRAINTS);
    let ingest = IngestApi {
        commands: commands.clone(),
        globals: Globals {
            dashboard_url: config.dashboard_url.clone(),
            product_name: config.product_name.clone(),
        },
        wake: wake.clone(),
    };
    let admin = NotificationsApi {
        commands,
        tokens,
        wake,
    };
    Routes::new(
        pb::notification_ingest_service_server::NotificationIngestServiceServer::new(ingest),
    )
    .add_service(pb::notifications_service_server::NotificationsServiceServer::new(admin))
}

fn request_id(raw: &str) -> Result<(), Error> {
    let mut v = steward_kit::FieldViolations::new();
    validate::request_id(raw, false, &mut v);
    v.check()?;
    Ok(())
}

#[derive(Clone)]
pub struct IngestApi {
    commands: Commands,
    globals: Globals,
    wake: Arc<Notify>,
}

#[tonic::async_trait]
impl pb::notification_ingest_service_server::NotificationIngestService for IngestApi {
    async fn enqueue_notifications(
        &self,
        request: Request<pb::EnqueueNotificationsRequest>,
    ) -> Result<Response<pb::EnqueueNotificationsResponse>, Status> {
        // Recorded only when the batch is refused (as FAILURE); accepted
        // requests are audited per mail as they are sent.
        let (_, record) =
            AuditRecord::for_request(SOURCE, "notifications.notification.rejected", &request)?;
        let r = request.into_inner();
        let input = convert::requests(&r);
        let done = self
            .commands
            .run(
                record.category(Category::System),
                None,
                input,
                async |tx, input| {
                    let done = mails::commands::ingest(tx, input, &self.globals).await?;
                    Ok(pb::EnqueueNotificationsResponse {
                        accepted: done.accepted as i32,
                        duplicates: done.duplicates as i32,
                    })
                },
            )
            .await?;
        if done.accepted > 0 {
            self.wake.notify_one();
        }
        Ok(Response::new(done))
    }
}

#[derive(Clone)]
pub struct NotificationsApi {
    commands: Commands,
    tokens: PageTokens,
    wake: Arc<Notify>,
}

#[tonic::async_trait]
impl pb::notifications_service_server::NotificationsService for NotificationsApi {
    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let r = request.into_inner();
        let mut v = steward_kit::FieldViolations::new();
        if !r.category.is_empty() {
            validate::short_text("category", &r.category, &mut v);
        }
        v.check().map_err(Error::from)?;
        let query = format!("templates:{}", r.category);
        let page = self
            .tokens
            .page::<String>(&query, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let category = (!r.category.is_empty()).then_some(r.category.as_str());
        let rows = self
            .commands
            .read(async |conn| {
                templates::commands::list(conn, category, page.after.as_deref(), page.limit()).await
            })
            .await?;
        let (rows, next_page_token) = page::split(rows, page.size, |t| {
            self.tokens.encode(&query, &t.header.template_id)
        });
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: rows.iter().map(convert::template).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        let r = request.into_inner();
        let mut v = steward_kit::FieldViolations::new();
        convert::template_id("template_id", &r.template_id, &mut v);
        if r.version < 0 {
            v.add("version", "must not be negative");
        }
        v.check().map_err(Error::from)?;
        let version = (r.version > 0).then_some(r.version);
        let t = self
            .commands
            .read(async |conn| templates::commands::get(conn, &r.template_id, version).await)
            .await?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(convert::template(&t)),
        }))
    }

    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::CreateTemplateResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "notifications.template.created", &request)?;
        let r = request.into_inner();
        let input = request_id(&r.request_id).and_then(|()| convert::draft(r.template.as_ref()));
        let record = record.comment(
            "template_id",
            r.template
                .as_ref()
                .map(|t| t.template_id.clone())
                .unwrap_or_default(),
        );
        let key = Key::of("CreateTemplate", &caller, &r.request_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, draft| {
                let t = templates::commands::create(tx, &caller.user_id, draft).await?;
                Ok(pb::CreateTemplateResponse {
                    template: Some(convert::template(&t)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Result<Response<pb::UpdateTemplateResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "notifications.template.updated", &request)?;
        let r = request.into_inner();
        let input = request_id(&r.request_id)
            .and_then(|()| convert::changes(r.template.as_ref(), r.update_mask.as_ref()));
        let key = Key::of("UpdateTemplate", &caller, &r.request_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, (id, changes)| {
                let t = templates::commands::update(tx, &caller.user_id, &id, changes).await?;
                Ok(pb::UpdateTemplateResponse {
                    template: Some(convert::template(&t)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn preview_template(
        &self,
        request: Request<pb::PreviewTemplateRequest>,
    ) -> Result<Response<pb::PreviewTemplateResponse>, Status> {
        use pb::preview_template_request::Source;
        let r = request.into_inner();
        let values = convert::preview_values(&r.variables)?;
        let draft: Draft = match &r.source {
            Some(Source::TemplateId(id)) => {
                let mut v = steward_kit::FieldViolations::new();
                convert::template_id("template_id", id, &mut v);
                v.check().map_err(Error::from)?;
                let version = (r.version > 0).then_some(r.version);
                let t = self
                    .commands
                    .read(async |conn| templates::commands::get(conn, id, version).await)
                    .await?;
                Draft::from(&t)
            }
            Some(Source::Template(t)) => convert::draft(Some(t))?,
            None => return Err(KitError::invalid("source", "template_id or template").into()),
        };
        let (rendered, errors) = templates::commands::preview(&draft, &r.locale, &values);
        Ok(Response::new(pb::PreviewTemplateResponse {
            message: rendered.as_ref().map(convert::rendered),
            errors: errors.iter().map(convert::template_error).collect(),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let r = request.into_inner();
        let filter = convert::filter(&r)?;
        let query = format!("mails:{filter:?}");
        let page = self
            .tokens
            .page::<Uuid>(&query, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let rows = self
            .commands
            .read(async |conn| mails::commands::list(conn, &filter, page.after, page.limit()).await)
            .await?;
        let (rows, next_page_token) =
            page::split(rows, page.size, |m| self.tokens.encode(&query, &m.id));
        Ok(Response::new(pb::ListNotificationsResponse {
            mails: rows.iter().map(convert::mail).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        let id = convert::id("mail_id", &request.into_inner().mail_id)?;
        let (mail, body, history) = self
            .commands
            .read(async |conn| mails::commands::get(conn, id).await)
            .await?;
        Ok(Response::new(pb::GetNotificationResponse {
            message: Some(pb::RenderedMessage {
                subject: mail.subject.clone(),
                text_body: body.text_body,
                html_body: body.html_body,
                locale: mail.locale.clone(),
            }),
            mail: Some(convert::mail(&mail)),
            history: convert::history(&history),
        }))
    }

    async fn resend_notification(
        &self,
        request: Request<pb::ResendNotificationRequest>,
    ) -> Result<Response<pb::ResendNotificationResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "notifications.mail.resent", &request)?;
        let r = request.into_inner();
        let input = request_id(&r.request_id).and_then(|()| convert::id("mail_id", &r.mail_id));
        let key = Key::of("ResendNotification", &caller, &r.request_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, id| {
                let mail = mails::commands::resend(tx, id).await?;
                Ok(pb::ResendNotificationResponse {
                    mail: Some(convert::mail(&mail)),
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(Response::new(response))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        let r = request.into_inner();
        let mut v = steward_kit::FieldViolations::new();
        validate::short_text("address_prefix", &r.address_prefix, &mut v);
        v.check().map_err(Error::from)?;
        let query = format!("suppressions:{}", r.address_prefix.to_lowercase());
        let page = self
            .tokens
            .page::<String>(&query, r.page.as_ref(), DEFAULT_PAGE, MAX_PAGE)
            .map_err(Error::from)?;
        let prefix = (!r.address_prefix.is_empty()).then_some(r.address_prefix.as_str());
        let rows = self
            .commands
            .read(async |conn| {
                suppressions::commands::list(conn, prefix, page.after.as_deref(), page.limit())
                    .await
            })
            .await?;
        let (rows, next_page_token) =
            page::split(rows, page.size, |s| self.tokens.encode(&query, &s.address));
        Ok(Response::new(pb::ListSuppressionsResponse {
            suppressions: rows.iter().map(convert::suppression).collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn delete_suppression(
        &self,
        request: Request<pb::DeleteSuppressionRequest>,
    ) -> Result<Response<pb::DeleteSuppressionResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "notifications.suppression.deleted", &request)?;
        let r = request.into_inner();
        let input = request_id(&r.request_id)
            .and_then(|()| convert::address_field("address", &r.address))
            .map(|()| r.address.clone());
        let key = Key::of("DeleteSuppression", &caller, &r.request_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, address| {
                suppressions::commands::delete(tx, &address).await?;
                Ok(pb::DeleteSuppressionResponse {})
            })
            .await?;
        Ok(Response::new(response))
    }
}
