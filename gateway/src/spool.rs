//! A durable local queue of records: append-only segment files in one
//! directory, so that what the gateway refuses survives an audit outage of
//! any length and a restart.
//!
//! * A segment is `<id>.seg` (`id` zero-padded, increasing). One writer
//!   appends to the active segment; it is *sealed* (no longer written) when
//!   it is large enough or has waited long enough, and only sealed segments
//!   are shipped. A shipped segment is deleted once every record in it was
//!   acknowledged; after a restart every segment left is sealed and shipped
//!   again (the receiver deduplicates).
//! * A record is `len: u32 LE | check: 4 bytes | payload`, `check` being the
//!   first four bytes of SHA-256 of the payload. Reading stops at the first
//!   record that is short, too long or does not check: a torn tail after a
//!   crash is skipped (and logged), never fatal.
//! * Appends are fsynced once per batch, before the batch counts as spooled.
//! * The spool is bounded: [`Spool::reserve`] refuses what would exceed
//!   `max_bytes` (less a headroom kept for summaries).
//! * One process at a time: the directory's `lock` file is locked while the
//!   spool is open.

use std::{
    collections::VecDeque,
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use sha2::{Digest, Sha256};
use tokio::{io::AsyncWriteExt, sync::Notify};

/// Bytes of a record's header (length and check).
pub const HEADER: u64 = 8;
/// A record longer than this is taken for garbage (a torn length).
pub const MAX_RECORD: usize = 1024 * 1024;
/// Kept free for summaries: a full spool can still say what it dropped.
pub const HEADROOM: u64 = 64 * 1024;
const SUFFIX: &str = ".seg";

fn check(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(payload);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// One record as it is written.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER as usize);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&check(payload));
    out.extend_from_slice(payload);
    out
}

/// The records of a segment's bytes, and how many bytes at the end were
/// skipped (a torn or corrupt tail).
pub fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER as usize {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let start = at + HEADER as usize;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if check(payload) != bytes[at + 4..at + 8] {
            break;
        }
        records.push(payload.to_vec());
        at = start + len;
    }
    (records, bytes.len() - at)
}

/// A sealed segment: its id and size on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub id: u64,
    pub bytes: u64,
}

struct State {
    sealed: VecDeque<Segment>,
    /// Bytes of every segment on disk, the active one included, plus what
    /// is reserved and not yet written.
    bytes: u64,
    next_id: u64,
}

/// The spool directory, shared by its one [`Appender`] and its shipper.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    sealed: Notify,
    /// Held locked while the spool is open.
    _lock: File,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error("{dir} is in use by another process (its lock file is locked)")]
    Locked { dir: PathBuf },
}

fn segment_id(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

impl Spool {
    /// Opens (creating it if need be) the spool in `dir`: every segment
    /// found there is sealed, to be shipped again.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Self>, OpenError> {
        let io_error = |source| OpenError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let mut sealed = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            if let Some(id) = segment_id(&entry.path()) {
                let bytes = entry.metadata().map_err(io_error)?.len();
                sealed.push(Segment { id, bytes });
            }
        }
        sealed.sort_by_key(|s| s.id);
        let bytes = sealed.iter().map(|s| s.bytes).sum();
        let next_id = sealed.last().map_or(1, |s| s.id + 1);
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State {
                sealed: sealed.into(),
                bytes,
                next_id,
            }),
            sealed: Notify::new(),
            _lock: lock,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("spool lock")
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}{SUFFIX}"))
    }

    /// Bytes on disk (and reserved).
    pub fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Reserves `bytes` for an append: refused when the spool would grow
    /// past its bound (for all but summaries, past the bound less
    /// [`HEADROOM`]).
    pub fn reserve(&self, bytes: u64, summary: bool) -> bool {
        let limit = if summary {
            self.max_bytes
        } else {
            self.max_bytes.saturating_sub(HEADROOM)
        };
        let mut state = self.state();
        if state.bytes + bytes > limit {
            return false;
        }
        state.bytes += bytes;
        true
    }

    /// Gives back a reservation that was not written.
    pub fn release(&self, bytes: u64) {
        let mut state = self.state();
        state.bytes = state.bytes.saturating_sub(bytes);
    }

    /// Sealed segments waiting, oldest first.
    pub fn pending(&self) -> Vec<Segment> {
        self.state().sealed.iter().copied().collect()
    }

    /// The oldest sealed segment, waiting for one.
    pub async fn oldest(&self) -> Segment {
        loop {
            let notified = self.sealed.notified();
            if let Some(segment) = self.state().sealed.front().copied() {
                return segment;
            }
            notified.await;
        }
    }

    /// The records of a sealed segment, and the bytes skipped at its end.
    pub async fn read(&self, segment: Segment) -> io::Result<(Vec<Vec<u8>>, usize)> {
        let bytes = tokio::fs::read(self.path(segment.id)).await?;
        Ok(parse(&bytes))
    }

    /// Deletes a sealed segment whose records were all acknowledged.
    pub async fn remove(&self, segment: Segment) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(segment.id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut state = self.state();
        state.sealed.retain(|s| s.id != segment.id);
        state.bytes = state.bytes.saturating_sub(segment.bytes);
        Ok(())
    }

    /// The writer of this spool (one per spool).
    pub fn appender(self: &Arc<Self>) -> Appender {
        Appender {
            spool: self.clone(),
            active: None,
        }
    }
}

