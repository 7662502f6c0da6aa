//! The `events` table: append (one UNNEST statement per batch), queries.

use std::collections::{BTreeMap, HashSet};
use steward_kit::db::Prepare;

use chrono::{DateTime, Utc};
use diesel::{
    dsl::sql,
    prelude::*,
    sql_types::{
        Array, Bool, Bytea, Int2, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    },
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::events::{self, dsl as e};
use crate::domain::{
    event::{Event, Seal, StoredEvent},
    seal::{ChainSigner, erasure_message},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    seq: i64,
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    product: String,
    action: String,
    category: i16,
    actor_user_id: String,
    subject_user_id: String,
    modified_user_id: String,
    impersonator_user_id: String,
    impersonation_session_id: String,
    token_id: String,
    project: String,
    comments: serde_json::Value,
    pii_comments: serde_json::Value,
    client_ip: String,
    user_agent: String,
    result: i16,
    error_message: String,
    duration_us: i64,
    request_id: String,
    trace_id: String,
    source: String,
    pii_salt: Option<Vec<u8>>,
    pii_digest: Vec<u8>,
    pii_erased: bool,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    erasure_signature: Option<Vec<u8>>,
}

fn map_of(value: serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(value).unwrap_or_default()
}

impl From<EventRow> for StoredEvent {
    fn from(r: EventRow) -> Self {
        StoredEvent {
            event: Event {
                event_id: r.event_id,
                occurred_at: r.occurred_at,
                product: r.product,
                action: r.action,
                category: r.category,
                actor_user_id: r.actor_user_id,
                subject_user_id: r.subject_user_id,
                modified_user_id: r.modified_user_id,
                impersonator_user_id: r.impersonator_user_id,
                impersonation_session_id: r.impersonation_session_id,
                token_id: r.token_id,
                project: r.project,
                comments: map_of(r.comments),
                pii_comments: map_of(r.pii_comments),
                client_ip: r.client_ip,
                user_agent: r.user_agent,
                result: r.result,
                error_message: r.error_message,
                duration_us: r.duration_us,
                request_id: r.request_id,
                trace_id: r.trace_id,
                source: r.source,
            },
            seq: r.seq,
            received_at: r.received_at,
            pii_erased: r.pii_erased,
            pii_salt: r.pii_salt,
            pii_digest: r.pii_digest,
            prev_hash: r.prev_hash,
            hash: r.hash,
            erasure_signature: r.erasure_signature,
        }
    }
}

/// Claims the event ids bound as `$1` (ON CONFLICT DO NOTHING), returning
/// those claimed now; also run by the COPY path (`copy.rs`).
pub const CLAIM_IDS: &str = "INSERT INTO event_ids (event_id) SELECT DISTINCT UNNEST($1::uuid[])
         ON CONFLICT DO NOTHING RETURNING event_id";

/// Which of the users bound as `$1` were erased; also run by the COPY path.
pub const ERASED_AMONG: &str = "SELECT user_id FROM erased_subjects WHERE user_id = ANY($1)";

/// Claims event ids in `event_ids` (ON CONFLICT DO NOTHING); returns the
/// ids claimed now, i.e. not stored before. Call in the ingest transaction.
pub async fn claim_ids(mut conn: &AsyncPgConnection, ids: &[Uuid]) -> QueryResult<HashSet<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        event_id: Uuid,
    }
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Id> = diesel::sql_query(CLAIM_IDS)
        .bind::<Array<SqlUuid>, _>(ids)
        .prepared()
        .load(&mut conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
}

fn json(map: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::to_value(map).unwrap_or_default()
}

