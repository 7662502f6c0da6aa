//! Tamper evidence: verifying the hash chain, signed checkpoints of its
//! head exported outside the database, verification against one.

pub mod checkpoint;
pub mod verify;

use crate::{error::Error, state::State};

pub use verify::Outcome;

/// Verifies `[from, to]` (0 = chain start / head) in one repeatable-read
/// snapshot: appends committing meanwhile must not look like rows outside
/// the chain.
pub async fn verify(state: &State, from: i64, to: i64) -> Result<Outcome, Error> {
    if from < 0 || to < 0 {
        return Err(Error::invalid("from_sequence", "must not be negative"));
    }
    let mut conn = state.pool().get().await?;
    Ok(conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run::<_, diesel::result::Error, _>(async |conn| {
            verify::verify(conn, &state.keys, from, to).await
        })
        .await?)
}
