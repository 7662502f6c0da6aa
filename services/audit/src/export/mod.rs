//! ExportEvents: the file is produced while it streams; the export is
//! audited whether it completed or not.

pub mod file;

use steward_kit::outbox::AuditRecord;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{error::Error, state::State, store::events::Filter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Csv => "audit-log.csv",
            Format::Xlsx => "audit-log.xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }
}

/// Longest filter summary kept in the export's audit record.
const MAX_FILTER_SUMMARY: usize = 2000;

/// Starts producing the file: chunks arrive on the receiver; the task ends
/// with the row count (after recording the export) or the failure.
pub fn start(
    state: &State,
    record: AuditRecord,
    filter: Filter,
    format: Format,
) -> (mpsc::Receiver<Vec<u8>>, JoinHandle<Result<u64, Error>>) {
    let (chunks_tx, chunks) = mpsc::channel::<Vec<u8>>(4);
    let state = state.clone();
    let summary = format!("{filter:?}");
    let producer = tokio::spawn(async move {
        let pool = state.pool().clone();
        let produced = match format {
            Format::Csv => file::csv(pool, filter, chunks_tx).await,
            Format::Xlsx => file::xlsx(pool, filter, chunks_tx).await,
        };
        let record = record.comment("format", format.extension()).comment(
            "filter",
            summary.chars().take(MAX_FILTER_SUMMARY).collect::<String>(),
        );
        let record = match &produced {
            Ok(rows) => record.comment("rows", rows.to_string()),
            Err(err) => record.failed(err.to_string()),
        };
        let mut conn = state.pool().get().await?;
        {
            use diesel_async::AsyncConnection;
            conn.transaction::<_, Error, _>(async |conn| state.record_own(conn, &record).await)
                .await?;
        }
        produced
    });
    (chunks, producer)
}
