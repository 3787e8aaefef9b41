//! `wal`: bytes on disk. A segmented, CRC-framed write-ahead log with group commit, replay and
//! torn-tail handling. It knows nothing of tasks: payloads are opaque bytes.
//!
//! CONTRACT STUB: these are the public signatures the `store` layer compiles against. The
//! implementation replaces the bodies; signatures may gain siblings but must not change.
#![allow(missing_docs, unused_variables, clippy::missing_errors_doc)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;

pub mod storage;
pub use storage::{OpenMode, StdStorage, Storage, StorageFile, StorageLock};

/// Log sequence number: contiguous across the whole log, starting at 1. 0 means "none".
pub type Lsn = u64;

/// What an acknowledged append survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Acknowledged only after the fdatasync covering the record returned OK: survives power loss.
    #[default]
    Sync,
    /// Acknowledged after write(2); fdatasync every interval and on `sync()`/`close()`. Survives a
    /// process crash; a power loss can take the acknowledgements of the last interval.
    Interval(Duration),
    /// Acknowledged once in the in-process buffer, written when the buffer fills, fsynced only on
    /// `sync()`/`close()`. A crash can take everything since the last `sync()`. For bulk loads.
    Buffered,
}

/// Options for [`Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    pub segment_bytes_max: u64,
    pub durability: Durability,
    pub preallocate: bool,
    pub read_only: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes_max: 64 << 20,
            durability: Durability::Sync,
            preallocate: true,
            read_only: false,
        }
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub segments: usize,
    pub first_lsn: Lsn,
    pub next_lsn: Lsn,
    /// Bytes of an incomplete record cut from the end of the last segment.
    pub torn_bytes_cut: u64,
    /// Where the torn tail began (file, offset), if one was cut.
    pub torn_at: Option<(PathBuf, u64)>,
}

/// Latency summary in microseconds.
#[derive(Clone, Debug, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Live figures about the log.
#[derive(Clone, Debug, Default)]
pub struct WalStats {
    pub segments: usize,
    pub bytes: u64,
    pub first_lsn: Lsn,
    pub next_lsn: Lsn,
    pub durable_lsn: Lsn,
    pub appends: u64,
    pub fsyncs: u64,
    pub fsync_latency: LatencySummary,
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// What `truncate_before` removed.
#[derive(Clone, Debug, Default)]
pub struct TruncateReport {
    pub segments_removed: usize,
    pub bytes_removed: u64,
}

/// A handle on records submitted but maybe not yet durable.
#[derive(Debug)]
pub struct Ticket {
    first_lsn: Lsn,
    last_lsn: Lsn,
}

impl Ticket {
    pub fn first_lsn(&self) -> Lsn {
        self.first_lsn
    }
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }
    /// Waits until the records are acknowledged under the log's durability mode.
    pub fn wait(self) -> Result<Lsn> {
        todo!()
    }
}

/// The write-ahead log. `Send + Sync`; clones share one log.
#[derive(Clone)]
pub struct Wal {}

impl Wal {
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<(Wal, OpenReport)> {
        todo!()
    }
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<(Wal, OpenReport)> {
        todo!()
    }
    pub fn dir(&self) -> &Path {
        todo!()
    }
    /// Appends one record; returns its LSN once acknowledged.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        todo!()
    }
    /// Appends records with contiguous LSNs, atomically: after any crash, all or none replay.
    /// Returns the first LSN.
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        todo!()
    }
    /// Assigns LSNs and queues the records (in call order) without waiting for durability.
    pub fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket> {
        todo!()
    }
    /// Waits until every record up to `lsn` is acknowledged under the durability mode.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        todo!()
    }
    /// Writes and fdatasyncs everything submitted so far, whatever the mode.
    pub fn sync(&self) -> Result<()> {
        todo!()
    }
    /// Calls `f` for each record with LSN >= `from`, in order; stops at the first error.
    pub fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64> {
        todo!()
    }
    /// Owned records with LSN >= `from`, at most `max` of them.
    pub fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Record>> {
        todo!()
    }
    /// Deletes whole segments whose records are all below `lsn`, then fsyncs the directory.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport> {
        todo!()
    }
    pub fn first_lsn(&self) -> Lsn {
        todo!()
    }
    pub fn next_lsn(&self) -> Lsn {
        todo!()
    }
    pub fn durable_lsn(&self) -> Lsn {
        todo!()
    }
    pub fn stats(&self) -> WalStats {
        todo!()
    }
    /// Syncs and releases the lock. Later calls on clones return `Error::Closed`.
    pub fn close(&self) -> Result<()> {
        todo!()
    }
}
