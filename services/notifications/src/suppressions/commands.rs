//! Suppression use cases.

use diesel_async::AsyncPgConnection;
use steward_kit::Tx;

use super::store::{self, Suppression};
use crate::{
    domain::address,
    error::{self, Error},
};

pub async fn list(
    conn: &mut AsyncPgConnection,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Suppression>, Error> {
    let prefix = prefix.map(address::normalize);
    Ok(store::list(conn, prefix.as_deref(), after, limit).await?)
}

/// Lifts the suppression of `raw` (any spelling).
pub async fn delete(tx: &mut Tx<'_>, raw: &str) -> Result<(), Error> {
    let address = address::normalize(raw);
    tx.note(|r| r.comment("email", address.clone()));
    if !store::delete(tx.conn, &address).await? {
        return Err(error::suppression_not_found(&address));
    }
    Ok(())
}
