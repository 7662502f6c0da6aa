//! Group value use cases. Each changed key is audited on its own, with the
//! old and new value and the reason.

use std::collections::HashMap;

use steward_kit::Tx;

use super::store;
use crate::{
    cache::{Catalog, Touched, announce},
    domain::{Change, Source, Value},
    error::{self, Error},
};

/// A validated edit of a group.
#[derive(Debug, Clone)]
pub struct GroupEdit {
    pub group: String,
    /// (key, value); keys exist in the catalog.
    pub settings: Vec<(String, Value)>,
    pub reason: String,
}

/// A group's stored values, decoded.
async fn stored(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    group: &str,
) -> Result<HashMap<String, Value>, Error> {
    Ok(store::lock_group(tx.conn, group)
        .await?
        .into_iter()
        .filter_map(|(key, text, unlimited)| {
            let (_, def) = catalog.definition(&key)?;
            Some((key, Value::from_stored(def.kind, &text, unlimited)))
        })
        .collect())
}

fn audit(tx: &mut Tx<'_>, change: &Change, reason: &str) {
    let record = tx
        .record()
        .clone()
        .comment("group", change.group.clone())
        .comment("key", change.key.clone())
        .comment("old_value", change.old.to_string())
        .comment("new_value", change.new.to_string())
        .comment("reason", reason);
    tx.audit(record);
}

/// The group's value for `key` (or the default it inherits) and its source.
fn current(catalog: &Catalog, values: &HashMap<String, Value>, key: &str) -> (Value, Source) {
    match values.get(key) {
        Some(v) => (v.clone(), Source::Group),
        None => (
            catalog
                .definition(key)
                .map(|(_, d)| d.default.clone())
                .unwrap_or(Value::Unlimited),
            Source::Default,
        ),
    }
}

async fn finish(tx: &mut Tx<'_>, touched: &mut Touched, changed: bool) -> Result<i64, Error> {
    if !changed {
        return Ok(0);
    }
    touched.catalog = true;
    Ok(announce(tx.conn, touched).await?)
}

/// Sets several keys of a group.
pub async fn set(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    edit: &GroupEdit,
    touched: &mut Touched,
) -> Result<(Vec<Change>, i64), Error> {
    tx.only_extra();
    let before = stored(tx, catalog, &edit.group).await?;
    let mut changes = Vec::new();
    for (key, value) in &edit.settings {
        let (old, _) = current(catalog, &before, key);
        store::set(tx.conn, &edit.group, key, value).await?;
        let change = Change {
            user: None,
            group: edit.group.clone(),
            key: key.clone(),
            old,
            new: value.clone(),
            source: Source::Group,
            below_group_value: false,
        };
        if before.get(key) != Some(value) {
            audit(tx, &change, &edit.reason);
        }
        changes.push(change);
    }
    let seq = finish(tx, touched, !changes.is_empty()).await?;
    Ok((changes, seq))
}

/// The group goes back to the default for `key`.
pub async fn reset(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    group: &str,
    key: &str,
    reason: &str,
    touched: &mut Touched,
) -> Result<(Change, i64), Error> {
    tx.only_extra();
    let before = stored(tx, catalog, group).await?;
    let (old, _) = current(catalog, &before, key);
    let removed = store::delete(tx.conn, group, key).await?;
    let default = catalog
        .definition(key)
        .map(|(_, d)| d.default.clone())
        .unwrap_or(Value::Unlimited);
    let change = Change {
        user: None,
        group: group.to_owned(),
        key: key.to_owned(),
        old,
        new: default,
        source: Source::Default,
        below_group_value: false,
    };
    if removed {
        audit(tx, &change, reason);
    }
    let seq = finish(tx, touched, removed).await?;
    Ok((change, seq))
}

/// Copies every value `source` sets into `group`.
pub async fn copy(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    group: &str,
    source: &str,
    reason: &str,
    touched: &mut Touched,
) -> Result<(Vec<Change>, i64), Error> {
    if group == source {
        return Err(error::same_group());
    }
    tx.only_extra();
    let from = stored(tx, catalog, source).await?;
    let before = stored(tx, catalog, group).await?;
    let mut keys: Vec<&String> = from.keys().collect();
    keys.sort();
    let mut changes = Vec::new();
    for key in keys {
        let value = &from[key];
        if before.get(key) == Some(value) {
            continue;
        }
        let (old, _) = current(catalog, &before, key);
        store::set(tx.conn, group, key, value).await?;
        let change = Change {
            user: None,
            group: group.to_owned(),
            key: key.clone(),
            old,
            new: value.clone(),
            source: Source::Group,
            below_group_value: false,
        };
        let record = tx.record().clone().comment("source_group", source);
        tx.audit(
            record
                .comment("group", group)
                .comment("key", key.clone())
                .comment("old_value", change.old.to_string())
                .comment("new_value", change.new.to_string())
                .comment("reason", reason),
        );
        changes.push(change);
    }
    let seq = finish(tx, touched, !changes.is_empty()).await?;
    Ok((changes, seq))
}
