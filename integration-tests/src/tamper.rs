//! A database administrator rewriting the audit trail, case by case: the
//! audit service with a chain key file and a checkpoint directory of its own
//! (what an operator configures), and what `VerifyChain` and the offline
//! check (`verify_checkpoint`, behind `steward audit verify`) say after each
//! tampering. Used by the integrity tests and the fault benchmark.

use chrono::Utc;
use diesel_async::SimpleAsyncConnection;
use steward_audit::domain::seal::{ChainKeys, ChainSigner};
use steward_kit::auth::Role;
use steward_proto::{audit as pb, common};

use crate::{AuditClient, Bearer, Options, TempDir, TestApp};

pub struct Rig {
    pub app: TestApp,
    /// The verifiers' keys: the chain key's public half only.
    pub keys: ChainKeys,
    dir: TempDir,
}

/// What each check said after a tampering: `true` = detected.
#[derive(Debug, Clone, Copy)]
pub struct Detection {
    pub case: &'static str,
    pub by_service: bool,
    pub offline: bool,
}

/// A tampering done, and the checkpoint kept from before it.
pub struct Tampered {
    pub detection: Detection,
    pub kept: std::path::PathBuf,
}

impl Detection {
    pub fn detected(&self) -> bool {
        self.by_service || self.offline
    }
}

fn event(subject: &str) -> pb::AuditEvent {
    let now = Utc::now();
    pb::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: (now.timestamp_subsec_micros() * 1000) as i32,
        }),
        product: "accounts".into(),
        action: "user.signed_in".into(),
        category: pb::Category::Public as i32,
        actor_user_id: subject.into(),
        subject_user_id: subject.into(),
        client_ip: "203.0.113.7".into(),
        result: common::Result::Success as i32,
        source: "test".into(),
        ..Default::default()
    }
}

impl Rig {
    pub async fn new() -> Self {
        let dir = TempDir::new("steward-audit-rig");
        std::fs::create_dir_all(&dir.0).expect("rig dir");
        let signer = ChainSigner::generate();
        let key_file = dir.0.join("chain-key");
        std::fs::write(&key_file, signer.to_file_contents()).expect("chain key");
        let app = TestApp::spawn_with(Options {
            with_audit: true,
            audit: Some(steward_audit::AuditConfig {
                chain_key_file: Some(key_file),
                checkpoint_dir: Some(dir.0.join("checkpoints")),
                ..Default::default()
            }),
            ..Options::default()
        })
        .await;
        let mut keys = ChainKeys::default();
        keys.add(signer.verifying_key());
        Self { app, keys, dir }
    }

    pub fn audit(&self) -> AuditClient {
        self.app.audit()
    }

    pub async fn ingest(&self, subject: &str, n: usize) {
        let events = (0..n).map(|_| event(subject)).collect();
        pb::audit_ingest_service_client::AuditIngestServiceClient::with_interceptor(
            self.app.audit_channel_for_tests(),
            Bearer::new(Some(
                self.app.token("service:accounts", &[Role::PlatformService]),
            )),
        )
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .expect("ingest");
    }

    pub async fn verify(&self) -> pb::VerifyChainResponse {
        self.audit()
            .verify_chain(pb::VerifyChainRequest::default())
            .await
            .expect("verify")
            .into_inner()
    }

