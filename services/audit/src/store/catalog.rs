//! The action catalog.

use std::collections::HashSet;

use diesel::{prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{action_types::dsl as a, products::dsl as p};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub product: String,
    pub title: String,
    pub actions: Vec<(String, String)>,
}

/// Every (product, action) pair ingest accepts (listed or not).
pub async fn known(conn: &mut AsyncPgConnection) -> QueryResult<HashSet<(String, String)>> {
    a::action_types
        .select((a::product, a::action))
        .load::<(String, String)>(conn)
        .await
        .map(|rows| rows.into_iter().collect())
}

pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Product>> {
    let products: Vec<(String, String)> = p::products
        .select((p::product, p::title))
        .order((p::built_in.desc(), p::product))
        .load(conn)
        .await?;
    let actions: Vec<(String, String, String)> = a::action_types
        .filter(a::listed)
        .select((a::product, a::action, a::title))
        .order((a::product, a::action))
        .load(conn)
        .await?;
    Ok(products
        .into_iter()
        .map(|(product, title)| Product {
            actions: actions
                .iter()
                .filter(|(p, _, _)| *p == product)
                .map(|(_, action, title)| (action.clone(), title.clone()))
                .collect(),
            product,
            title,
        })
        .collect())
}

/// Adds or retitles a product's actions, listed (never removes: old events
/// keep their names). `actions` holds each action once.
pub async fn register(
    conn: &mut AsyncPgConnection,
    product: &str,
    title: &str,
    actions: &[(String, String)],
) -> QueryResult<()> {
    diesel::insert_into(p::products)
        .values((p::product.eq(product), p::title.eq(title)))
        .on_conflict(p::product)
        .do_update()
        .set(p::title.eq(excluded(p::title)))
        .execute(conn)
        .await?;
    let rows: Vec<_> = actions
        .iter()
        .map(|(action, title)| {
            (
                a::product.eq(product),
                a::action.eq(action),
                a::title.eq(title),
            )
        })
        .collect();
    diesel::insert_into(a::action_types)
        .values(rows)
        .on_conflict((a::product, a::action))
        .do_update()
        .set((a::title.eq(excluded(a::title)), a::listed.eq(true)))
        .execute(conn)
        .await
        .map(|_| ())
}