struct Active {
    id: u64,
    file: tokio::fs::File,
    bytes: u64,
    opened: Instant,
}

/// Appends to the active segment and seals it.
pub struct Appender {
    spool: Arc<Spool>,
    active: Option<Active>,
}

impl Appender {
    /// Writes `records` (already reserved) to the active segment and syncs
    /// it: once this returns, they survive a crash.
    pub async fn append(&mut self, records: &[Vec<u8>]) -> io::Result<()> {
        let written = self.write(records).await;
        if written.is_err() {
            // What was half written is this segment's torn tail; later
            // records go to a new segment, where they can be read.
            self.seal();
        }
        written
    }

    async fn write(&mut self, records: &[Vec<u8>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.active.is_none() {
            let id = {
                let mut state = self.spool.state();
                let id = state.next_id;
                state.next_id += 1;
                id
            };
            let file = tokio::fs::File::options()
                .create_new(true)
                .append(true)
                .open(self.spool.path(id))
                .await?;
            // The new name must survive a crash too.
            if let Ok(dir) = tokio::fs::File::open(&self.spool.dir).await {
                let _ = dir.sync_all().await;
            }
            self.active = Some(Active {
                id,
                file,
                bytes: 0,
                opened: Instant::now(),
            });
        }
        let active = self.active.as_mut().expect("opened above");
        let buf: Vec<u8> = records.iter().flat_map(|r| frame(r)).collect();
        active.file.write_all(&buf).await?;
        active.file.flush().await?;
        active.file.sync_data().await?;
        active.bytes += buf.len() as u64;
        Ok(())
    }

    /// Bytes in the active segment, and how long it has been open.
    pub fn active(&self) -> Option<(u64, std::time::Duration)> {
        self.active.as_ref().map(|a| (a.bytes, a.opened.elapsed()))
    }

    /// Seals the active segment (if it holds anything): it is shipped next.
    pub fn seal(&mut self) {
        if let Some(active) = self.active.take() {
            self.spool.state().sealed.push_back(Segment {
                id: active.id,
                bytes: active.bytes,
            });
            self.spool.sealed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("steward-spool-test-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_skipped() {
        let mut bytes = frame(b"one");
        bytes.extend(frame(b"two"));
        let whole = bytes.len();
        assert_eq!(parse(&bytes), (vec![b"one".to_vec(), b"two".to_vec()], 0));
        // Torn inside the third record's payload, then inside its header.
        let third = frame(b"three");
        bytes.extend_from_slice(&third[..10]);
        assert_eq!(parse(&bytes).0.len(), 2);
        assert_eq!(parse(&bytes).1, 10);
        bytes.truncate(whole + 3);
        assert_eq!(parse(&bytes), (vec![b"one".to_vec(), b"two".to_vec()], 3));
        // A flipped byte in the second record: only the first is trusted.
        let mut corrupt = frame(b"one");
        let mut second = frame(b"two");
        second[9] ^= 0x40;
        corrupt.extend(second);
        assert_eq!(parse(&corrupt).0, vec![b"one".to_vec()]);
        // A length that cannot be true.
        let mut huge = frame(b"one");
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(parse(&huge), (vec![b"one".to_vec()], 12));
    }

    #[tokio::test]
    async fn segments_are_sealed_shipped_removed_and_found_again_after_a_restart() {
        let dir = temp_dir();
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        assert!(matches!(
            Spool::open(&dir, 1 << 20),
            Err(OpenError::Locked { .. })
        ));
        let mut appender = spool.appender();
        let records = vec![b"a".to_vec(), b"bb".to_vec()];
        assert!(spool.reserve(2 * HEADER + 3, false));
        appender.append(&records).await.unwrap();
        appender.seal();
        assert!(spool.reserve(HEADER + 1, false));
        appender.append(&[b"c".to_vec()]).await.unwrap();
        // The active segment is not shipped until sealed.
        assert_eq!(spool.pending().len(), 1);
        let first = spool.oldest().await;
        assert_eq!(spool.read(first).await.unwrap(), (records, 0));
        spool.remove(first).await.unwrap();
        assert_eq!(spool.bytes(), HEADER + 1);
        drop(appender);
        drop(spool);

        let reopened = Spool::open(&dir, 1 << 20).unwrap();
        let left = reopened.pending();
        assert_eq!(left.len(), 1, "the unsealed segment is found and sealed");
        assert_eq!(reopened.read(left[0]).await.unwrap().0, vec![b"c".to_vec()]);
        // New segments come after the old ones.
        let mut appender = reopened.appender();
        appender.append(&[b"d".to_vec()]).await.unwrap();
        appender.seal();
        let ids: Vec<u64> = reopened.pending().iter().map(|s| s.id).collect();
        assert!(ids[0] < ids[1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bound_keeps_headroom_for_summaries() {
        let dir = temp_dir();
        let spool = Spool::open(&dir, HEADROOM + 100).unwrap();
        assert!(spool.reserve(100, false));
        assert!(!spool.reserve(1, false), "past the bound less headroom");
        assert!(spool.reserve(HEADROOM, true), "a summary still fits");
        assert!(!spool.reserve(1, true));
        spool.release(HEADROOM);
        assert!(spool.reserve(1, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
