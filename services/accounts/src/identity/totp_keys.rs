//! TOTP secrets at rest: envelope encryption under a key-encryption key
//! (KEK) kept outside the database (`accounts.identity.totp_key_file`).
//!
//! Each stored secret gets its own random 256-bit data key: the secret is
//! sealed with the data key, the data key with the KEK, both with
//! XChaCha20-Poly1305 (random 192-bit nonces) and bound to the user and the
//! column (associated data), so a ciphertext copied to another row does
//! not open. The stored text is
//! `v1.<kek id>.<nonce>.<wrapped data key>.<nonce>.<sealed secret>`
//! (base64url); the KEK id is a digest of the key, so the key that opens a
//! value is found without trying each.
//!
//! Rotation: put the new key in `totp_key_file` and the old one in
//! `totp_retired_key_files`; values under a retired key still open, are
//! sealed again under the current key when next used (a sign-in), and all
//! of them at start-up ([`TotpKeys`] users: `reseal_all`). Once a start-up
//! has logged that nothing is left under the old key, drop it.
//!
//! Secrets stored in plain text before this existed (base32, never
//! containing `.`) still open, and are sealed by the same start-up pass:
//! SQL migrations cannot do it, since the key is not in the database.

use std::{collections::HashMap, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const VERSION: &str = "v1";

/// Which column a value belongs to (part of the associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Secret,
    Pending,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Secret => "totp_secret",
            Column::Pending => "totp_pending_secret",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read TOTP key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("TOTP key file {0} is not base64 of 32 bytes")]
    Format(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the TOTP secret is sealed under key {0}, which is not configured")]
    UnknownKey(String),
    #[error("the stored TOTP secret is malformed or was tampered with")]
    Corrupt,
}

/// A secret read back, and whether it should be sealed again (plain text,
/// or under a retired key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub secret: String,
    pub stale: bool,
}

#[derive(Clone)]
struct Kek {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Kek {
    fn new(bytes: [u8; 32]) -> Self {
        Self {
            id: hex::encode(&Sha256::digest(bytes)[..8]),
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        }
    }
}

/// The current KEK and the retired ones still opening old values.
#[derive(Clone)]
pub struct TotpKeys {
    current: Kek,
    retired: HashMap<String, Kek>,
}

impl std::fmt::Debug for TotpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TotpKeys(current={}, retired={})",
            self.current.id,
            self.retired.len()
        )
    }
}

fn nonce() -> [u8; 24] {
    let mut n = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn aad(user_id: Uuid, column: Column, kek_id: &str) -> Vec<u8> {
    format!(
        "steward totp {VERSION}|{user_id}|{}|{kek_id}",
        column.name()
    )
    .into_bytes()
}

/// The key file: base64 of 32 random bytes, like the signing key.
pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| KeyError::Format(path.display().to_string()))
}

/// Contents for a new key file.
pub fn new_key_file_contents() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key) + "\n"
}

impl TotpKeys {
    pub fn new(current: [u8; 32], retired: impl IntoIterator<Item = [u8; 32]>) -> Self {
        let current = Kek::new(current);
        let retired = retired
            .into_iter()
            .map(Kek::new)
            .filter(|k| k.id != current.id)
            .map(|k| (k.id.clone(), k))
            .collect();
        Self { current, retired }
    }

    pub fn from_files(current: &Path, retired: &[std::path::PathBuf]) -> Result<Self, KeyError> {
        let old = retired
            .iter()
            .map(|p| read_key_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(read_key_file(current)?, old))
    }