/// Inserts sealed events in one statement (column arrays through UNNEST).
pub async fn insert(
    mut conn: &AsyncPgConnection,
    rows: &[(std::borrow::Cow<'_, Event>, Seal)],
) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    macro_rules! col {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    diesel::sql_query(
        "INSERT INTO events (seq, event_id, occurred_at, product, action, category,
            actor_user_id, subject_user_id, modified_user_id, impersonator_user_id,
            impersonation_session_id, token_id, project, comments, pii_comments, client_ip,
            user_agent, result, error_message, duration_us, request_id, trace_id, source,
            pii_salt, pii_digest, prev_hash, hash, pii_erased, erasure_signature)
         SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[],
            $6::int2[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::jsonb[], $15::jsonb[], $16::text[], $17::text[], $18::int2[],
            $19::text[], $20::int8[], $21::text[], $22::text[], $23::text[], $24::bytea[],
            $25::bytea[], $26::bytea[], $27::bytea[], $28::bool[], $29::bytea[])",
    )
    .bind::<Array<Int8>, _>(col!(|(_, s)| s.seq))
    .bind::<Array<SqlUuid>, _>(col!(|(e, _)| e.event_id))
    .bind::<Array<Timestamptz>, _>(col!(|(e, _)| e.occurred_at))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.product.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.action.as_str()))
    .bind::<Array<Int2>, _>(col!(|(e, _)| e.category))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.actor_user_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.subject_user_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.modified_user_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.impersonator_user_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.impersonation_session_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.token_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.project.as_str()))
    .bind::<Array<Jsonb>, _>(col!(|(e, _)| json(&e.comments)))
    .bind::<Array<Jsonb>, _>(col!(|(e, _)| json(&e.pii_comments)))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.client_ip.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.user_agent.as_str()))
    .bind::<Array<Int2>, _>(col!(|(e, _)| e.result))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.error_message.as_str()))
    .bind::<Array<Int8>, _>(col!(|(e, _)| e.duration_us))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.request_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.trace_id.as_str()))
    .bind::<Array<Text>, _>(col!(|(e, _)| e.source.as_str()))
    .bind::<Array<Nullable<Bytea>>, _>(col!(|(_, s)| s.pii_salt.as_deref()))
    .bind::<Array<Bytea>, _>(col!(|(_, s)| s.pii_digest.as_slice()))
    .bind::<Array<Bytea>, _>(col!(|(_, s)| s.prev_hash.as_slice()))
    .bind::<Array<Bytea>, _>(col!(|(_, s)| s.hash.as_slice()))
    .bind::<Array<Bool>, _>(col!(|(_, s)| s.pii_salt.is_none()))
    .bind::<Array<Nullable<Bytea>>, _>(col!(|(_, s)| s.erasure_signature.as_deref()))
    .prepared()
    .execute(&mut conn)
    .await
}

pub async fn get(conn: &mut AsyncPgConnection, event_id: Uuid) -> QueryResult<Option<StoredEvent>> {
    e::events
        .filter(e::event_id.eq(event_id))
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()
        .map(|r| r.map(StoredEvent::from))
}

/// Events with `from <= seq <= to`, in sequence order, at most `limit`.
pub async fn by_sequence(
    conn: &mut AsyncPgConnection,
    from: i64,
    to: i64,
    limit: i64,
) -> QueryResult<Vec<StoredEvent>> {
    e::events
        .filter(e::seq.ge(from).and(e::seq.le(to)))
        .order(e::seq)
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(StoredEvent::from).collect())
}

/// The hash the event before `seq` had: a stored event, a tombstone, or
/// the genesis hash for seq 1.
pub async fn predecessor_hash(
    conn: &mut AsyncPgConnection,
    seq: i64,
) -> QueryResult<Option<Vec<u8>>> {
    use super::schema::chain_tombstones::dsl as t;
    if seq <= 1 {
        return Ok(Some(vec![0; 32]));
    }
    let stored: Option<Vec<u8>> = e::events
        .filter(e::seq.eq(seq - 1))
        .select(e::hash)
        .first(conn)
        .await
        .optional()?;
    if stored.is_some() {
        return Ok(stored);
    }
    t::chain_tombstones
        .filter(t::seq.eq(seq - 1))
        .select(t::hash)
        .first(conn)
        .await
        .optional()
}

/// A tombstone: (seq, prev_hash, hash, signature).
pub type Tombstone = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Tombstones in a sequence range (links of events removed by retention).
pub async fn tombstones(
    conn: &mut AsyncPgConnection,
    from: i64,
    to: i64,
) -> QueryResult<Vec<Tombstone>> {
    use super::schema::chain_tombstones::dsl as t;
    t::chain_tombstones
        .filter(t::seq.ge(from).and(t::seq.le(to)))
        .order(t::seq)
        .select((t::seq, t::prev_hash, t::hash, t::signature))
        .load(conn)
        .await
}

/// Filters of ListEvents and ExportEvents.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub subject_user_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub modified_user_id: Option<String>,
    pub impersonator_user_id: Option<String>,
    pub impersonation_session_id: Option<String>,
    pub token_id: Option<String>,
    pub project: Option<String>,
    pub product: Option<String>,
    pub actions: Vec<String>,
    pub category: Option<i16>,
    pub result: Option<i16>,
    pub client_ip: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Newest-first keyset position, with the time window of the first page
/// (defaults are relative to "now", which must not drift between pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub occurred_at: DateTime<Utc>,
    pub seq: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Which index leads a listing's order (see [`list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    Time,
    Action,
    Product,
}

