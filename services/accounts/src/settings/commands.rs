//! Settings use cases.

use steward_kit::Tx;

use super::store as settings;
use crate::{
    domain::{ErasureMode, Settings},
    error::Error,
};

/// The fields to change (`None` keeps one as it is).
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    pub erasure_mode: Option<ErasureMode>,
    pub auto_erase_enabled: Option<bool>,
    pub auto_erase_delay_days: Option<i32>,
}

/// Applies `patch`; the audit record shows each field before and after.
pub async fn update_settings(tx: &mut Tx<'_>, patch: SettingsPatch) -> Result<Settings, Error> {
    let before = settings::lock(tx.conn).await?;
    let next = Settings {
        erasure_mode: patch.erasure_mode.unwrap_or(before.erasure_mode),
        auto_erase_enabled: patch
            .auto_erase_enabled
            .unwrap_or(before.auto_erase_enabled),
        auto_erase_delay_days: patch
            .auto_erase_delay_days
            .unwrap_or(before.auto_erase_delay_days),
    };
    settings::put(tx.conn, &next).await?;
    let change = |from: String, to: String| format!("{from} -> {to}");
    tx.note(|r| {
        r.comment(
            "erasure_mode",
            change(
                before.erasure_mode.as_str().into(),
                next.erasure_mode.as_str().into(),
            ),
        )
        .comment(
            "auto_erase_enabled",
            change(
                before.auto_erase_enabled.to_string(),
                next.auto_erase_enabled.to_string(),
            ),
        )
        .comment(
            "auto_erase_delay_days",
            change(
                before.auto_erase_delay_days.to_string(),
                next.auto_erase_delay_days.to_string(),
            ),
        )
    });
    Ok(next)
}
