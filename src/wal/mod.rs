//! `wal`: bytes on disk. A segmented, CRC-framed write-ahead log with group commit, replay and
//! torn-tail handling. It knows nothing of tasks: payloads are opaque bytes.
//!
//! The on-disk format is specified in `docs/format.md`; the guarantees and the tests that prove
//! them are listed in `docs/durability.md`. Module map: `frame` (record envelope),
//! `segment` (segment header, reader, writer), `group_commit` (leader/follower fsync),
//! `recovery` (open, torn tail), `replay`, `retention` (`truncate_before`), `verify`,
//! `repair`, `staging` (a large atomic batch written beside the log, made live by a rename),
//! `sim` (simulated disk), `storage` (the I/O seam).
//!
//! # Quick start
//!
//! ```
//! use tasklog::wal::{Wal, WalOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let (wal, report) = Wal::open(dir.path(), WalOptions::default())?;
//! assert_eq!(report.next_lsn, 1);
//! let lsn = wal.append(b"hello")?; // durable (fdatasync) when it returns
//! let first = wal.append_batch(&[b"a", b"b"])?; // all or nothing after a crash
//! assert_eq!((lsn, first), (1, 2));
//! let mut seen = Vec::new();
//! wal.replay(1, &mut |lsn, payload| {
//!     seen.push((lsn, payload.to_vec()));
//!     Ok(())
//! })?;
//! assert_eq!(seen.len(), 3);
//! wal.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Replay maps sealed segments (memmap2) in writer handles and copies the active one, and
//! read-only handles copy every segment: on
//! the development VM replaying 1,000,000 records of 123 bytes took about 62 ms through maps
//! and about 190 ms through copies (`benches/append.rs`, group `wal_replay_1m`). Read-only
//! handles copy anyway because they hold no lock (see `storage::map_file`).
#![allow(missing_docs, clippy::missing_errors_doc)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

mod background;
mod flusher;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod frame;
testing_pub_mod!(frame);
#[doc(hidden)]
#[cfg(feature = "testing")]
pub mod fuzzing;
mod group_commit;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod lock;
testing_pub_mod!(lock);
mod options;
pub(crate) mod os;
mod read_at;
mod recovery;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod repair;
testing_pub_mod!(repair);
mod replay;
mod retention;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod segment;
testing_pub_mod!(segment);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod sim;
testing_pub_mod!(sim);
mod staging;
mod stats;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod storage;
testing_pub_mod!(storage);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod verify;
testing_pub_mod!(verify);

pub use frame::RECORD_BYTES_MAX;
pub use recovery::PINNED_SEGMENTS_MAX;
pub use repair::{CutPoint, RepairReport};
pub use segment::FORMAT_VERSION;
pub use staging::{STAGING_SUFFIX, Staging, is_staging_name, staging_path};
pub use verify::{Problem, VerifyReport};
// The storage seam, the log-level repair/verify entry points (the store's own in `store::repair`
// and `store::verify` are the public ones) and segment listing: for tests only.
testing_pub!(
    use recovery::list_segments;
);
testing_pub!(
    use repair::{repair, repair_with_storage};
);
testing_pub!(
    use storage::{
        FileBytes, OpenMode, StdStorage, StdStorageModes, Storage, StorageFile, StorageLock,
        create_dir_durable,
    };
);
testing_pub!(
    use verify::{verify, verify_with_storage};
);

use group_commit::{Core, Need};

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
    /// How long a writer's open waits for another writer to release the lock (default zero:
    /// refused at once). See `wal::lock`.
    pub lock_timeout: std::time::Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes_max: 16 << 20,
            durability: Durability::Sync,
            preallocate: true,
            read_only: false,
            lock_timeout: std::time::Duration::ZERO,
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
    /// Damage passed over because it lies wholly among records the opener holds another copy
    /// of (see `Wal::open_covered`): (segment, what is wrong). Lost redundancy, not data.
    pub covered_damage: Vec<(PathBuf, String)>,
    /// A writer sealed this last segment because its covered part is damaged, and went on in
    /// a new segment.
    pub sealed_after_damage: Option<PathBuf>,
}

/// Latency summary in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Live figures about the log.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
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
///
/// [`Wal::submit`] returns one that waits on the local log. A [`crate::store::Log`]
/// implemented in another crate returns one made with [`Ticket::new`]: the store then waits
/// through that log's [`crate::store::Log::wait_durable`].
#[derive(Debug)]
pub struct Ticket {
    first_lsn: Lsn,
    last_lsn: Lsn,
    /// `None` for a ticket made by [`Ticket::new`] (a log outside this crate), which has no
    /// group commit here to wait on.
    core: Option<Arc<Core>>,
}

