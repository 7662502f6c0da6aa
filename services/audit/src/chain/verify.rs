//! Chain verification over a sequence range.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;

use crate::{
    domain::{
        event::Broken,
        seal::{ChainKeys, checkpoint_message, tombstone_message},
    },
    store::events,
};

const CHUNK: i64 = 5000;

#[derive(Debug, Default)]
pub struct Outcome {
    pub checked: i64,
    /// First broken sequence and why.
    pub broken: Option<(i64, String)>,
}

/// Recomputes every hash in `[from, to]` (0 = chain start / head) and
/// checks every link, across tombstones of events removed by retention. A
/// missing or altered event, an edited field, or edited personal data is
/// reported at the first sequence where it shows. Tombstones, erasures and
/// the head must carry a signature by one of `keys` (the chain key is not
/// in the database: whoever writes it cannot forge them).
pub async fn verify(
    conn: &mut AsyncPgConnection,
    keys: &ChainKeys,
    from: i64,
    to: i64,
) -> diesel::QueryResult<Outcome> {
    let (head_seq, head_hash, signed_at, head_signature) = crate::store::head::head(conn).await?;
    let from = from.max(1);
    let to = if to == 0 { head_seq } else { to.min(head_seq) };
    let mut outcome = Outcome::default();
    if from > to {
        return Ok(outcome);
    }
    type Link = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);
    let tombstones: HashMap<i64, Link> = events::tombstones(conn, from - 1, to)
        .await?
        .into_iter()
        .map(|(seq, prev, hash, signature)| (seq, (prev, hash, signature)))
        .collect();
    // The hash the next event must link to; None after an unexplained gap.
    let mut expected = events::predecessor_hash(conn, from).await?;
    let mut cursor = from;
    while cursor <= to {
        let rows = events::by_sequence(conn, cursor, to, CHUNK).await?;
        let chunk_end = match rows.last() {
            Some(last) if rows.len() == CHUNK as usize => last.seq,
            _ => to,
        };
        let mut rows = rows.iter().peekable();
        while cursor <= chunk_end {
            if let Some(row) = rows.next_if(|r| r.seq == cursor) {
                if rows.peek().is_some_and(|next| next.seq == row.seq) {
                    outcome.broken = Some((row.seq, "sequence number used twice".into()));
                    return Ok(outcome);
                }
                let Some(prev) = expected.as_deref() else {
                    outcome.broken = Some((row.seq, "predecessor missing".into()));
                    return Ok(outcome);
                };
                if let Err(why) = row.verify(prev, keys) {
                    let reason = match why {
                        Broken::Hash => "event content does not match its hash",
                        Broken::Link => "event does not link to its predecessor",
                        Broken::PersonalData => "personal data does not match its digest",
                        Broken::Erasure => "erasure not signed by the chain key",
                    };
                    outcome.broken = Some((row.seq, reason.into()));
                    return Ok(outcome);
                }
                outcome.checked += 1;
                expected = Some(row.hash.clone());
            } else {
                // Removed by retention: the tombstone carries the link on
                // (and must itself link to what came before). Removed
                // without one: fine only if no event links to it.
                expected = match tombstones.get(&cursor) {
                    Some((prev, hash, signature))
                        if !keys.verify(
                            &tombstone_message(cursor, prev, hash),
                            signature.as_deref(),
                        ) =>
                    {
                        outcome.broken =
                            Some((cursor, "tombstone not signed by the chain key".into()));
                        return Ok(outcome);
                    }
                    Some((prev, _, _)) if expected.as_ref().is_some_and(|e| e != prev) => {
                        outcome.broken =
                            Some((cursor, "tombstone does not link to its predecessor".into()));
                        return Ok(outcome);
                    }
                    Some((_, hash, _)) => Some(hash.clone()),
                    None => None,
                };
            }
            cursor += 1;
        }
    }
    if to == head_seq {
        // The newest event must be the one the head remembers, and nothing
        // may sit outside the chain.
        let signed = signed_at.is_some_and(|at| {
            keys.verify(
                &checkpoint_message(head_seq, &head_hash, at.timestamp_micros()),
                head_signature.as_deref(),
            )
        });
        if head_seq > 0 && expected.as_deref() != Some(head_hash.as_slice()) {
            outcome.broken = Some((head_seq, "chain head does not match the last event".into()));
        } else if head_seq > 0 && !signed {
            outcome.broken = Some((head_seq, "chain head not signed by the chain key".into()));
        } else if let Some(seq) = events::outside_chain(conn, head_seq).await? {
            outcome.broken = Some((seq, "event outside the chain".into()));
        }
    } else {
        // The range's last link must hold too: what follows it points here.
        let next = events::by_sequence(conn, to + 1, to + 1, 1).await?;
        let next_prev = match next.first() {
            Some(row) => Some(row.prev_hash.clone()),
            None => events::tombstones(conn, to + 1, to + 1)
                .await?
                .first()
                .map(|t| t.1.clone()),
        };
        if let Some(next_prev) = next_prev
            && expected.as_ref() != Some(&next_prev)
        {
            outcome.broken = Some((to + 1, "does not link to the end of the range".into()));
        }
    }
    Ok(outcome)
}
