//! Who is calling: bearer tokens verified against the keys accounts
//! publishes (JWKS, refreshed in the background), verified tokens cached
//! until they expire, API token secrets exchanged for access tokens, and
//! impersonation sessions checked so a stopped session stops working.
//!
//! Every call, cached or not, is also checked against the revocation list
//! accounts streams (kit's `auth::revocations`, followed by
//! [`Identity::follow_revocations`]), so a suspended user, a stopped
//! session or a deleted API token is refused within milliseconds of the
//! change, whatever the caches hold.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use steward_kit::{
    RequestContext,
    auth::{
        Claims, KeySet, Revocations, ServiceCredentials, TokenSigner, TokenVerifier,
        revocations::Feed, token::TokenError,
    },
    context::keys,
};
use steward_proto::accounts::{
    CheckImpersonationSessionRequest, ExchangeApiTokenRequest, GetJwksRequest,
    auth_service_client::AuthServiceClient,
};
use tokio::sync::watch;
use tonic::{Status, transport::Channel};

/// The prefix of API token secrets (accounts' `API_TOKEN_PREFIX`).
const API_TOKEN_PREFIX: &str = "stw_";
/// An unknown key id triggers a JWKS refresh at most this often.
const UNKNOWN_KEY_REFRESH: Duration = Duration::from_secs(10);

/// What the gateway learned from the bearer.
pub struct Authenticated {
    /// The access token to forward (the exchanged one for an API token).
    pub forward: Option<String>,
    /// `None` when no token was presented.
    pub verified: Option<Result<Claims, TokenError>>,
}

struct Cached<T> {
    value: T,
    until: Instant,
}

/// An access token exchanged for an API token, and its claims.
type Exchanged = (String, Claims);

/// A cache entry that has not expired.
fn fresh<K, Q, V>(map: &Mutex<HashMap<K, Cached<V>>>, key: &Q) -> Option<V>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
    V: Clone,
{
    map.lock()
        .expect("lock")
        .get(key)
        .filter(|hit| hit.until > Instant::now())
        .map(|hit| hit.value.clone())
}

pub struct Identity {
    /// Keys from configuration; the JWKS adds to them.
    configured: KeySet,
    verifier: RwLock<Arc<TokenVerifier>>,
    last_refresh: Mutex<Option<Instant>>,
    tokens: Mutex<HashMap<String, Cached<Claims>>>,
    /// digest of an API token secret -> exchanged access token.
    api_tokens: Mutex<HashMap<Vec<u8>, Cached<Exchanged>>>,
    /// session id -> active?
    sessions: Mutex<HashMap<String, Cached<bool>>>,
    accounts: AuthServiceClient<Channel>,
    accounts_channel: Channel,
    signer: Option<TokenSigner>,
    cache: CacheConfig,
    revocations: Revocations,
}

/// Bounds of the identity caches.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Entries per cache.
    pub size: usize,
    pub session_check_ttl: Duration,
    pub api_token_ttl: Duration,
}

fn remaining(claims: &Claims) -> Duration {
    let left = claims.exp - chrono::Utc::now().timestamp();
    Duration::from_secs(left.max(0) as u64)
}

/// Inserts into a bounded cache: when full, expired entries go first, and
/// if that is not enough, everything (a burst of one-off tokens must not
/// grow memory without bound).
fn insert_bounded<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, Cached<V>>,
    limit: usize,
    key: K,
    value: Cached<V>,
) {
    if map.len() >= limit {
        let now = Instant::now();
        map.retain(|_, v| v.until > now);
        if map.len() >= limit {
            map.clear();
        }
    }
    map.insert(key, value);
}

impl Identity {
    pub fn new(
        configured: KeySet,
        accounts: Channel,
        signer: Option<TokenSigner>,
        cache: CacheConfig,
    ) -> Self {
        Self {
            verifier: RwLock::new(Arc::new(TokenVerifier::new(configured.clone()))),
            configured,
            last_refresh: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            api_tokens: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            accounts: AuthServiceClient::new(accounts.clone()),
            accounts_channel: accounts,
            signer,
            revocations: Revocations::new(),
            cache: CacheConfig {
                size: cache.size.max(16),
                ..cache
            },
        }
    }

    /// Fetches the JWKS from accounts and verifies with it (plus the
    /// configured keys) from now on.
    pub async fn refresh_jwks(&self) -> Result<usize, Status> {
        *self.last_refresh.lock().expect("lock") = Some(Instant::now());
        let jwks = self
            .accounts
            .clone()
            .get_jwks(GetJwksRequest {})
            .await?
            .into_inner();
        let mut keys = self.configured.clone();
        for jwk in jwks
            .keys
            .iter()
            .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
        {
            if let Err(e) = keys.add_jwk_x(&jwk.x) {
                tracing::warn!(kid = jwk.kid, error = %e, "ignoring a malformed JWK");
            }
        }
        let count = keys.keys().len();
        *self.verifier.write().expect("lock") = Arc::new(TokenVerifier::new(keys));
        Ok(count)
    }

