//! The action catalog: what the admin panel's filters list, and what
//! ingest accepts.

use steward_kit::{FieldViolations, outbox::AuditRecord};

use crate::{
    domain::validate,
    error::Error,
    state::State,
    store::catalog::{self, Product},
};

/// Most actions one registration may carry.
pub const MAX_ACTIONS: usize = 500;

/// A product declaring (or retitling) its actions.
#[derive(Debug, Clone)]
pub struct Registration {
    pub product: String,
    pub title: String,
    /// (action, title)
    pub actions: Vec<(String, String)>,
}

impl Registration {
    pub fn check(self) -> Result<Self, Error> {
        let mut v = FieldViolations::new();
        validate::action_name(&mut v, "product", &self.product);
        validate::required(&mut v, "title", &self.title, validate::MAX_NAME);
        if self.actions.is_empty() || self.actions.len() > MAX_ACTIONS {
            v.add("action_types", format!("1 to {MAX_ACTIONS} action types"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, (action, title)) in self.actions.iter().enumerate() {
            validate::action_name(&mut v, &format!("action_types[{i}].action"), action);
            if !seen.insert(action) {
                v.add(
                    format!("action_types[{i}].action"),
                    "listed twice in this request",
                );
            }
            validate::required(
                &mut v,
                &format!("action_types[{i}].title"),
                title,
                validate::MAX_NAME,
            );
        }
        v.check()?;
        Ok(self)
    }
}

pub async fn list(state: &State) -> Result<Vec<Product>, Error> {
    state
        .commands
        .read(async |conn| Ok(catalog::list(conn).await?))
        .await
}

/// Registers the actions; returns the product as it now stands.
pub async fn register(
    state: &State,
    record: AuditRecord,
    input: Registration,
) -> Result<Option<Product>, Error> {
    let record = record
        .comment("product", input.product.clone())
        .comment("actions", input.actions.len().to_string());
    let input = input.check();
    state
        .run_own(record, input, async |tx, r: Registration| {
            catalog::register(tx.conn, &r.product, &r.title, &r.actions).await?;
            Ok(catalog::list(tx.conn)
                .await?
                .into_iter()
                .find(|p| p.product == r.product))
        })
        .await
}
