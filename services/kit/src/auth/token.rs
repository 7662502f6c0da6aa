//! EdDSA JWTs (RFC 8037) signed with Ed25519, written by hand on top of
//! `ed25519-dalek`: the format is small and this keeps full control of which
//! algorithms are accepted (exactly one).

use std::{collections::HashMap, path::Path, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Roles carried in the `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    User,
    UserAdmin,
    PlatformService,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::UserAdmin => "USER_ADMIN",
            Role::PlatformService => "PLATFORM_SERVICE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "USER" => Some(Role::User),
            "USER_ADMIN" => Some(Role::UserAdmin),
            "PLATFORM_SERVICE" => Some(Role::PlatformService),
            _ => None,
        }
    }
}

/// The RFC 8693 `act` claim: who is really acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Role names; unknown names are ignored rather than refused so that new
    /// roles can be rolled out before every service knows them.
    #[serde(default)]
    pub roles: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Impersonator (an administrator signed in as `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Impersonation session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// API token id, for tokens minted from an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
}

impl Claims {
    pub fn new(subject: impl Into<String>, roles: &[Role], ttl: Duration) -> Self {
        let now = chrono::Utc::now().timestamp();
        Self {
            sub: subject.into(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: Some(uuid::Uuid::now_v7().to_string()),
            act: None,
            sid: None,
            tid: None,
        }
    }

    /// When the token was issued, in Unix milliseconds: read from the
    /// UUIDv7 `jti` when it agrees with `iat` (tokens minted here carry
    /// one), else the start of the `iat` second, the earliest it can have
    /// been (so a revocation in that second refuses it).
    pub fn issued_at_millis(&self) -> i64 {
        let from_jti = self
            .jti
            .as_deref()
            .and_then(|j| uuid::Uuid::parse_str(j).ok())
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                secs as i64 * 1000 + i64::from(nanos / 1_000_000)
            });
        match from_jti {
            Some(ms) if ms.div_euclid(1000) == self.iat => ms,
            _ => self.iat * 1000,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|r| Role::parse(r) == Some(role))
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    /// Valid, but revoked since it was issued (see `auth::revocations`).
    #[error("token revoked")]
    Revoked,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key {what} is not base64 of 32 bytes")]
    Format { what: String },
}

/// The key id: a short digest of the public key, so verifiers pick the key
/// without trying each.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn decode_key_bytes(text: &str, what: &str) -> Result<[u8; 32], KeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| KeyError::Format { what: what.into() })
}

/// Signs access tokens with one Ed25519 key.
#[derive(Clone)]
pub struct TokenSigner {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSigner(kid={})", self.kid)
    }
}

impl TokenSigner {
    pub fn new(key: SigningKey) -> Self {
        let kid = key_id(&key.verifying_key());
        Self { key, kid }
    }

    pub fn generate() -> Self {
        Self::new(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key file holds the base64 of the 32-byte Ed25519 seed.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let seed = decode_key_bytes(&text, &path.display().to_string())?;
        Ok(Self::new(SigningKey::from_bytes(&seed)))
    }

    pub fn to_file_contents(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.to_bytes()) + "\n"
    }

    /// A secret for deriving other keys (page tokens) shared by every
    /// replica holding this signing key.
    pub fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.key.to_bytes());
        digest.update(purpose.as_bytes());
        digest.finalize().into()
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: self.kid.clone(),
        };
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serializes")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize")),
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// The public keys tokens may be signed with (current and rotated-out).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    pub fn add(&mut self, key: VerifyingKey) {
        self.keys.insert(key_id(&key), key);
    }

    /// Adds a base64-encoded 32-byte public key.
    pub fn add_base64(&mut self, text: &str) -> Result<(), KeyError> {
        let bytes = decode_key_bytes(text, "public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Format {
            what: "public key".into(),
        })?;
        self.add(key);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `(kid, key)` pairs, sorted by kid so listings are stable.
    pub fn keys(&self) -> Vec<(String, VerifyingKey)> {
        let mut keys: Vec<_> = self.keys.iter().map(|(k, v)| (k.clone(), *v)).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys
    }

    /// Adds a JWK's `x` (base64url of the 32-byte Ed25519 public key).
    pub fn add_jwk_x(&mut self, x: &str) -> Result<(), KeyError> {
        let bad = || KeyError::Format {
            what: "JWK x".into(),
        };
        let bytes = URL_SAFE_NO_PAD.decode(x.trim()).map_err(|_| bad())?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())?;
        self.add(VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?);
        Ok(())
    }
}

