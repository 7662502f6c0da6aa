//! Balances and the ledger.

use std::collections::HashMap;
use steward_kit::db::Prepare;

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::{BalanceType, Operation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    pub main: Decimal,
    pub bonus: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub entry_id: Uuid,
    pub user_id: Uuid,
    pub operation: Operation,
    pub balance_type: BalanceType,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub actor_user_id: String,
    pub notes: String,
    pub created_at: DateTime<Utc>,
}

pub(super) fn dec(s: &str) -> Decimal {
    // NUMERIC text from PostgreSQL always parses.
    s.parse().unwrap_or_default()
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = Text)]
    main: String,
    #[diesel(sql_type = Text)]
    bonus: String,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// A change to apply.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub user_id: Uuid,
    pub balance_type: BalanceType,
    pub operation: Operation,
    pub amount: Decimal,
    pub actor_user_id: &'a str,
    pub notes: &'a str,
}

fn entry(
    change: &Change<'_>,
    entry_id: Uuid,
    signed: Decimal,
    applied: &Applied,
) -> (Entry, Balances) {
    let balances = Balances {
        main: dec(&applied.main),
        bonus: dec(&applied.bonus),
    };
    let after = match change.balance_type {
        BalanceType::Main => balances.main,
        BalanceType::Bonus => balances.bonus,
    };
    (
        Entry {
            id: applied.id,
            entry_id,
            user_id: change.user_id,
            operation: change.operation,
            balance_type: change.balance_type,
            amount: signed,
            balance_after: after,
            actor_user_id: change.actor_user_id.to_owned(),
            notes: change.notes.to_owned(),
            created_at: applied.created_at,
        },
        balances,
    )
}

/// Adds `amount` to a balance (creating the account's row on first use) and
/// records the entry, in one statement.
pub async fn credit(
    conn: &mut AsyncPgConnection,
    change: &Change<'_>,
) -> QueryResult<(Entry, Balances)> {
    let entry_id = Uuid::now_v7();
    let applied: Applied = diesel::sql_query(format!(
        "WITH b AS (
             INSERT INTO balances AS cur (user_id, {col}) VALUES ($1, $2::numeric)
             ON CONFLICT (user_id) DO UPDATE SET {col} = cur.{col} + EXCLUDED.{col}, updated_at = now()
             RETURNING main, bonus, {col} AS after
         ), e AS (
             INSERT INTO ledger (entry_id, user_id, operation, balance_type, amount, balance_after, actor_user_id, notes)
             SELECT $3, $1, $4, $5, $2::numeric, b.after, $6, $7 FROM b
             RETURNING id, created_at
         )
         SELECT b.main::text AS main, b.bonus::text AS bonus, e.id, e.created_at FROM b, e",
        col = change.balance_type.column()
    ))
    .bind::<SqlUuid, _>(change.user_id)
    .bind::<Text, _>(change.amount.to_string())
    .bind::<SqlUuid, _>(entry_id)
    .bind::<Text, _>(change.operation.as_str())
    .bind::<Text, _>(change.balance_type.as_str())
    .bind::<Text, _>(change.actor_user_id)
    .bind::<Text, _>(change.notes)
    .get_result(conn)
    .await?;
    Ok(entry(change, entry_id, change.amount, &applied))
}

/// Takes `amount` from a balance only if it has that much; `None` when it
/// does not (nothing changed).
pub async fn debit(
    conn: &mut AsyncPgConnection,
    change: &Change<'_>,
) -> QueryResult<Option<(Entry, Balances)>> {
    let entry_id = Uuid::now_v7();
    let applied: Option<Applied> = diesel::sql_query(format!(
        "WITH b AS (
             UPDATE balances SET {col} = {col} - $2::numeric, updated_at = now()
             WHERE user_id = $1 AND {col} >= $2::numeric
             RETURNING main, bonus, {col} AS after
         ), e AS (
             INSERT INTO ledger (entry_id, user_id, operation, balance_type, amount, balance_after, actor_user_id, notes)
             SELECT $3, $1, $4, $5, -($2::numeric), b.after, $6, $7 FROM b
             RETURNING id, created_at
         )
         SELECT b.main::text AS main, b.bonus::text AS bonus, e.id, e.created_at FROM b, e",
        col = change.balance_type.column()
    ))
    .bind::<SqlUuid, _>(change.user_id)
    .bind::<Text, _>(change.amount.to_string())
    .bind::<SqlUuid, _>(entry_id)
    .bind::<Text, _>(change.operation.as_str())
    .bind::<Text, _>(change.balance_type.as_str())
    .bind::<Text, _>(change.actor_user_id)
    .bind::<Text, _>(change.notes)
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(applied.map(|a| entry(change, entry_id, -change.amount, &a)))
}

