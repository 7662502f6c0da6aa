//! Signatures with the chain key, a key that is not in the database: the
//! chain head after every append (a checkpoint), each retention tombstone,
//! each erasure. Whoever can write the database cannot forge them; anyone
//! with the public key can check them.
//!
//! A stored signature is the signer's 8-byte key id followed by the 64-byte
//! Ed25519 signature, so a verifier holding several keys (rotation) picks
//! the right one.

use std::collections::HashMap;

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

pub type KeyId = [u8; 8];

pub fn key_id(key: &VerifyingKey) -> KeyId {
    Sha256::digest(key.as_bytes())[..8]
        .try_into()
        .expect("8 bytes")
}

/// What a checkpoint (and the chain head's signature) says: at `at`, the
/// chain ended at `seq` with `hash`.
pub fn checkpoint_message(seq: i64, hash: &[u8], at_micros: i64) -> Vec<u8> {
    message(
        b"steward-audit-checkpoint-v1",
        &[&seq.to_be_bytes(), hash, &at_micros.to_be_bytes()],
    )
}

/// A tombstone: the event at `seq`, linked from `prev` and hashed `hash`,
/// was removed by retention.
pub fn tombstone_message(seq: i64, prev: &[u8], hash: &[u8]) -> Vec<u8> {
    message(
        b"steward-audit-tombstone-v1",
        &[&seq.to_be_bytes(), prev, hash],
    )
}

/// An erasure: the personal data of the event at `seq` with `hash` was
/// blanked by the service.
pub fn erasure_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    message(b"steward-audit-erasure-v1", &[&seq.to_be_bytes(), hash])
}

fn message(domain: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(domain);
    out.push(0);
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The private chain key.
#[derive(Clone)]
pub struct ChainSigner {
    key: SigningKey,
    id: KeyId,
}

impl std::fmt::Debug for ChainSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainSigner(kid={})", hex::encode(self.id))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read chain key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} is not the base64 of 32 bytes")]
    Format { what: String },
}

fn decode32(text: &str, what: &str) -> Result<[u8; 32], KeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| KeyError::Format { what: what.into() })
}

impl ChainSigner {
    pub fn new(key: SigningKey) -> Self {
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    pub fn generate() -> Self {
        Self::new(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The file holds the base64 of the 32-byte Ed25519 seed (the format of
    /// the token signing key).
    pub fn from_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let seed = decode32(&text, &path.display().to_string())?;
        Ok(Self::new(SigningKey::from_bytes(&seed)))
    }

    pub fn to_file_contents(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.to_bytes()) + "\n"
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Key id || signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut out = self.id.to_vec();
        out.extend_from_slice(&self.key.sign(message).to_bytes());
        out
    }
}

/// The public keys signatures may be made with (current and rotated out).
#[derive(Debug, Clone, Default)]
pub struct ChainKeys(HashMap<KeyId, VerifyingKey>);

impl ChainKeys {
    pub fn add(&mut self, key: VerifyingKey) {
        self.0.insert(key_id(&key), key);
    }

    pub fn of(signer: &ChainSigner) -> Self {
        let mut keys = Self::default();
        keys.add(signer.verifying_key());
        keys
    }

    /// Adds a base64 32-byte Ed25519 public key.
    pub fn add_base64(&mut self, text: &str) -> Result<(), KeyError> {
        let bytes = decode32(text, "chain public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Format {
            what: "chain public key".into(),
        })?;
        self.add(key);
        Ok(())
    }

    /// Does `signature` (key id || signature) sign `message` with one of
    /// these keys?
    pub fn verify(&self, message: &[u8], signature: Option<&[u8]>) -> bool {
        let Some(signature) = signature else {
            return false;
        };
        if signature.len() != 72 {
            return false;
        }
        let (id, sig) = signature.split_at(8);
        let Some(key) = self.0.get(id) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        key.verify(message, &sig).is_ok()
    }
}

/// The base64 of a public key (what `audit.chain_public_keys` and
/// `steward audit verify --public-key` take).
pub fn public_key_base64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_their_message_and_key() {
        let signer = ChainSigner::generate();
        let keys = ChainKeys::of(&signer);
        let m = checkpoint_message(5, &[1; 32], 99);
        let sig = signer.sign(&m);
        assert!(keys.verify(&m, Some(&sig)));
        assert!(!keys.verify(&checkpoint_message(4, &[1; 32], 99), Some(&sig)));
        assert!(!keys.verify(&tombstone_message(5, &[1; 32], &[0; 32]), Some(&sig)));
        assert!(!keys.verify(&m, None));
        let other = ChainKeys::of(&ChainSigner::generate());
        assert!(!other.verify(&m, Some(&sig)));
        let mut keys2 = ChainKeys::default();
        keys2
            .add_base64(&public_key_base64(&signer.verifying_key()))
            .unwrap();
        assert!(keys2.verify(&m, Some(&sig)));
    }
}