impl Ticket {
    /// A ticket for the records `first_lsn..=last_lsn` (an empty batch: `last_lsn ==
    /// first_lsn - 1`), for a [`crate::store::Log`] implemented outside this crate. Its
    /// [`Ticket::wait`] does not wait: the store waits through the log's `wait_durable`.
    pub fn new(first_lsn: Lsn, last_lsn: Lsn) -> Ticket {
        Ticket {
            first_lsn,
            last_lsn,
            core: None,
        }
    }
    pub fn first_lsn(&self) -> Lsn {
        self.first_lsn
    }
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }
    /// Whether the ticket was made by [`Ticket::new`] (so waiting is the log's job).
    pub(crate) fn is_external(&self) -> bool {
        self.core.is_none()
    }
    /// Waits until the records are acknowledged under the log's durability mode. Returns at
    /// once for a ticket made by [`Ticket::new`] (see there).
    pub fn wait(self) -> Result<Lsn> {
        if let Some(core) = &self.core
            && self.last_lsn >= self.first_lsn
        {
            core.wait_ack(self.last_lsn)?;
        }
        Ok(self.last_lsn)
    }
}

/// The write-ahead log. `Send + Sync`; clones share one log.
#[derive(Clone, Debug)]
pub struct Wal {
    core: Arc<Core>,
    /// Where records are, for reads by LSN (built lazily; see `read_at`).
    lsn_index: Arc<read_at::LsnIndex>,
    /// Stops the log's threads when the last handle goes (declared last: dropped after
    /// `core`, so that its own reference is the last one).
    _threads: Arc<Threads>,
}

/// The log's threads (the `Interval` mode's sync thread, the `Buffered` mode's flusher), which
/// the last handle stops and waits for. A thread's round holds the core for its duration:
/// without the wait, dropping the last handle during a round would return before the core's
/// drop (which syncs) had run, later, on that thread, and a power cut in between would take
/// records the drop promised to sync.
#[derive(Debug)]
struct Threads(Arc<Core>);

impl Drop for Threads {
    fn drop(&mut self) {
        stop_threads(&self.0);
    }
}