/// The balances of a batch's accounts, locked until its transaction ends
/// (the batcher decides against them in memory, then writes them back with
/// [`write_batch`]). Accounts in `create` get a zero row first if they have
/// none; others without a row are absent from the answer.
pub async fn lock_balances(
    mut conn: &AsyncPgConnection,
    users: &[Uuid],
    create: &[Uuid],
) -> QueryResult<HashMap<Uuid, Balances>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = Text)]
        main: String,
        #[diesel(sql_type = Text)]
        bonus: String,
    }
    if !create.is_empty() {
        diesel::sql_query(
            "INSERT INTO balances (user_id) SELECT * FROM UNNEST($1::uuid[]) ORDER BY 1
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<SqlUuid>, _>(create)
        .prepared()
        .execute(&mut conn)
        .await?;
    }
    // Row locks in id order: two batches over the same accounts queue
    // rather than deadlock.
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT user_id, main::text AS main, bonus::text AS bonus FROM balances
         WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
    )
    .bind::<Array<SqlUuid>, _>(users)
    .prepared()
    .load(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.user_id,
                Balances {
                    main: dec(&r.main),
                    bonus: dec(&r.bonus),
                },
            )
        })
        .collect())
}

/// A ledger entry decided by the batcher, before it has an id.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub entry_id: Uuid,
    pub user_id: Uuid,
    pub operation: Operation,
    pub balance_type: BalanceType,
    /// Signed: credits positive, debits negative.
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub actor_user_id: String,
    pub notes: String,
}