/// The RFC 8037 `x` of a public key.
pub fn jwk_x(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Verifies tokens against a [`KeySet`] (and, when given one, a
/// revocation list).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: KeySet,
    /// Allowed clock skew.
    leeway_secs: i64,
    revocations: Option<super::revocations::Revocations>,
    verified: std::sync::Arc<Verified>,
}

/// Tokens whose signature already checked out, with their claims: the
/// Ed25519 check is most of a hot-path call's CPU when a platform service
/// sends the same token thousands of times a second. Keyed by the whole
/// token, so a hit is the very bytes that were verified; expiry and
/// revocation are still checked on every call.
#[derive(Debug, Default)]
struct Verified {
    tokens: std::sync::Mutex<HashMap<String, Claims>>,
}

/// Entries kept; the map is emptied when it reaches this many.
const VERIFIED_CAPACITY: usize = 4096;

impl Verified {
    fn get(&self, token: &str) -> Option<Claims> {
        self.tokens
            .lock()
            .expect("verified tokens lock")
            .get(token)
            .cloned()
    }

    fn put(&self, token: &str, claims: &Claims) {
        let mut tokens = self.tokens.lock().expect("verified tokens lock");
        if tokens.len() >= VERIFIED_CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.to_owned(), claims.clone());
    }
}

impl TokenVerifier {
    pub fn new(keys: KeySet) -> Self {
        Self {
            keys,
            leeway_secs: 30,
            revocations: None,
            verified: Default::default(),
        }
    }

    /// Also refuses tokens the list revokes ([`TokenError::Revoked`]).
    pub fn with_revocations(mut self, revocations: super::revocations::Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token)?;
                self.verified.put(token, &claims);
                claims
            }
        };
        let now = chrono::Utc::now().timestamp();
        if claims.exp + self.leeway_secs < now {
            return Err(TokenError::Expired);
        }
        if claims.iat - self.leeway_secs > now {
            return Err(TokenError::NotYetValid);
        }
        if let Some(revocations) = &self.revocations {
            revocations.check(&claims)?;
        }
        Ok(claims)
    }

    /// The claims of a token signed by one of the keys.
    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed);
        let parsed: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if parsed.alg != "EdDSA" {
            return Err(TokenError::Algorithm);
        }
        let key = self
            .keys
            .keys
            .get(&parsed.kid)
            .ok_or(TokenError::UnknownKey)?;
        let signature =
            Signature::from_slice(&decode(signature)?).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        key.verify(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier_for(signer: &TokenSigner) -> TokenVerifier {
        let mut keys = KeySet::default();
        keys.add(signer.verifying_key());
        TokenVerifier::new(keys)
    }

    #[test]
    fn signs_and_verifies_with_impersonation_claims() {
        let signer = TokenSigner::generate();
        let mut claims = Claims::new("u1", &[Role::User], Duration::from_secs(60));
        claims.act = Some(Actor {
            sub: "admin".into(),
        });
        claims.sid = Some("s1".into());
        let token = signer.sign(&claims);
        assert_eq!(verifier_for(&signer).verify(&token).unwrap(), claims);
    }

    #[test]
    fn refuses_expired_foreign_and_tampered_tokens() {
        let signer = TokenSigner::generate();
        let verifier = verifier_for(&signer);
        let mut claims = Claims::new("u1", &[Role::UserAdmin], Duration::from_secs(60));
        claims.exp -= 3600;
        assert_eq!(
            verifier.verify(&signer.sign(&claims)),
            Err(TokenError::Expired)
        );

        let other = TokenSigner::generate();
        let token = other.sign(&Claims::new("u1", &[], Duration::from_secs(60)));
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));

        // Swap the payload for one granting more roles: signature breaks.
        let good = signer.sign(&Claims::new("u1", &[Role::User], Duration::from_secs(60)));
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims::new(
                "u1",
                &[Role::UserAdmin],
                Duration::from_secs(60),
            ))
            .unwrap(),
        );
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verifier.verify(&forged), Err(TokenError::Signature));
        // Once the good token is remembered as verified, the forged one
        // with its signature still is not.
        assert!(verifier.verify(&good).is_ok());
        assert!(verifier.clone().verify(&good).is_ok());
        assert_eq!(verifier.verify(&forged), Err(TokenError::Signature));
        assert_eq!(verifier.verify("a.b"), Err(TokenError::Malformed));
    }

    #[test]
    fn key_file_round_trip() {
        let signer = TokenSigner::generate();
        let dir = std::env::temp_dir().join(format!("steward-key-{}", uuid::Uuid::now_v7()));
        std::fs::write(&dir, signer.to_file_contents()).unwrap();
        let loaded = TokenSigner::from_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(loaded.verifying_key(), signer.verifying_key());
    }
}