    /// Refreshes the JWKS every `interval` until `stopped`; retries sooner
    /// while accounts cannot be reached.
    pub async fn run_jwks_refresher(
        self: Arc<Self>,
        interval: Duration,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            let wait = match self.refresh_jwks().await {
                Ok(count) => {
                    tracing::debug!(keys = count, "jwks refreshed");
                    interval
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "cannot fetch the jwks from accounts");
                    interval.min(Duration::from_secs(2))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    }

    /// Keeps the revocation list current until `stopped` (see kit's
    /// `auth::revocations` for what happens while the stream is down).
    /// Without a signing key the gateway cannot subscribe, and revoked
    /// tokens are refused only by the services behind it.
    pub async fn follow_revocations(self: Arc<Self>, stopped: watch::Receiver<bool>) {
        let Some(signer) = self.signer.clone() else {
            tracing::warn!("no signing key: the gateway does not follow the revocation list");
            return;
        };
        Feed::new(self.accounts_channel.clone(), signer, "service:gateway")
            .run(self.revocations.clone(), stopped)
            .await;
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    fn verifier(&self) -> Arc<TokenVerifier> {
        self.verifier.read().expect("lock").clone()
    }

    /// Verifies (or finds the verification cached), then checks the
    /// revocation list, which is never cached.
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token).await?;
        self.revocations.check(&claims)?;
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        if let Some(claims) = fresh(&self.tokens, token) {
            return Ok(claims);
        }
        let mut verified = self.verifier().verify(token);
        if verified == Err(TokenError::UnknownKey) {
            // A key rotated in since the last refresh.
            let due = self
                .last_refresh
                .lock()
                .expect("lock")
                .is_none_or(|t| t.elapsed() > UNKNOWN_KEY_REFRESH);
            if due && self.refresh_jwks().await.is_ok() {
                verified = self.verifier().verify(token);
            }
        }
        if let Ok(claims) = &verified {
            let entry = Cached {
                value: claims.clone(),
                until: Instant::now() + remaining(claims),
            };
            let mut cache = self.tokens.lock().expect("lock");
            insert_bounded(&mut cache, self.cache.size, token.to_owned(), entry);
        }
        verified
    }

    /// Resolves the bearer of a call.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        context: &RequestContext,
    ) -> Result<Authenticated, Status> {
        let Some(bearer) = bearer else {
            return Ok(Authenticated {
                forward: None,
                verified: None,
            });
        };
        if bearer.starts_with(API_TOKEN_PREFIX) {
            let (token, claims) = self.exchange(bearer, context).await?;
            return Ok(Authenticated {
                forward: Some(token),
                verified: Some(Ok(claims)),
            });
        }
        Ok(Authenticated {
            forward: None,
            verified: Some(self.verify(bearer).await),
        })
    }

    /// An access token for an API token secret, from cache or accounts.
    async fn exchange(&self, secret: &str, context: &RequestContext) -> Result<Exchanged, Status> {
        let digest = Sha256::digest(secret.as_bytes()).to_vec();
        if let Some(exchanged) = fresh(&self.api_tokens, &digest) {
            if self.revocations.check(&exchanged.1).is_ok() {
                return Ok(exchanged);
            }
            // Revoked (token deleted, account suspended): ask accounts
            // again, which refuses it.
            self.api_tokens.lock().expect("lock").remove(&digest);
        }
        let mut request = tonic::Request::new(ExchangeApiTokenRequest {
            secret: secret.to_owned(),
        });
        forward_context(request.metadata_mut(), context);
        let response = self
            .accounts
            .clone()
            .exchange_api_token(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated
                | tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::NotFound => {
                    Status::unauthenticated(format!("API token refused: {}", status.message()))
                }
                _ => Status::unavailable("cannot check the API token now"),
            })?
            .into_inner();
        let token = response
            .tokens
            .map(|t| t.access_token)
            .ok_or_else(|| Status::internal("accounts returned no access token"))?;
        let claims = self
            .verify(&token)
            .await
            .map_err(|e| Status::internal(format!("exchanged token does not verify: {e}")))?;
        // Renew a little before expiry so a forwarded token never lapses in
        // flight.
        let until = Instant::now()
            + remaining(&claims)
                .saturating_sub(Duration::from_secs(30))
                .min(self.cache.api_token_ttl);
        let entry = Cached {
            value: (token.clone(), claims.clone()),
            until,
        };
        insert_bounded(
            &mut self.api_tokens.lock().expect("lock"),
            self.cache.size,
            digest,
            entry,
        );
        Ok((token, claims))
    }

    /// Is the impersonation session still on? Active answers are cached for
    /// `session_check_ttl`, ended ones for good. Without a signing key the
    /// gateway cannot ask and trusts the token until it expires.
    pub async fn session_active(&self, session_id: &str) -> Result<bool, Status> {
        let Some(signer) = &self.signer else {
            return Ok(true);
        };
        if let Some(active) = fresh(&self.sessions, session_id) {
            return Ok(active);
        }
        let request = ServiceCredentials::new(signer.clone(), "service:gateway").authorize(
            CheckImpersonationSessionRequest {
                session_id: session_id.to_owned(),
            },
        );
        let active = self
            .accounts
            .clone()
            .check_impersonation_session(request)
            .await
            .map_err(|_| Status::unavailable("cannot check the impersonation session now"))?
            .into_inner()
            .active;
        let ttl = if active {
            self.cache.session_check_ttl
        } else {
            Duration::from_secs(24 * 3600)
        };
        insert_bounded(
            &mut self.sessions.lock().expect("lock"),
            self.cache.size,
            session_id.to_owned(),
            Cached {
                value: active,
                until: Instant::now() + ttl,
            },
        );
        Ok(active)
    }
}

/// Tells a backend who the end client is (the gateway is a trusted proxy).
pub fn forward_context(metadata: &mut tonic::metadata::MetadataMap, context: &RequestContext) {
    let mut set = |key: &'static str, value: &str| {
        if let Ok(value) = value.parse() {
            metadata.insert(key, value);
        }
    };
    set(keys::REQUEST_ID, &context.request_id);
    set(keys::CLIENT_IP, &context.client_ip);
    set(keys::CLIENT_USER_AGENT, &context.user_agent);
}
