//! Personal-data erasure: email and phone become salted MD5 digests.

use md5::{Digest, Md5};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErasureMode {
    /// A fresh random salt per erasure: nothing links the digest to the
    /// person, who may register again.
    #[default]
    Anonymization,
    /// The platform salt: the same email always gives the same digest, so a
    /// registration with it is recognised and refused.
    Pseudoanonymization,
}

impl ErasureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymization => "ANONYMIZATION",
            Self::Pseudoanonymization => "PSEUDOANONYMIZATION",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ANONYMIZATION" => Some(Self::Anonymization),
            "PSEUDOANONYMIZATION" => Some(Self::Pseudoanonymization),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub erasure_mode: ErasureMode,
    pub auto_erase_enabled: bool,
    pub auto_erase_delay_days: i32,
}

/// Hex MD5 of `salt || value`.
pub fn digest(salt: &str, value: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(salt.as_bytes());
    md5.update(value.as_bytes());
    hex::encode(md5.finalize())
}

/// The salt for one erasure under `mode`.
pub fn salt_for(mode: ErasureMode, platform_salt: &str) -> String {
    match mode {
        ErasureMode::Anonymization => hex::encode(rand::random::<[u8; 16]>()),
        ErasureMode::Pseudoanonymization => platform_salt.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_is_stable_anonymization_is_not() {
        let a = digest(&salt_for(ErasureMode::Pseudoanonymization, "p"), "ann@x.io");
        let b = digest(&salt_for(ErasureMode::Pseudoanonymization, "p"), "ann@x.io");
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        let c = digest(&salt_for(ErasureMode::Anonymization, "p"), "ann@x.io");
        let d = digest(&salt_for(ErasureMode::Anonymization, "p"), "ann@x.io");
        assert_ne!(c, d);
        assert_ne!(a, c);
    }
}