/// Stops the log's threads and joins them (a handle is never on one of them).
fn stop_threads(core: &Core) {
    if let Some(bg) = core.background.lock().take() {
        bg.stop(true);
    }
    if let Some(flusher) = core.flusher.lock().take() {
        flusher.stop(true);
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<(Wal, OpenReport)> {
        Wal::open_with_storage(Arc::new(StdStorage), dir, options)
    }
    testing_pub! {
    /// Opens the log over any [`Storage`] (e.g. [`sim::SimStorage`]).
    fn open_with_storage(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<(Wal, OpenReport)> {
        Wal::open_covered(storage, dir, options, 0)
    }
    }
    testing_pub! {
    /// [`Wal::open_with_storage`] for a caller that holds a good copy (a snapshot) of every
    /// record up to LSN `covered`: damage wholly among those records (a damaged old segment, or
    /// the damaged covered start of the last one) is passed over and listed in
    /// [`OpenReport::covered_damage`] instead of refusing the open. Replays from above
    /// `covered` read on past it; replays from below still fail on it. A writer never appends
    /// behind such damage: it seals that segment and starts a new one.
    fn open_covered(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: WalOptions,
        covered: Lsn,
    ) -> Result<(Wal, OpenReport)> {
        let (core, report) = recovery::open(storage, dir.as_ref(), options, covered)?;
        if let Durability::Interval(every) = core.options.durability
            && !core.options.read_only
        {
            let bg = background::Background::spawn(&core, every)
                .map_err(|e| Error::io("spawn sync thread", dir.as_ref(), e))?;
            *core.background.lock() = Some(bg);
        }
        if core.options.durability == Durability::Buffered && !core.options.read_only {
            let requests = Arc::new(flusher::Requests::default());
            let flusher = flusher::Flusher::spawn(&core, requests.clone())
                .map_err(|e| Error::io("spawn flush thread", dir.as_ref(), e))?;
            *core.flusher.lock() = Some(flusher);
            let _ = core.flush_requests.set(requests);
        }
        Ok((
            Wal {
                _threads: Arc::new(Threads(core.clone())),
                core,
                lsn_index: Arc::default(),
            },
            report,
        ))
    }
    }
    pub fn dir(&self) -> &Path {
        &self.core.dir
    }
    /// Calls `f` with the payload of each record in `lsns`, in the order given, reading each
    /// from its segment (through a sparse in-memory index of frame offsets; see
    /// `wal/read_at.rs`). An LSN never written, or below [`Wal::first_lsn`], is an
    /// `InvalidInput` error; a record that is not where it must be is `Corrupt`, naming the
    /// segment and offset.
    pub fn read_lsns(
        &self,
        lsns: &[Lsn],
        f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
    ) -> Result<()> {
        read_at::read_lsns(&self.core, &self.lsn_index, lsns, f)
    }
    /// Appends one record; returns its LSN once acknowledged.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        // NOTE: no `Ticket`: its `Arc` clone and drop cost two atomic operations per append,
        // which a bulk load of small records notices.
        let (_, lsn) = self.core.submit(&[payload])?;
        self.core.wait_ack(lsn)?;
        Ok(lsn)
    }
    /// Appends records with contiguous LSNs, atomically: after any crash, all or none replay.
    /// Returns the first LSN.
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        let (first, last) = self.core.submit(payloads)?;
        if last >= first {
            self.core.wait_ack(last)?;
        }
        Ok(first)
    }
    /// Assigns LSNs and queues the records (in call order) without waiting for durability.
    /// The records of one call form one atomic batch.
    pub fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket> {
        let (first_lsn, last_lsn) = self.core.submit(payloads)?;
        Ok(Ticket {
            first_lsn,
            last_lsn,
            core: Some(self.core.clone()),
        })
    }
    /// Waits until every record up to `lsn` is acknowledged under the durability mode.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let next = self.core.state.lock().next_lsn;
        if lsn >= next {
            return Err(Error::InvalidInput {
                at: Some("lsn".into()),
                reason: format!("LSN {lsn} has not been submitted (next is {next})"),
            });
        }
        self.core.wait_ack(lsn)
    }
    /// Writes and fdatasyncs everything submitted so far, whatever the mode.
    pub fn sync(&self) -> Result<()> {
        if self.core.options.read_only {
            return Err(Error::ReadOnly);
        }
        let last = {
            let st = self.core.state.lock();
            if let Some(e) = st.refuse() {
                return Err(e);
            }
            st.next_lsn - 1
        };
        self.core.drive(last, Need::Synced)
    }
    /// Calls `f` for each record with LSN >= `from`, in order; stops at the first error.
    /// Returns the number of records delivered.
    pub fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64> {
        replay::replay_range(&self.core, from, Lsn::MAX, f)
    }
    /// Owned records with LSN >= `from`, at most `max` of them.
    pub fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(max.min(4096));
        let cap = from.saturating_add(max as u64);
        replay::replay_range(&self.core, from, cap, &mut |lsn, payload| {
            out.push(Record {
                lsn,
                payload: payload.to_vec(),
            });
            Ok(())
        })?;
        Ok(out)
    }
    /// Deletes whole segments whose records are all below `lsn`, then fsyncs the directory.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport> {
        retention::truncate_before(&self.core, lsn)
    }
    /// Damage passed over so far because it lies below the LSN given to `Wal::open_covered`
    /// (found at open, or by a replay since): (segment, what is wrong).
    pub fn covered_damage(&self) -> Vec<(PathBuf, String)> {
        self.core.covered_seen.lock().clone()
    }
    /// True for a read-only log that keeps every segment open (`recovery::pin_segments`):
    /// records read by LSN stay readable after a writer in another process removes their
    /// segment. A read-only store then reads histories from the log instead of holding them.
    pub fn pins_segments(&self) -> bool {
        self.core.options.read_only
            && self
                .core
                .state
                .lock()
                .segments
                .iter()
                .all(|s| s.pinned.is_some())
    }
    pub fn first_lsn(&self) -> Lsn {
        let st = self.core.state.lock();
        st.segments.first().map_or(st.next_lsn, |s| s.first_lsn)
    }
    pub fn next_lsn(&self) -> Lsn {
        self.core.state.lock().next_lsn
    }
    /// The highest LSN acknowledged under the durability mode: fdatasynced (`Sync`), written
    /// to the OS (`Interval`), or buffered (`Buffered`). 0 if none.
    pub fn durable_lsn(&self) -> Lsn {
        let st = self.core.state.lock();
        match self.core.options.durability {
            Durability::Sync => st.synced_lsn,
            Durability::Interval(_) => st.written_lsn,
            _ => st.next_lsn - 1,
        }
    }
    /// The highest LSN covered by a successful fdatasync (whatever the mode). 0 if none.
    pub fn synced_lsn(&self) -> Lsn {
        self.core.state.lock().synced_lsn
    }
    pub fn stats(&self) -> WalStats {
        let st = self.core.state.lock();
        let c = &self.core.counters;
        WalStats {
            segments: st.segments.len(),
            bytes: st.log_bytes,
            first_lsn: st.segments.first().map_or(st.next_lsn, |s| s.first_lsn),
            next_lsn: st.next_lsn,
            durable_lsn: st.synced_lsn,
            appends: st.appends,
            fsyncs: c.fsyncs.load(std::sync::atomic::Ordering::Relaxed),
            fsync_latency: c.latency(),
        }
    }
    /// Syncs and releases the lock. Later calls on clones return `Error::Closed`.
    pub fn close(&self) -> Result<()> {
        if self.core.state.lock().closed {
            return Err(Error::Closed);
        }
        let result = if self.core.options.read_only {
            Ok(())
        } else {
            self.sync()
        };
        // NOTE: the LOCK goes last. A leader leading for others may still be writing or
        // rolling after our own sync returned; once the LOCK is released another writer may
        // open the log, so every write of this handle must be over by then.
        {
            let mut st = self.core.state.lock();
            st.closed = true;
            self.core.cond.notify_all();
            self.core.wait_no_leader(&mut st);
        }
        // Joined outside the state mutex: the threads may be waiting for it.
        stop_threads(&self.core);
        drop(self.core.writer.lock().take());
        {
            let mut st = self.core.state.lock();
            st.lock = None;
            self.core.cond.notify_all();
        }
        result
    }
}
