//! The read side: the catalog and users, from the cache when it may be
//! used, else from the database; a user quotas has not heard of is asked
//! from accounts once and remembered.

use std::{collections::HashMap, sync::Arc};

use steward_kit::db::Pool;
use uuid::Uuid;

use crate::{
    cache::{Cache, Catalog, UserEntry, load_catalog},
    error::{self, Error},
    membership::{accounts::Accounts, store as memberships},
    users::store as overrides,
};

#[derive(Clone)]
pub struct Resolver {
    pub cache: Arc<Cache>,
    pub accounts: Arc<Accounts>,
    pool: Pool,
}

impl Resolver {
    pub fn new(pool: Pool, cache: Arc<Cache>, accounts: Arc<Accounts>) -> Self {
        Self {
            cache,
            accounts,
            pool,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn catalog(&self) -> Result<Arc<Catalog>, Error> {
        if self.cache.usable() {
            return Ok(self.cache.catalog());
        }
        let mut conn = self.pool.get().await?;
        Ok(Arc::new(load_catalog(&mut conn).await?))
    }

    /// One user's group and overrides.
    pub async fn user(&self, catalog: &Catalog, id: Uuid) -> Result<Arc<UserEntry>, Error> {
        if let Some(entry) = self.cache.user(&id) {
            return Ok(entry);
        }
        let epoch = self.cache.epoch();
        let mut conn = self.pool.get().await?;
        let membership = match memberships::get(&mut conn, id).await? {
            Some(membership) => membership,
            None => {
                drop(conn);
                self.ensure_known(&[id]).await?;
                conn = self.pool.get().await?;
                memberships::get(&mut conn, id)
                    .await?
                    .ok_or_else(|| error::user_not_found(id))?
            }
        };
        let rows = overrides::of_user(&mut conn, id).await?;
        let entry = Arc::new(UserEntry {
            group: membership.group,
            erased: membership.erased,
            overrides: catalog.overrides(rows),
        });
        self.cache.store_user(id, entry.clone(), epoch);
        Ok(entry)
    }

    /// Many users (in the order asked): cache hits, then one query for the
    /// rest.
    pub async fn users(
        &self,
        catalog: &Catalog,
        ids: &[Uuid],
    ) -> Result<Vec<Arc<UserEntry>>, Error> {
        let mut found: HashMap<Uuid, Arc<UserEntry>> = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.cache.user(id) {
                Some(entry) => {
                    found.insert(*id, entry);
                }
                None => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            let epoch = self.cache.epoch();
            self.ensure_known(&missing).await?;
            let mut conn = self.pool.get().await?;
            let members = memberships::get_many(&mut conn, &missing).await?;
            let mut rows = overrides::of_users(&mut conn, &missing).await?;
            for id in missing {
                let m = members.get(&id).ok_or_else(|| error::user_not_found(id))?;
                let entry = Arc::new(UserEntry {
                    group: m.group.clone(),
                    erased: m.erased,
                    overrides: catalog.overrides(rows.remove(&id).unwrap_or_default()),
                });
                self.cache.store_user(id, entry.clone(), epoch);
                found.insert(id, entry);
            }
        }
        Ok(ids.iter().map(|id| found[id].clone()).collect())
    }

    /// Every user of `ids` has a membership row: those quotas has not heard
    /// of are asked from accounts (NOT_FOUND if accounts does not know one).
    pub async fn ensure_known(&self, ids: &[Uuid]) -> Result<(), Error> {
        let known = {
            let mut conn = self.pool.get().await?;
            memberships::get_many(&mut conn, ids).await?
        };
        let missing: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| !known.contains_key(id))
            .collect();
        for id in missing {
            let group = self
                .accounts
                .group_of(id)
                .await?
                .ok_or_else(|| error::user_not_found(id))?;
            let mut conn = self.pool.get().await?;
            memberships::insert_if_absent(&mut conn, id, &group).await?;
        }
        Ok(())
    }
}
