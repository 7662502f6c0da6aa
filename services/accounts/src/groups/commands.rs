//! Group use cases.

use steward_kit::Tx;

use super::store as groups;
use crate::{
    domain::Group,
    error::{self, Error},
};

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: String,
    /// Shown in the console; the name when empty.
    pub display_name: String,
}

/// Creates a group; a concurrent creation of the same name is refused
/// through the constraint table.
pub async fn create_group(tx: &mut Tx<'_>, input: NewGroup) -> Result<Group, Error> {
    if groups::exists(tx.conn, &input.name).await? {
        return Err(error::group_exists(&input.name));
    }
    let display = match input.display_name.trim() {
        "" => input.name.as_str(),
        trimmed => trimmed,
    };
    let group = groups::insert(tx.conn, &input.name, display).await?;
    tx.note(|r| r.comment("group", group.name.clone()));
    Ok(group)
}