    /// Asks for a checkpoint; returns a copy of the exported file (as a
    /// monitor would have copied it away).
    pub async fn checkpoint(&self) -> std::path::PathBuf {
        let issued = self
            .audit()
            .create_checkpoint(pb::CreateCheckpointRequest {})
            .await
            .expect("checkpoint")
            .into_inner()
            .checkpoint
            .expect("issued");
        let exported: Vec<_> = std::fs::read_dir(self.dir.0.join("checkpoints"))
            .expect("checkpoint dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|text| text == issued.json))
            .collect();
        assert_eq!(exported.len(), 1, "exported to the directory");
        let kept = self.dir.0.join(format!("kept-{}.json", issued.sequence));
        std::fs::copy(&exported[0], &kept).expect("copy");
        kept
    }

    /// The offline check's finding: `(sequence, why)` when broken.
    pub async fn offline(&self, file: &std::path::Path) -> Option<(i64, String)> {
        self.offline_with(file, &self.keys).await
    }

    pub async fn offline_with(
        &self,
        file: &std::path::Path,
        keys: &ChainKeys,
    ) -> Option<(i64, String)> {
        steward_audit::chain::checkpoint::verify_checkpoint(file, keys, &self.app.db.url)
            .await
            .expect("offline check runs")
            .broken
    }

    pub async fn tamper(&self, sql: &str) {
        self.app
            .db
            .audit()
            .await
            .batch_execute(sql)
            .await
            .expect(sql);
    }

    async fn detection(&self, case: &'static str, kept: std::path::PathBuf) -> Tampered {
        Tampered {
            detection: Detection {
                case,
                by_service: !self.verify().await.ok,
                offline: self.offline(&kept).await.is_some(),
            },
            kept,
        }
    }
}

/// Deletes event 3 and inserts a tombstone that matches it.
pub async fn forged_tombstone(rig: &Rig) -> Tampered {
    rig.ingest("t", 6).await;
    let kept = rig.checkpoint().await;
    rig.tamper(
        "INSERT INTO chain_tombstones (seq, prev_hash, hash) SELECT seq, prev_hash, hash FROM events WHERE seq = 3;
         DELETE FROM events WHERE seq = 3",
    )
    .await;
    rig.detection("delete an event, insert a matching tombstone", kept)
        .await
}

/// Deletes the newest five events and moves the head back by hand.
pub async fn truncation(rig: &Rig) -> Tampered {
    rig.ingest("r", 10).await;
    let kept = rig.checkpoint().await;
    rig.tamper(
        "DELETE FROM events WHERE seq > 5;
         UPDATE chain_head SET seq = 5, hash = (SELECT hash FROM events WHERE seq = 5)",
    )
    .await;
    rig.detection("delete the newest five, move the head back", kept)
        .await
}

/// Deletes the newest five and restores a signed head saved earlier: the
/// database alone is consistent, the checkpoint kept outside it is not.
pub async fn rollback(rig: &Rig) -> Tampered {
    rig.ingest("b", 5).await;
    rig.tamper("CREATE TABLE saved_head AS SELECT * FROM chain_head")
        .await;
    rig.ingest("b", 5).await;
    let kept = rig.checkpoint().await;
    rig.tamper(
        "DELETE FROM events WHERE seq > 5;
         UPDATE chain_head h SET seq = s.seq, hash = s.hash, signed_at = s.signed_at, signature = s.signature
         FROM saved_head s",
    )
    .await;
    rig.detection("roll back to a saved signed head", kept)
        .await
}

/// Marks a never-erased event as erased and blanks its personal data.
pub async fn forged_erasure(rig: &Rig) -> Tampered {
    rig.ingest("victim", 4).await;
    let kept = rig.checkpoint().await;
    rig.tamper(
        "UPDATE events SET pii_erased = true, client_ip = '', user_agent = '',
            pii_comments = '{}', pii_salt = NULL
         WHERE seq = (SELECT min(seq) FROM events WHERE subject_user_id = 'victim')",
    )
    .await;
    rig.detection("mark an event erased, blank its personal data", kept)
        .await
}

/// Edits event 2 and recomputes every later hash and the head, knowing the
/// format (but not the chain key).
pub async fn rewrite(rig: &Rig) -> Tampered {
    use steward_audit::store::events;
    rig.ingest("w", 6).await;
    let kept = rig.checkpoint().await;
    let mut conn = rig.app.db.audit().await;
    let rows = events::by_sequence(&mut conn, 1, 100, 100)
        .await
        .expect("rows");
    let mut prev = rows[0].hash.clone();
    let mut sql = String::new();
    for mut row in rows.into_iter().skip(1) {
        if row.seq == 2 {
            row.event.action = "user.signed_out".into();
        }
        let hash = row.event.hash(&row.pii_digest, &prev, row.seq);
        sql.push_str(&format!(
            "UPDATE events SET action = '{}', prev_hash = '\\x{}', hash = '\\x{}' WHERE seq = {};",
            row.event.action,
            hex::encode(&prev),
            hex::encode(hash),
            row.seq
        ));
        prev = hash.to_vec();
    }
    sql.push_str(&format!(
        "UPDATE chain_head SET hash = '\\x{}';",
        hex::encode(&prev)
    ));
    rig.tamper(&sql).await;
    rig.detection(
        "edit an event, recompute every later hash and the head",
        kept,
    )
    .await
}

/// Every case of issue 10, each on a fresh rig.
pub async fn all_cases() -> Vec<Detection> {
    let mut found = Vec::new();
    for case in 0..5 {
        let rig = Rig::new().await;
        found.push(
            match case {
                0 => forged_tombstone(&rig).await,
                1 => truncation(&rig).await,
                2 => rollback(&rig).await,
                3 => forged_erasure(&rig).await,
                _ => rewrite(&rig).await,
            }
            .detection,
        );
        rig.app.stop().await;
    }
    found
}