    /// The id of the key new values are sealed under.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `secret` for `user_id`'s `column` under the current key.
    pub fn seal(&self, user_id: Uuid, column: Column, secret: &str) -> String {
        let mut data_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut data_key);
        let ad = aad(user_id, column, &self.current.id);
        let (wrap_nonce, seal_nonce) = (nonce(), nonce());
        let wrapped = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&wrap_nonce),
                Payload {
                    msg: &data_key,
                    aad: &ad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let sealed = XChaCha20Poly1305::new(&data_key.into())
            .encrypt(
                XNonce::from_slice(&seal_nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &ad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        format!(
            "{VERSION}.{}.{}.{}.{}.{}",
            self.current.id,
            b64(&wrap_nonce),
            b64(&wrapped),
            b64(&seal_nonce),
            b64(&sealed)
        )
    }

    /// Opens a stored value (sealed, or plain text from before sealing).
    pub fn open(&self, user_id: Uuid, column: Column, stored: &str) -> Result<Opened, OpenError> {
        if !stored.contains('.') {
            return Ok(Opened {
                secret: stored.to_owned(),
                stale: true,
            });
        }
        let parts: Vec<&str> = stored.split('.').collect();
        let [VERSION, kek_id, wrap_nonce, wrapped, seal_nonce, sealed] = parts[..] else {
            return Err(OpenError::Corrupt);
        };
        let kek = if kek_id == self.current.id {
            &self.current
        } else {
            self.retired
                .get(kek_id)
                .ok_or_else(|| OpenError::UnknownKey(kek_id.to_owned()))?
        };
        let bytes = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| OpenError::Corrupt);
        let nonce_of = |s: &str| -> Result<XNonce, OpenError> {
            let b = bytes(s)?;
            (b.len() == 24)
                .then(|| *XNonce::from_slice(&b))
                .ok_or(OpenError::Corrupt)
        };
        let ad = aad(user_id, column, kek_id);
        let data_key = kek
            .cipher
            .decrypt(
                &nonce_of(wrap_nonce)?,
                Payload {
                    msg: &bytes(wrapped)?,
                    aad: &ad,
                },
            )
            .map_err(|_| OpenError::Corrupt)?;
        let data_key = <[u8; 32]>::try_from(data_key.as_slice()).map_err(|_| OpenError::Corrupt)?;
        let secret = XChaCha20Poly1305::new(&data_key.into())
            .decrypt(
                &nonce_of(seal_nonce)?,
                Payload {
                    msg: &bytes(sealed)?,
                    aad: &ad,
                },
            )
            .map_err(|_| OpenError::Corrupt)?;
        Ok(Opened {
            secret: String::from_utf8(secret).map_err(|_| OpenError::Corrupt)?,
            stale: kek_id != self.current.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    #[test]
    fn seals_opens_and_binds_to_the_row() {
        let keys = TotpKeys::new([1; 32], []);
        let user = Uuid::now_v7();
        let stored = keys.seal(user, Column::Secret, SECRET);
        assert!(!stored.contains(SECRET));
        assert_ne!(
            stored,
            keys.seal(user, Column::Secret, SECRET),
            "fresh nonces"
        );
        let opened = keys.open(user, Column::Secret, &stored).unwrap();
        assert_eq!(opened.secret, SECRET);
        assert!(!opened.stale);
        assert_eq!(
            keys.open(Uuid::now_v7(), Column::Secret, &stored),
            Err(OpenError::Corrupt),
            "another user's row"
        );
        assert_eq!(
            keys.open(user, Column::Pending, &stored),
            Err(OpenError::Corrupt),
            "another column"
        );
    }

    #[test]
    fn rotation_and_plain_text() {
        let old = TotpKeys::new([1; 32], []);
        let user = Uuid::now_v7();
        let stored = old.seal(user, Column::Secret, SECRET);
        let rotated = TotpKeys::new([2; 32], [[1; 32]]);
        let opened = rotated.open(user, Column::Secret, &stored).unwrap();
        assert_eq!(opened.secret, SECRET);
        assert!(opened.stale, "under a retired key");
        let without_old = TotpKeys::new([2; 32], []);
        assert!(matches!(
            without_old.open(user, Column::Secret, &stored),
            Err(OpenError::UnknownKey(_))
        ));
        let plain = rotated.open(user, Column::Secret, SECRET).unwrap();
        assert!(plain.stale && plain.secret == SECRET);
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            rotated.open(user, Column::Secret, &tampered),
            Err(OpenError::Corrupt)
        );
    }
}
