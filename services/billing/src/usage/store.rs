//! Usage records, billing history and environments.

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, Bool, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::tariff::Usage;

#[derive(Debug, Clone)]
pub struct Record {
    pub usage_id: String,
    pub user_id: Uuid,
    pub group: String,
    pub environment: String,
    pub node_id: String,
    pub layer: String,
    pub usage: Usage,
    pub cost: Decimal,
}

/// Inserts records not seen before; returns the ids inserted now.
pub async fn insert_new(
    conn: &mut AsyncPgConnection,
    records: &[Record],
) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        usage_id: String,
    }
    macro_rules! col {
        ($f:expr) => {
            records.iter().map($f).collect::<Vec<_>>()
        };
    }
    let ids: Vec<Id> = diesel::sql_query(
        "INSERT INTO usage_records (usage_id, user_id, group_name, environment, node_id, layer,
             slot_start, slot_end, reserved_cloudlets, dynamic_cloudlets, storage, traffic, cost)
         SELECT u.usage_id, u.user_id, u.group_name, u.environment, u.node_id, u.layer, u.slot_start,
                u.slot_end, u.reserved::numeric, u.dynamic::numeric, u.storage::numeric,
                u.traffic::numeric, u.cost::numeric
         FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                     $12::text[], $13::text[])
              AS u(usage_id, user_id, group_name, environment, node_id, layer, slot_start, slot_end,
                   reserved, dynamic, storage, traffic, cost)
         ON CONFLICT (usage_id) DO NOTHING
         RETURNING usage_id",
    )
    .bind::<Array<Text>, _>(col!(|r| r.usage_id.clone()))
    .bind::<Array<SqlUuid>, _>(col!(|r| r.user_id))
    .bind::<Array<Text>, _>(col!(|r| r.group.clone()))
    .bind::<Array<Text>, _>(col!(|r| r.environment.clone()))
    .bind::<Array<Text>, _>(col!(|r| r.node_id.clone()))
    .bind::<Array<Text>, _>(col!(|r| r.layer.clone()))
    .bind::<Array<Timestamptz>, _>(col!(|r| r.usage.slot_start))
    .bind::<Array<Timestamptz>, _>(col!(|r| r.usage.slot_end))
    .bind::<Array<Text>, _>(col!(|r| r.usage.reserved_cloudlets.to_string()))
    .bind::<Array<Text>, _>(col!(|r| r.usage.dynamic_cloudlets.to_string()))
    .bind::<Array<Text>, _>(col!(|r| r.usage.storage.to_string()))
    .bind::<Array<Text>, _>(col!(|r| r.usage.traffic.to_string()))
    .bind::<Array<Text>, _>(col!(|r| r.cost.to_string()))
    .load(conn)
    .await?;
    Ok(ids.into_iter().map(|i| i.usage_id).collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub interval_start: DateTime<Utc>,
    pub environment: String,
    pub item: String,
    pub reserved_cloudlets: Decimal,
    pub dynamic_cloudlets: Decimal,
    pub storage: Decimal,
    pub traffic: Decimal,
    pub cost: Decimal,
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

/// Usage summed per interval, environment and item (node, or layer when
/// `group_by_node`). `unit` is a `date_trunc` unit chosen by the caller.
pub async fn history(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    unit: &'static str,
    group_by_node: bool,
    environment: Option<&str>,
) -> QueryResult<Vec<HistoryRow>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Timestamptz)]
        interval_start: DateTime<Utc>,
        #[diesel(sql_type = Text)]
        environment: String,
        #[diesel(sql_type = Text)]
        item: String,
        #[diesel(sql_type = Text)]
        reserved: String,
        #[diesel(sql_type = Text)]
        dynamic: String,
        #[diesel(sql_type = Text)]
        storage: String,
        #[diesel(sql_type = Text)]
        traffic: String,
        #[diesel(sql_type = Text)]
        cost: String,
    }
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT date_trunc('{unit}', slot_start, 'UTC') AS interval_start, environment,
                CASE WHEN $4 THEN layer ELSE node_id END AS item,
                sum(reserved_cloudlets)::text AS reserved, sum(dynamic_cloudlets)::text AS dynamic,
                sum(storage)::text AS storage, sum(traffic)::text AS traffic, sum(cost)::text AS cost
         FROM usage_records
         WHERE user_id = $1 AND slot_start >= $2 AND slot_start < $3
           AND ($5 = '' OR environment = $5)
         GROUP BY 1, 2, 3
         ORDER BY 1, 2, 3"
    ))
    .bind::<SqlUuid, _>(user_id)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .bind::<Bool, _>(group_by_node)
    .bind::<Text, _>(environment.unwrap_or(""))
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryRow {
            interval_start: r.interval_start,
            environment: r.environment,
            item: r.item,
            reserved_cloudlets: dec(&r.reserved),
            dynamic_cloudlets: dec(&r.dynamic),
            storage: dec(&r.storage),
            traffic: dec(&r.traffic),
            cost: dec(&r.cost),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub node_ids: Vec<String>,
    pub last_usage: DateTime<Utc>,
}

pub async fn environments(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<Vec<Environment>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        environment: String,
        #[diesel(sql_type = Array<Text>)]
        nodes: Vec<String>,
        #[diesel(sql_type = Timestamptz)]
        last_usage: DateTime<Utc>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT environment, array_agg(DISTINCT node_id ORDER BY node_id) AS nodes,
                max(slot_end) AS last_usage
         FROM usage_records WHERE user_id = $1 GROUP BY environment ORDER BY environment",
    )
    .bind::<SqlUuid, _>(user_id)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Environment {
            name: r.environment,
            node_ids: r.nodes,
            last_usage: r.last_usage,
        })
        .collect())
}