/// Ids for `n` entries (ascending) and the transaction's time, which is
/// what the ledger's defaults would give them: reserved in a batch's first
/// round trip, they let its responses be built before its writes, so the
/// writes and the remembered responses travel together. Ids a batch does
/// not use are gaps, as a rolled-back insert leaves.
pub async fn reserve_ids(
    mut conn: &AsyncPgConnection,
    n: i64,
) -> QueryResult<(Vec<i64>, DateTime<Utc>)> {
    #[derive(QueryableByName)]
    struct Reserved {
        #[diesel(sql_type = Array<BigInt>)]
        ids: Vec<i64>,
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    let r: Reserved = diesel::sql_query(
        "SELECT ARRAY(SELECT nextval('ledger_id_seq') FROM generate_series(1, $1)) AS ids,
                now() AS at",
    )
    .bind::<BigInt, _>(n)
    .prepared()
    .get_result(&mut conn)
    .await?;
    Ok((r.ids, r.at))
}

/// Entries as they will be stored, with ids from [`reserve_ids`].
pub fn entries_at(entries: &[NewEntry], ids: &[i64], at: DateTime<Utc>) -> Option<Vec<Entry>> {
    (ids.len() >= entries.len()).then(|| {
        entries
            .iter()
            .zip(ids)
            .map(|(e, &id)| Entry {
                id,
                entry_id: e.entry_id,
                user_id: e.user_id,
                operation: e.operation,
                balance_type: e.balance_type,
                amount: e.amount,
                balance_after: e.balance_after,
                actor_user_id: e.actor_user_id.clone(),
                notes: e.notes.clone(),
                created_at: at,
            })
            .collect()
    })
}

/// Writes a batch's entries (one insert) and its accounts' final balances
/// (one update), sent together.
pub async fn write_batch(
    mut conn: &AsyncPgConnection,
    entries: &[Entry],
    balances: &[(Uuid, Balances)],
) -> QueryResult<()> {
    let mut update_conn = conn;
    let insert = async {
        if entries.is_empty() {
            return Ok(0);
        }
        diesel::sql_query(
            "INSERT INTO ledger (id, entry_id, user_id, operation, balance_type, amount,
                                 balance_after, actor_user_id, notes, created_at)
             SELECT id, e, u, o, t, a::numeric, b::numeric, actor, n, $10
             FROM UNNEST($1::int8[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[]) AS x(id, e, u, o, t, a, b, actor, n)",
        )
        .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(entries.iter().map(|e| e.entry_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(entries.iter().map(|e| e.user_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.operation.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.balance_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.amount.to_string())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.balance_after.to_string())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.actor_user_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(entries.iter().map(|e| e.notes.as_str()).collect::<Vec<_>>())
        .bind::<Timestamptz, _>(entries[0].created_at)
        .prepared()
        .execute(&mut conn)
        .await
    };
    let update =
        async {
            if balances.is_empty() {
                return Ok(0);
            }
            diesel::sql_query(
            "UPDATE balances b SET main = v.m::numeric, bonus = v.bo::numeric, updated_at = now()
             FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS v(u, m, bo)
             WHERE b.user_id = v.u",
        )
        .bind::<Array<SqlUuid>, _>(balances.iter().map(|b| b.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(balances.iter().map(|b| b.1.main.to_string()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(balances.iter().map(|b| b.1.bonus.to_string()).collect::<Vec<_>>())
        .prepared()
        .execute(&mut update_conn)
        .await
        };
    futures_util::try_join!(insert, update)?;
    Ok(())
}

/// Whether a charge may take the main balance below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdraft {
    /// Usage: the resources were already consumed.
    Allowed,
    /// Subscriptions: refused (`None`) unless bonus + main cover it.
    Refused,
}

/// Charges `amount`, bonus first then main. Records one CHARGE entry per
/// balance touched. `None` when `overdraft` is refused and funds are short.
pub async fn charge(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    amount: Decimal,
    notes: &str,
    overdraft: Overdraft,
) -> QueryResult<Option<(Balances, Decimal)>> {
    #[derive(QueryableByName)]
    struct Charged {
        #[diesel(sql_type = Text)]
        main: String,
        #[diesel(sql_type = Text)]
        bonus: String,
        #[diesel(sql_type = Text)]
        from_bonus: String,
    }
    diesel::sql_query("INSERT INTO balances (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind::<SqlUuid, _>(user_id)
        .prepared()
        .execute(conn)
        .await?;
    let charged: Option<Charged> = diesel::sql_query(
        "WITH b AS (
             UPDATE balances SET
                 last_bonus_debit = LEAST(bonus, $2::numeric),
                 bonus = bonus - LEAST(bonus, $2::numeric),
                 main = main - ($2::numeric - LEAST(bonus, $2::numeric)),
                 updated_at = now()
             WHERE user_id = $1 AND ($6 OR bonus + main >= $2::numeric)
             RETURNING main, bonus, last_bonus_debit AS from_bonus
         ), eb AS (
             INSERT INTO ledger (entry_id, user_id, operation, balance_type, amount, balance_after, notes)
             SELECT $3, $1, 'CHARGE', 'BONUS', -b.from_bonus, b.bonus, $5 FROM b WHERE b.from_bonus > 0
         ), em AS (
             INSERT INTO ledger (entry_id, user_id, operation, balance_type, amount, balance_after, notes)
             SELECT $4, $1, 'CHARGE', 'MAIN', -($2::numeric - b.from_bonus), b.main, $5 FROM b
             WHERE $2::numeric - b.from_bonus > 0
         )
         SELECT main::text AS main, bonus::text AS bonus, from_bonus::text AS from_bonus FROM b",
    )
    .bind::<SqlUuid, _>(user_id)
    .bind::<Text, _>(amount.to_string())
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(notes)
    .bind::<diesel::sql_types::Bool, _>(overdraft == Overdraft::Allowed)
    .prepared().get_result(conn)
    .await
    .optional_row()?;
    Ok(charged.map(|c| {
        (
            Balances {
                main: dec(&c.main),
                bonus: dec(&c.bonus),
            },
            dec(&c.from_bonus),
        )
    }))
}

trait OptionalRow<T> {
    fn optional_row(self) -> QueryResult<Option<T>>;
}

impl<T> OptionalRow<T> for QueryResult<T> {
    fn optional_row(self) -> QueryResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(diesel::result::Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Balances of these users; users without a row have zero.
pub async fn balances(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> QueryResult<HashMap<Uuid, Balances>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = Text)]
        main: String,
        #[diesel(sql_type = Text)]
        bonus: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT user_id, main::text AS main, bonus::text AS bonus FROM balances WHERE user_id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(users)
    .prepared().load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.user_id,
                Balances {
                    main: dec(&r.main),
                    bonus: dec(&r.bonus),
                },
            )
        })
        .collect())
}

/// Blanks the free text of a user's entries (personal-data erasure); the
/// amounts stay, so the ledger still sums to the balance.
pub async fn erase_notes(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::sql_query("UPDATE ledger SET notes = '' WHERE user_id = $1 AND notes <> ''")
        .bind::<SqlUuid, _>(user_id)
        .prepared()
        .execute(conn)
        .await
}
