//! The one-row `settings` table.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::{ErasureMode, Settings};
use crate::schema::settings::dsl as s;

/// The settings and the platform salt (never leaves the service).
pub async fn get(conn: &mut AsyncPgConnection) -> QueryResult<(Settings, String)> {
    let (mode, enabled, delay, salt): (String, bool, i32, String) = s::settings
        .select((
            s::erasure_mode,
            s::auto_erase_enabled,
            s::auto_erase_delay_days,
            s::platform_salt,
        ))
        .first(conn)
        .await?;
    Ok((
        Settings {
            erasure_mode: ErasureMode::parse(&mode).unwrap_or_default(),
            auto_erase_enabled: enabled,
            auto_erase_delay_days: delay,
        },
        salt,
    ))
}

pub async fn lock(conn: &mut AsyncPgConnection) -> QueryResult<Settings> {
    s::settings
        .select(s::id)
        .for_update()
        .first::<bool>(conn)
        .await?;
    get(conn).await.map(|(settings, _)| settings)
}

pub async fn put(conn: &mut AsyncPgConnection, settings: &Settings) -> QueryResult<()> {
    diesel::update(s::settings)
        .set((
            s::erasure_mode.eq(settings.erasure_mode.as_str()),
            s::auto_erase_enabled.eq(settings.auto_erase_enabled),
            s::auto_erase_delay_days.eq(settings.auto_erase_delay_days),
            s::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
