//! User quota use cases. Writes run in kit's command runner and audit each
//! changed (user, key) in that user's log; reads resolve through the
//! [`Resolver`](super::resolver::Resolver)'s cache.

use std::collections::HashMap;

use steward_kit::Tx;
use uuid::Uuid;

use super::store;
use crate::{
    cache::{Catalog, Touched, UserEntry, announce},
    domain::{self, Change, Effective, Source, Value, allows, effective, is_below},
    error::{self, Error},
    groups::store as groups,
    membership::store as memberships,
};

/// A validated bulk edit: these users get these overrides.
#[derive(Debug, Clone)]
pub struct UserEdit {
    pub users: Vec<Uuid>,
    /// (key, value); keys exist in the catalog.
    pub settings: Vec<(String, Value)>,
    pub reason: String,
}

/// A validated reset: these users lose their overrides of these keys.
#[derive(Debug, Clone)]
pub struct UserReset {
    pub users: Vec<Uuid>,
    pub keys: Vec<String>,
    pub reason: String,
}

/// Each group's stored values, decoded (read in the command's transaction).
async fn group_values(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    names: Vec<String>,
) -> Result<HashMap<String, HashMap<String, Value>>, Error> {
    let mut out = HashMap::new();
    for name in names {
        if out.contains_key(&name) {
            continue;
        }
        let values = groups::of_group(tx.conn, &name)
            .await?
            .into_iter()
            .filter_map(|(key, text, unlimited)| {
                let (_, def) = catalog.definition(&key)?;
                Some((key, Value::from_stored(def.kind, &text, unlimited)))
            })
            .collect();
        out.insert(name, values);
    }
    Ok(out)
}

fn audit(tx: &mut Tx<'_>, change: &Change, old_source: Source, reason: &str) {
    let user = change.user.map(|u| u.to_string()).unwrap_or_default();
    let record = tx
        .record()
        .clone()
        .subject(&user)
        .comment("group", change.group.clone())
        .comment("key", change.key.clone())
        .comment("old_value", change.old.to_string())
        .comment("old_source", old_source.as_str())
        .comment("new_value", change.new.to_string())
        .comment("new_source", change.source.as_str())
        .comment("below_group_value", change.below_group_value.to_string())
        .comment("reason", reason);
    tx.audit(record);
}

/// The users' memberships and overrides, locked (membership rows in id
/// order). Every user must be known (see `Resolver::ensure_known`).
async fn lock_users(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    users: &[Uuid],
) -> Result<Vec<(Uuid, String, Vec<(String, Value)>)>, Error> {
    let members = memberships::lock_many(tx.conn, users).await?;
    let mut rows = store::of_users(tx.conn, users).await?;
    users
        .iter()
        .map(|id| {
            let m = members.get(id).ok_or_else(|| error::user_not_found(*id))?;
            let overrides = catalog.overrides(rows.remove(id).unwrap_or_default());
            Ok((*id, m.group.clone(), overrides))
        })
        .collect()
}

fn resolve(
    catalog: &Catalog,
    groups: &HashMap<String, HashMap<String, Value>>,
    group: &str,
    key: &str,
    over: Option<&Value>,
) -> Effective {
    let default = catalog
        .definition(key)
        .map(|(_, d)| d.default.clone())
        .unwrap_or(Value::Unlimited);
    effective(&default, groups.get(group).and_then(|g| g.get(key)), over)
}

/// Overrides keys for many users (the bulk edit).
pub async fn set(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    edit: &UserEdit,
    touched: &mut Touched,
) -> Result<(Vec<Change>, i64), Error> {
    tx.only_extra();
    let users = lock_users(tx, catalog, &edit.users).await?;
    let groups = group_values(tx, catalog, users.iter().map(|u| u.1.clone()).collect()).await?;
    let mut changes = Vec::new();
    for (user, group, overrides) in &users {
        for (key, value) in &edit.settings {
            let over = overrides.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            let before = resolve(catalog, &groups, group, key, over);
            store::set(tx.conn, *user, key, value).await?;
            let change = Change {
                user: Some(*user),
                group: group.clone(),
                key: key.clone(),
                old: before.value.clone(),
                new: value.clone(),
                source: Source::Override,
                below_group_value: is_below(value, &before.group_value),
            };
            if over != Some(value) {
                audit(tx, &change, before.source, &edit.reason);
            }
            changes.push(change);
        }
        touched.users.insert(*user);
    }
    let seq = announce(tx.conn, touched).await?;
    Ok((changes, seq))
}

/// "Reset to Group Value": removes the overrides that exist.
pub async fn reset(
    tx: &mut Tx<'_>,
    catalog: &Catalog,
    input: &UserReset,
    touched: &mut Touched,
) -> Result<(Vec<Change>, i64), Error> {
    tx.only_extra();
    let users = lock_users(tx, catalog, &input.users).await?;
    let groups = group_values(tx, catalog, users.iter().map(|u| u.1.clone()).collect()).await?;
    let mut changes = Vec::new();
    for (user, group, overrides) in &users {
        for key in &input.keys {
            let Some((_, old)) = overrides.iter().find(|(k, _)| k == key) else {
                continue;
            };
            store::delete(tx.conn, *user, key).await?;
            let after = resolve(catalog, &groups, group, key, None);
            let change = Change {
                user: Some(*user),
                group: group.clone(),
                key: key.clone(),
                old: old.clone(),
                new: after.value,
                source: after.source,
                below_group_value: false,
            };
            audit(tx, &change, Source::Override, &input.reason);
            changes.push(change);
            touched.users.insert(*user);
        }
    }
    let seq = if touched.is_empty() {
        0
    } else {
        announce(tx.conn, touched).await?
    };
    Ok((changes, seq))
}

/// Each key whose effective value would change if the user moved to
/// `target` (an override never changes).
pub fn preview(catalog: &Catalog, user: Uuid, entry: &UserEntry, target: &str) -> Vec<Change> {
    (0..catalog.definitions.len())
        .filter_map(|i| {
            let now = catalog.effective(i, &entry.group, &entry.overrides);
            let then = catalog.effective(i, target, &entry.overrides);
            domain::group_change(&catalog.definitions[i].key, user, target, &now, &then)
        })
        .collect()
}

/// One checked key.
#[derive(Debug, Clone)]
pub struct Check {
    pub key: String,
    pub effective: Effective,
    pub allowed: bool,
}

/// The platform's check: (key, amount) pairs against the effective values.
/// Unknown keys and bad amounts are field violations (`requests[i]`).
pub fn check(
    catalog: &Catalog,
    entry: &UserEntry,
    requests: &[(String, String)],
) -> Result<Vec<Check>, Error> {
    let mut v = steward_kit::FieldViolations::new();
    let mut out = Vec::with_capacity(requests.len());
    for (i, (key, amount)) in requests.iter().enumerate() {
        let Some((idx, def)) = catalog.definition(key) else {
            v.add(format!("requests[{i}].key"), "unknown quota key");
            continue;
        };
        let effective = catalog.effective(idx, &entry.group, &entry.overrides);
        match allows(def.kind, &effective.value, amount) {
            Ok(allowed) => out.push(Check {
                key: key.clone(),
                effective,
                allowed,
            }),
            Err(message) => v.add(format!("requests[{i}].amount"), message),
        }
    }
    v.check()?;
    Ok(out)
}
