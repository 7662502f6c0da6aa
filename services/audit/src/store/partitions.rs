//! Monthly partitions of `events`.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// The first day of the month of `at`.
pub fn month_of(at: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(at.year(), at.month(), 1).expect("valid month")
}

pub fn next_month(month: NaiveDate) -> NaiveDate {
    let (y, m) = if month.month() == 12 {
        (month.year() + 1, 1)
    } else {
        (month.year(), month.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("valid month")
}

pub fn name(month: NaiveDate) -> String {
    format!("events_y{:04}m{:02}", month.year(), month.month())
}

/// Serialises partition creation: two concurrent `CREATE TABLE IF NOT
/// EXISTS` of one partition race in PostgreSQL's catalog and one fails with
/// "already exists" (housekeeping creating months ahead while an ingest
/// transaction creates the current one).
const CREATE_LOCK: i64 = 0x5374_6577_5061_7274;

/// Creates the partition of `month` unless it exists. In a transaction the
/// lock is held until it ends; alone, for the statement.
pub async fn ensure(mut conn: &AsyncPgConnection, month: NaiveDate) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({CREATE_LOCK});
         CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ('{}') TO ('{}')",
        name(month),
        month,
        next_month(month)
    ))
    .await
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub month: NaiveDate,
}

/// Existing partitions, oldest first.
pub async fn list(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<Partition>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT c.relname AS name FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         JOIN pg_namespace n ON n.oid = p.relnamespace
         WHERE p.relname = 'events' AND n.nspname = current_schema()
         ORDER BY c.relname",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let rest = r.name.strip_prefix("events_y")?;
            let (y, m) = rest.split_once('m')?;
            let month = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
            Some(Partition {
                name: r.name,
                month,
            })
        })
        .collect())
}

/// Detaches and drops a whole partition: retention without row deletes.
pub async fn drop(conn: &mut AsyncPgConnection, partition: &Partition) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!(
        "ALTER TABLE events DETACH PARTITION {name}; DROP TABLE {name};",
        name = partition.name
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_arithmetic_and_names() {
        let dec = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(
            next_month(dec),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(name(dec), "events_y2026m12");
        let at = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(month_of(at), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
    }
}
