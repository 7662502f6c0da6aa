//! Registering definitions.

use steward_kit::Tx;

use super::store;
use crate::{
    cache::{Touched, announce},
    domain::Definition,
    error::{self, Error},
};

/// Adds new keys and updates known ones of the same product; returns the
/// definitions as stored, how many were new, and the cache number taken.
pub async fn register(
    tx: &mut Tx<'_>,
    input: &[Definition],
    touched: &mut Touched,
) -> Result<(Vec<Definition>, usize, i64), Error> {
    let keys: Vec<String> = input.iter().map(|d| d.key.clone()).collect();
    let existing = store::lock(tx.conn, &keys).await?;
    let mut created = 0;
    let mut out = Vec::with_capacity(input.len());
    for def in input {
        match existing.iter().find(|e| e.key == def.key) {
            Some(old) if old.kind != def.kind => {
                return Err(error::type_fixed(&def.key, old.kind.as_str()));
            }
            Some(old) if old.product != def.product => {
                return Err(error::other_product(&def.key, &old.product));
            }
            Some(old) if old.allowed.iter().any(|a| !def.allowed.contains(a)) => {
                return Err(error::enum_values_removed(&def.key));
            }
            Some(_) => {}
            None => created += 1,
        }
        out.push(store::upsert(tx.conn, def).await?);
    }
    tx.note(|r| {
        r.comment("keys", keys.join(","))
            .comment("created", created.to_string())
    });
    touched.catalog = true;
    let seq = announce(tx.conn, touched).await?;
    Ok((out, created, seq))
}
