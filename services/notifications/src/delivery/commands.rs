//! Recording an attempt's end: the status change, the suppression of a
//! hard-bounced address and the audit record commit together.

use steward_kit::Tx;

use super::store::{self, Claimed, Finish};
use crate::{
    domain::{Status, address, retry::Decision},
    error::Error,
    suppressions,
};

/// Writes `decision` for `mail`. Sends and final failures are audited (the
/// runner's record, as `notifications.mail.sent` / `.failed`); a deferral
/// is not. A mail that moved meanwhile (an admin, a recovered lease) is left
/// as it is.
pub async fn record(
    tx: &mut Tx<'_>,
    mail: &Claimed,
    decision: &Decision,
    transport: &str,
) -> Result<(), Error> {
    let moved = match decision {
        Decision::Sent { reply } => {
            tx.note(|r| r.comment("reply", reply.clone()));
            let f = Finish {
                to: Status::Sent,
                detail: reply,
                last_error: "",
                next_attempt_at: None,
                transport,
            };
            store::finish(tx.conn, mail.id, &f).await?
        }
        Decision::Retry { after, error } => {
            tx.only_extra();
            let at = chrono::Utc::now()
                + chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::hours(1));
            let detail = format!("{error}; next attempt at {}", at.to_rfc3339());
            let f = Finish {
                to: Status::Deferred,
                detail: &detail,
                last_error: error,
                next_attempt_at: Some(at),
                transport,
            };
            store::finish(tx.conn, mail.id, &f).await?
        }
        Decision::Fail { error, suppress } => {
            let f = Finish {
                to: Status::Failed,
                detail: error,
                last_error: error,
                next_attempt_at: None,
                transport,
            };
            let moved = store::finish(tx.conn, mail.id, &f).await?;
            if moved && *suppress {
                let normalized = address::normalize(&mail.recipient);
                suppressions::store::add(tx.conn, &normalized, error, mail.id).await?;
            }
            tx.note(|r| {
                r.action("notifications.mail.failed")
                    .comment("reason", error.clone())
                    .comment("suppressed", suppress.to_string())
                    .failed("the mail could not be delivered")
            });
            moved
        }
    };
    if !moved {
        tx.only_extra();
    }
    Ok(())
}

/// The address was suppressed after the mail was queued: SUPPRESSED, not
/// sent.
pub async fn suppress(tx: &mut Tx<'_>, mail: &Claimed) -> Result<(), Error> {
    let f = Finish {
        to: Status::Suppressed,
        detail: "the address is suppressed",
        last_error: "",
        next_attempt_at: None,
        transport: "",
    };
    if store::finish(tx.conn, mail.id, &f).await? {
        tx.note(|r| {
            r.action("notifications.mail.suppressed")
                .failed("the address is suppressed after a hard bounce")
        });
    } else {
        tx.only_extra();
    }
    Ok(())
}
