//! `steward.common.v1.PersonalDataService`: accounts' erasures, delivered
//! through its outbox, blank billing's free text about the user.

use steward_kit::{Key, outbox::AuditRecord};
use steward_proto::common;
use tonic::{Request, Response, Status};

use super::{BillingApi, convert};
use crate::{SOURCE, ledger};

#[tonic::async_trait]
impl common::personal_data_service_server::PersonalDataService for BillingApi {
    async fn erase_personal_data(
        &self,
        request: Request<common::ErasePersonalDataRequest>,
    ) -> Result<Response<common::ErasePersonalDataResponse>, Status> {
        let (caller, record) =
            AuditRecord::for_request(SOURCE, "billing.personal_data.erased", &request)?;
        let r = request.into_inner();
        let record = record.subject(&r.user_id);
        let input = convert::erasure(&r);
        let key = Key::of("ErasePersonalData", &caller, &r.event_id, &r);
        let response = self
            .commands
            .run(record, key, input, async |tx, user_id| {
                let erased = ledger::commands::erase_personal_data(tx, user_id).await?;
                Ok(common::ErasePersonalDataResponse {
                    records_erased: erased as i64,
                })
            })
            .await?;
        Ok(Response::new(response))
    }
}
