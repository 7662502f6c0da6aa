//! An audit event as the service handles it, and sealing it into the chain.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    chain::{Chained, Hash, pii_digest},
    seal::{ChainKeys, erasure_message},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: Uuid,
    /// Microsecond precision (what PostgreSQL keeps), so hashes recompute.
    pub occurred_at: DateTime<Utc>,
    pub product: String,
    pub action: String,
    pub category: i16,
    pub actor_user_id: String,
    pub subject_user_id: String,
    pub modified_user_id: String,
    pub impersonator_user_id: String,
    pub impersonation_session_id: String,
    pub token_id: String,
    pub project: String,
    /// Non-personal parameters (chained).
    pub comments: BTreeMap<String, String>,
    /// Personal parameters (digested).
    pub pii_comments: BTreeMap<String, String>,
    pub client_ip: String,
    pub user_agent: String,
    pub result: i16,
    pub error_message: String,
    pub duration_us: i64,
    pub request_id: String,
    pub trace_id: String,
    pub source: String,
}

impl Event {
    fn chained<'a>(&'a self, event_id: &'a str, pii_digest: &'a [u8]) -> Chained<'a> {
        Chained {
            event_id,
            occurred_at_micros: self.occurred_at.timestamp_micros(),
            product: &self.product,
            action: &self.action,
            category: self.category,
            actor_user_id: &self.actor_user_id,
            subject_user_id: &self.subject_user_id,
            modified_user_id: &self.modified_user_id,
            impersonator_user_id: &self.impersonator_user_id,
            impersonation_session_id: &self.impersonation_session_id,
            token_id: &self.token_id,
            project: &self.project,
            comments: &self.comments,
            result: self.result,
            error_message: &self.error_message,
            duration_us: self.duration_us,
            request_id: &self.request_id,
            trace_id: &self.trace_id,
            source: &self.source,
            pii_digest,
        }
    }

    /// The chain hash of this event at `seq` after `prev`.
    pub fn hash(&self, pii_digest: &[u8], prev: &[u8], seq: i64) -> Hash {
        let id = self.event_id.to_string();
        self.chained(&id, pii_digest).hash(prev, seq)
    }

    pub fn pii_digest(&self, salt: &[u8]) -> Hash {
        pii_digest(salt, &self.client_ip, &self.user_agent, &self.pii_comments)
    }
}

/// Chain fields of an event about to be stored.
#[derive(Debug, Clone)]
pub struct Seal {
    pub seq: i64,
    /// None when stored already erased.
    pub pii_salt: Option<Vec<u8>>,
    pub pii_digest: Hash,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// Set when stored already erased: the chain key's word for it.
    pub erasure_signature: Option<Vec<u8>>,
}

pub fn seal(event: &Event, seq: i64, prev: &Hash) -> Seal {
    let pii_salt = rand::random::<[u8; 16]>().to_vec();
    let pii_digest = event.pii_digest(&pii_salt);
    let hash = event.hash(&pii_digest, prev, seq);
    Seal {
        seq,
        pii_salt: Some(pii_salt),
        pii_digest,
        prev_hash: *prev,
        hash,
        erasure_signature: None,
    }
}

impl Event {
    /// This event without its personal data (stored for an erased user).
    pub fn erased(&self) -> Event {
        Event {
            client_ip: String::new(),
            user_agent: String::new(),
            pii_comments: Default::default(),
            ..self.clone()
        }
    }

    /// The users this event names (subject, actor, modified), the empty
    /// ones left out.
    pub fn people(&self) -> impl Iterator<Item = &str> {
        [
            &self.subject_user_id,
            &self.actor_user_id,
            &self.modified_user_id,
        ]
        .into_iter()
        .map(String::as_str)
        .filter(|u| !u.is_empty())
    }

    pub fn has_personal_data(&self) -> bool {
        !self.client_ip.is_empty() || !self.user_agent.is_empty() || !self.pii_comments.is_empty()
    }
}

/// Everyone a batch names, once each, sorted.
pub fn people_named(batch: &[Event]) -> Vec<&str> {
    let mut people: Vec<&str> = batch.iter().flat_map(Event::people).collect();
    people.sort_unstable();
    people.dedup();
    people
}

/// Per event of a batch, whether it is stored now: its id was claimed now
/// (not stored before) and it is the first with that id in the batch.
pub fn fresh(batch: &[Event], claimed: &HashSet<Uuid>) -> Vec<bool> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .map(|e| claimed.contains(&e.event_id) && seen.insert(e.event_id))
        .collect()
}

/// An event as stored, with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    pub pii_erased: bool,
    pub pii_salt: Option<Vec<u8>>,
    pub pii_digest: Vec<u8>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub erasure_signature: Option<Vec<u8>>,
}

/// Why a stored event does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Content no longer matches its hash.
    Hash,
    /// Its prev_hash is not its predecessor's hash (a row removed or reordered).
    Link,
    /// Personal data no longer matches its digest.
    PersonalData,
    /// Marked erased without the chain key's signature of the erasure.
    Erasure,
}

impl StoredEvent {
    /// Checks this event against its predecessor's hash; an erasure must be
    /// signed with one of `keys`.
    pub fn verify(&self, predecessor_hash: &[u8], keys: &ChainKeys) -> Result<(), Broken> {
        if self.prev_hash != predecessor_hash {
            return Err(Broken::Link);
        }
        if self
            .event
            .hash(&self.pii_digest, &self.prev_hash, self.seq)
            .as_slice()
            != self.hash
        {
            return Err(Broken::Hash);
        }
        if self.pii_erased {
            // Erasure blanks the data and forgets the salt; anything else
            // in an "erased" row is an edit.
            if self.event.has_personal_data() || self.pii_salt.is_some() {
                return Err(Broken::PersonalData);
            }
            if !keys.verify(
                &erasure_message(self.seq, &self.hash),
                self.erasure_signature.as_deref(),
            ) {
                return Err(Broken::Erasure);
            }
        } else {
            let salt = self.pii_salt.as_deref().unwrap_or_default();
            if self.event.pii_digest(salt).as_slice() != self.pii_digest {
                return Err(Broken::PersonalData);
            }
        }
        Ok(())
    }
}
