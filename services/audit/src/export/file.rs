//! ExportEvents: XLSX (constant memory: rows spill to a temp file as they
//! are written) or CSV, produced page by page and streamed in chunks.

use std::io::Write;

use steward_kit::db::Pool;
use tokio::sync::mpsc;

use crate::{
    domain::event::StoredEvent,
    error::Error,
    store::events::{self, Cursor, Filter},
};

pub const HEADERS: [&str; 10] = [
    "Date and time",
    "Action",
    "User",
    "Token ID",
    "Modified user",
    "Project",
    "Comments",
    "IP and device",
    "Result",
    "Impersonator",
];

const PAGE: i64 = 5000;
pub const CHUNK: usize = 64 * 1024;

/// The ten export columns of one event.
pub fn row(s: &StoredEvent) -> [String; 10] {
    let e = &s.event;
    let comments = e
        .comments
        .iter()
        .chain(e.pii_comments.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let device = match (e.client_ip.is_empty(), e.user_agent.is_empty()) {
        (false, false) => format!("{}, {}", e.client_ip, e.user_agent),
        (false, true) => e.client_ip.clone(),
        (true, false) => e.user_agent.clone(),
        (true, true) => String::new(),
    };
    let result = match steward_proto::common::Result::try_from(i32::from(e.result)) {
        Ok(steward_proto::common::Result::Success) => "Success".to_owned(),
        Ok(steward_proto::common::Result::InProgress) => "In progress".to_owned(),
        _ if e.error_message.is_empty() => "Failure".to_owned(),
        _ => format!("Failure: {}", e.error_message),
    };
    [
        e.occurred_at
            .format("%Y-%m-%d %H:%M:%S%.3f UTC")
            .to_string(),
        e.action.clone(),
        e.actor_user_id.clone(),
        e.token_id.clone(),
        e.modified_user_id.clone(),
        e.project.clone(),
        comments,
        device,
        result,
        e.impersonator_user_id.clone(),
    ]
}

/// Sends the filter's events page by page; the receiver writes them.
async fn pages(
    pool: Pool,
    filter: Filter,
    out: mpsc::Sender<Vec<[String; 10]>>,
) -> Result<u64, Error> {
    let mut after: Option<Cursor> = None;
    let mut total = 0u64;
    loop {
        let batch = {
            let mut conn = pool.get().await?;
            events::list(&mut conn, &filter, after, PAGE).await?
        };
        let Some(last) = batch.last() else { break };
        after = Some(Cursor {
            occurred_at: last.event.occurred_at,
            seq: last.seq,
            start: filter.start,
            end: filter.end,
        });
        total += batch.len() as u64;
        let full = batch.len() as i64 == PAGE;
        if out.send(batch.iter().map(row).collect()).await.is_err() {
            break;
        }
        if !full {
            break;
        }
    }
    Ok(total)
}

fn csv_field(out: &mut Vec<u8>, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

pub fn csv_line(out: &mut Vec<u8>, fields: &[impl AsRef<str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(out, f.as_ref());
    }
    out.extend_from_slice(b"\r\n");
}

/// Streams CSV chunks into `chunks`; returns the row count.
pub async fn csv(pool: Pool, filter: Filter, chunks: mpsc::Sender<Vec<u8>>) -> Result<u64, Error> {
    let (tx, mut rx) = mpsc::channel(2);
    let producer = tokio::spawn(pages(pool, filter, tx));
    let mut buf = Vec::with_capacity(CHUNK * 2);
    csv_line(&mut buf, &HEADERS);
    while let Some(rows) = rx.recv().await {
        for r in rows {
            csv_line(&mut buf, &r);
            if buf.len() >= CHUNK && chunks.send(std::mem::take(&mut buf)).await.is_err() {
                return Ok(0);
            }
        }
    }
    if !buf.is_empty() {
        let _ = chunks.send(buf).await;
    }
    producer.await.map_err(|e| Error::Internal(e.to_string()))?
}

/// Writes the XLSX to a temp file on a blocking thread (rows spill to disk
/// as they come), then streams the file.
pub async fn xlsx(pool: Pool, filter: Filter, chunks: mpsc::Sender<Vec<u8>>) -> Result<u64, Error> {
    let (tx, mut rx) = mpsc::channel::<Vec<[String; 10]>>(2);
    let producer = tokio::spawn(pages(pool, filter, tx));
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, Error> {
        use rust_xlsxwriter::{Format, Workbook};
        let fail = |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("xlsx: {e}"));
        let mut workbook = Workbook::new();
        let bold = Format::new().set_bold();
        // A worksheet holds at most 1,048,576 rows: continue on another.
        let mut sheets = 1;
        let mut sheet = workbook
            .add_worksheet_with_constant_memory()
            .map_err(fail)?;
        sheet.set_name(SHEET).map_err(fail)?;
        write_headers(sheet, &bold).map_err(fail)?;
        let mut r = 1u32;
        while let Some(rows) = rx.blocking_recv() {
            for fields in rows {
                if r == XLSX_MAX_ROWS {
                    sheets += 1;
                    sheet = workbook
                        .add_worksheet_with_constant_memory()
                        .map_err(fail)?;
                    sheet
                        .set_name(format!("{SHEET} ({sheets})"))
                        .map_err(fail)?;
                    write_headers(sheet, &bold).map_err(fail)?;
                    r = 1;
                }
                for (c, value) in fields.iter().enumerate() {
                    if !value.is_empty() {
                        sheet.write_string(r, c as u16, cell(value)).map_err(fail)?;
                    }
                }
                r += 1;
            }
        }
        let mut file = tempfile()?;
        workbook.save_to_writer(&mut file).map_err(fail)?;
        file.flush().map_err(|e| Error::Internal(e.to_string()))?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let total = producer
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    stream_file(file, chunks).await?;
    Ok(total)
}

const SHEET: &str = "Audit log";
/// Excel's limit on the text of one cell.
const XLSX_MAX_CELL: usize = 32_767;

/// A cell's text, cut at Excel's limit with a visible mark (CSV keeps all).
fn cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.chars().count() <= XLSX_MAX_CELL {
        return value.into();
    }
    let mut cut: String = value.chars().take(XLSX_MAX_CELL - 20).collect();
    cut.push_str(" …[truncated]");
    cut.into()
}
const XLSX_MAX_ROWS: u32 = 1_048_576;

fn write_headers(
    sheet: &mut rust_xlsxwriter::Worksheet,
    bold: &rust_xlsxwriter::Format,
) -> Result<(), rust_xlsxwriter::XlsxError> {
    for (c, h) in HEADERS.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *h, bold)?;
    }
    Ok(())
}

fn tempfile() -> Result<std::fs::File, Error> {
    let path = std::env::temp_dir().join(format!("steward-export-{}.xlsx", uuid::Uuid::now_v7()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::Internal(format!("export temp file: {e}")))?;
    // Unlinked at once: the open handle keeps it until the stream ends.
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

async fn stream_file(file: std::fs::File, chunks: mpsc::Sender<Vec<u8>>) -> Result<(), Error> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if chunks.send(buf).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut out = Vec::new();
        csv_line(&mut out, &["plain", "a,b", "say \"hi\"", "two\nlines"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
    }
}