/// Events matching `filter`, newest first, after `after`, at most `limit`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> QueryResult<Vec<StoredEvent>> {
    let mut q = e::events.select(EventRow::as_select()).into_boxed();
    macro_rules! eq {
        ($field:ident, $col:expr) => {
            if let Some(v) = &filter.$field {
                q = q.filter($col.eq(v.clone()));
            }
        };
    }
    eq!(subject_user_id, e::subject_user_id);
    eq!(actor_user_id, e::actor_user_id);
    eq!(modified_user_id, e::modified_user_id);
    eq!(impersonator_user_id, e::impersonator_user_id);
    eq!(impersonation_session_id, e::impersonation_session_id);
    eq!(token_id, e::token_id);
    eq!(project, e::project);
    eq!(client_ip, e::client_ip);
    if let Some(category) = filter.category {
        q = q.filter(e::category.eq(category));
    }
    if let Some(result) = filter.result {
        q = q.filter(e::result.eq(result));
    }
    // One action (else the product) is written as a range and the rows
    // ordered by (it, time, seq): as an equality the planner folds it into
    // a constant, orders by the time index and filters, which reads every
    // newer event of other actions first (70 ms at 10M events when the
    // newest 110k were of other actions). This way only its own index
    // yields the order without a sort. Several actions need a merge.
    let mut lead = Lead::Time;
    match filter.actions.as_slice() {
        [] => {}
        [one] => {
            q = q.filter(e::action.ge(one.clone()).and(e::action.le(one.clone())));
            lead = Lead::Action;
        }
        many => q = q.filter(e::action.eq_any(many.to_vec())),
    }
    if let Some(product) = &filter.product {
        if lead == Lead::Time {
            q = q.filter(
                e::product
                    .ge(product.clone())
                    .and(e::product.le(product.clone())),
            );
            lead = Lead::Product;
        } else {
            q = q.filter(e::product.eq(product.clone()));
        }
    }
    q = q.filter(
        e::occurred_at
            .ge(filter.start)
            .and(e::occurred_at.lt(filter.end)),
    );
    if let Some(c) = after {
        q = q.filter(
            sql::<Bool>("(occurred_at, seq) < (")
                .bind::<Timestamptz, _>(c.occurred_at)
                .sql(", ")
                .bind::<Int8, _>(c.seq)
                .sql(")"),
        );
    }
    let q = match lead {
        Lead::Action => q.order((e::action.asc(), e::occurred_at.desc(), e::seq.desc())),
        Lead::Product => q.order((e::product.asc(), e::occurred_at.desc(), e::seq.desc())),
        Lead::Time => q.order((e::occurred_at.desc(), e::seq.desc())),
    };
    q.limit(limit)
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(StoredEvent::from).collect())
}

/// Which of these user ids were erased.
pub async fn erased_among(
    mut conn: &AsyncPgConnection,
    users: &[&str],
) -> QueryResult<HashSet<String>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        user_id: String,
    }
    if users.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Id> = diesel::sql_query(ERASED_AMONG)
        .bind::<Array<Text>, _>(users)
        .prepared()
        .load(&mut conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// The lowest sequence stored outside `[1, head]` (forged rows), if any.
pub async fn outside_chain(conn: &mut AsyncPgConnection, head: i64) -> QueryResult<Option<i64>> {
    e::events
        .filter(e::seq.gt(head).or(e::seq.lt(1)))
        .select(diesel::dsl::min(e::seq))
        .first::<Option<i64>>(conn)
        .await
}

/// Blanks the personal data of every event the user is subject, actor or
/// modified user of, and remembers the user so that later events arrive
/// erased. The salt goes too, so the digest can no longer be tested
/// against guesses.
pub async fn erase_subject(
    mut conn: &AsyncPgConnection,
    signer: &ChainSigner,
    user_id: &str,
) -> QueryResult<usize> {
    diesel::sql_query("INSERT INTO erased_subjects (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind::<Text, _>(user_id)
        .prepared()
        .execute(&mut conn)
        .await?;
    let erased = diesel::update(
        e::events
            .filter(
                e::subject_user_id
                    .eq(user_id)
                    .or(e::actor_user_id.eq(user_id))
                    .or(e::modified_user_id.eq(user_id)),
            )
            .filter(e::pii_erased.eq(false)),
    )
    .set((
        e::client_ip.eq(""),
        e::user_agent.eq(""),
        e::pii_comments.eq(serde_json::json!({})),
        e::pii_salt.eq(None::<Vec<u8>>),
        e::pii_erased.eq(true),
    ))
    .returning((e::seq, e::hash))
    .load::<(i64, Vec<u8>)>(&mut conn)
    .await?;
    // Each erasure signed: a row marked erased without it is a forgery.
    let (seqs, signatures): (Vec<i64>, Vec<Vec<u8>>) = erased
        .iter()
        .map(|(seq, hash)| (*seq, signer.sign(&erasure_message(*seq, hash))))
        .unzip();
    if !seqs.is_empty() {
        diesel::sql_query(
            "UPDATE events e SET erasure_signature = s.signature
             FROM UNNEST($1::int8[], $2::bytea[]) AS s(seq, signature) WHERE e.seq = s.seq",
        )
        .bind::<Array<Int8>, _>(seqs)
        .bind::<Array<Bytea>, _>(signatures)
        .prepared()
        .execute(&mut conn)
        .await?;
    }
    Ok(erased.len())
}
