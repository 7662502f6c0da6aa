//! Layered configuration: typed defaults, then an optional TOML file, then
//! `STEWARD_*` environment variables with `__` between sections
//! (`STEWARD_ACCOUNTS__LISTEN=0.0.0.0:50051`). A bad value fails start-up
//! with a message naming the key.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Loads `T` from its defaults, `file` (if given) and the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Env::prefixed("STEWARD_").split("__"));
    figment.extract().map_err(describe)
}

/// Figment reports the key path; flatten every error into one line naming
/// the key (as the environment variable too, which is how operators set it).
fn describe(err: figment::Error) -> ConfigError {
    let parts: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                e.kind.to_string()
            } else {
                let env = format!("STEWARD_{}", e.path.join("__").to_uppercase());
                format!("key `{key}` ({env}): {}", e.kind)
            }
        })
        .collect();
    ConfigError(parts.join("; "))
}

#[cfg(test)]
// figment's Jail fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Section {
        port: u16,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Root {
        name: String,
        section: Section,
    }

    #[test]
    fn env_overrides_defaults_and_bad_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STEWARD_SECTION__PORT", "7");
            let root: Root = load(None).map_err(|e| e.to_string())?;
            assert_eq!(root.section.port, 7);

            jail.set_env("STEWARD_SECTION__PORT", "not-a-port");
            let err = load::<Root>(None).unwrap_err().to_string();
            assert!(err.contains("section.port"), "{err}");
            assert!(err.contains("STEWARD_SECTION__PORT"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn file_is_layered_under_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("s.toml", "name = \"from-file\"\n[section]\nport = 9\n")?;
            jail.set_env("STEWARD_NAME", "from-env");
            let root: Root = load(Some(Path::new("s.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(root.name, "from-env");
            assert_eq!(root.section.port, 9);
            Ok(())
        });
    }
}
