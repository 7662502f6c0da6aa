//! Retention: how long events of a product and category are kept, and the
//! housekeeping job that applies it.

pub mod job;

use steward_kit::{FieldViolations, outbox::AuditRecord};

use crate::{
    domain::validate,
    error::Error,
    state::State,
    store::retention::{self, Policy},
};

/// The longest retention a policy may set (a century).
pub const MAX_DAYS: i32 = 36_500;

pub async fn list(state: &State) -> Result<Vec<Policy>, Error> {
    state
        .commands
        .read(async |conn| Ok(retention::list(conn).await?))
        .await
}

/// Sets a policy; `category` is `None` when the request's was unknown.
pub async fn set(
    state: &State,
    record: AuditRecord,
    product: String,
    category: Option<i16>,
    days: i32,
) -> Result<Policy, Error> {
    let mut v = FieldViolations::new();
    if !product.is_empty() {
        validate::action_name(&mut v, "policy.product", &product);
    }
    if category.is_none() {
        v.add("policy.category", "unknown category");
    }
    if !(1..=MAX_DAYS).contains(&days) {
        v.add("policy.retention_days", format!("between 1 and {MAX_DAYS}"));
    }
    let new = Policy {
        product,
        category: category.unwrap_or(0),
        days,
    };
    let record = record
        .comment("product", new.product.clone())
        .comment("category", new.category.to_string())
        .comment("retention_days", new.days.to_string());
    let input = v.check().map(|_| new).map_err(Error::from);
    state
        .run_own(record, input, async |tx, new: Policy| {
            retention::set(tx.conn, &new).await?;
            Ok(new)
        })
        .await
}
