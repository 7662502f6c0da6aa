//! Definition queries.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{
    domain::{Definition, QuotaType, Value},
    schema::definitions::dsl as d,
};

#[derive(Queryable, Selectable)]
#[diesel(table_name = crate::schema::definitions)]
struct Row {
    key: String,
    value_type: String,
    unit: String,
    description: String,
    product: String,
    default_value: String,
    default_unlimited: bool,
    allowed_values: Vec<String>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Row> for Definition {
    fn from(r: Row) -> Self {
        let kind = QuotaType::parse(&r.value_type).unwrap_or(QuotaType::Count);
        Definition {
            default: Value::from_stored(kind, &r.default_value, r.default_unlimited),
            key: r.key,
            kind,
            unit: r.unit,
            description: r.description,
            product: r.product,
            allowed: r.allowed_values,
            updated_at: r.updated_at,
        }
    }
}

/// Every definition, by key.
pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Definition>> {
    d::definitions
        .order(d::key)
        .select(Row::as_select())
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(Definition::from).collect())
}

/// Escapes LIKE wildcards so a search is a plain substring.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A page of definitions by key, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    key_contains: &str,
    product: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Definition>> {
    let mut q = d::definitions.into_boxed();
    if !key_contains.is_empty() {
        q = q.filter(d::key.ilike(like_pattern(key_contains)));
    }
    if !product.is_empty() {
        q = q.filter(d::product.eq(product.to_owned()));
    }
    if let Some(after) = after {
        q = q.filter(d::key.gt(after.to_owned()));
    }
    q.order(d::key)
        .limit(limit)
        .select(Row::as_select())
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(Definition::from).collect())
}

/// The definitions of `keys` that exist, locked for the transaction.
pub async fn lock(conn: &mut AsyncPgConnection, keys: &[String]) -> QueryResult<Vec<Definition>> {
    d::definitions
        .filter(d::key.eq_any(keys))
        .order(d::key)
        .select(Row::as_select())
        .for_update()
        .load(conn)
        .await
        .map(|rows| rows.into_iter().map(Definition::from).collect())
}

/// Inserts or updates (unit, description, default, allowed values; never
/// the type or product) one definition.
pub async fn upsert(conn: &mut AsyncPgConnection, def: &Definition) -> QueryResult<Definition> {
    diesel::insert_into(d::definitions)
        .values((
            d::key.eq(&def.key),
            d::value_type.eq(def.kind.as_str()),
            d::unit.eq(&def.unit),
            d::description.eq(&def.description),
            d::product.eq(&def.product),
            d::default_value.eq(def.default.text()),
            d::default_unlimited.eq(def.default.is_unlimited()),
            d::allowed_values.eq(&def.allowed),
        ))
        .on_conflict(d::key)
        .do_update()
        .set((
            d::unit.eq(&def.unit),
            d::description.eq(&def.description),
            d::default_value.eq(def.default.text()),
            d::default_unlimited.eq(def.default.is_unlimited()),
            d::allowed_values.eq(&def.allowed),
            d::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Row::as_returning())
        .get_result(conn)
        .await
        .map(Definition::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_escapes_wildcards() {
        assert_eq!(super::like_pattern("max_count%"), "%max\\_count\\%%");
    }
}
