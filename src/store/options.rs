//! Store options. Every default is stated where the field is.

use std::path::Path;
use std::sync::Arc;

use super::Store;
use crate::error::Result;
use crate::wal::{Durability, StdStorage, StdStorageModes, Storage};

/// What to do, on open, with tasks that were running under a process that died.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterruptedPolicy {
    /// Mark them failed with the error "interrupted by restart" (the default).
    #[default]
    MarkFailed,
    /// Put them back to pending, keeping their latest checkpoint so the work can resume.
    Requeue,
    /// Leave them running (a supervisor decides).
    Leave,
}

/// What to do, on a writable open, with tasks that were pending (seed 002's rule: work queued
/// before a restart is not run after it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingAtOpen {
    /// Leave them pending (the default: a queue survives restarts).
    #[default]
    Keep,
    /// Cancel them with the interrupted-work message (`StoreOptions::interrupted_message`).
    /// Cancelled, not failed: a task that never ran did not fail (the state machine has no
    /// pending -> failed); `retry` queues one again.
    Cancel,
}

/// Options for opening a [`Store`].
///
/// ## Defaults
/// - `durability`: [`Durability::Sync`]: a mutation returns only after the fdatasync covering it.
/// - `segment_bytes_max`: 16 MiB per log segment (64 MiB until session 18; the smaller size keeps
///   the directory under 1 MB per 1,000 finished tasks at every size measured: docs/benchmarks.md,
///   "Disk: 16 MiB segments").
/// - `snapshot_every_records`: 100,000 records between background snapshots (0 turns them off).
/// - `snapshot_every_bytes`: 64 MiB of records between background snapshots (0 turns it off).
/// - `snapshots_kept`: 2 (the newest and one fallback; see docs/benchmarks.md, issue #20, for the disk it saves).
/// - `interrupted_policy`: [`InterruptedPolicy::MarkFailed`].
/// - `interrupted_message`: "interrupted by restart" (the error or reason recorded on work
///   interrupted by a crash).
/// - `pending_at_open`: [`PendingAtOpen::Keep`].
/// - `read_only`: false.
/// - `preallocate`: true (segments are reserved up front, which makes each fdatasync cheaper).
/// - `lock_timeout`: zero: a writer's open fails with `Locked` at once when another writer
///   holds the store. A library opens its store once and keeps it; a wait there would hide a
///   second open by mistake (the same choice as redb, sled and SQLite's default busy timeout).
///   The CLI, whose commands queue behind each other, waits 5 s (`--wait`).
/// - `file_mode`: `0o600` for new files, `0o700` for new directories (see
///   [`StoreOptions::file_mode`]).
///
/// ```
/// use std::time::Duration;
/// use tasklog::{Durability, StoreOptions};
/// use tasklog::store::InterruptedPolicy;
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = StoreOptions::new()
///     .durability(Durability::Interval(Duration::from_millis(50)))
///     .interrupted_policy(InterruptedPolicy::Requeue)
///     .snapshot_every_records(10_000)
///     .open(dir.path())?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub(crate) durability: Durability,
    pub(crate) segment_bytes_max: u64,
    pub(crate) snapshot_every_records: u64,
    pub(crate) snapshot_every_bytes: u64,
    pub(crate) snapshots_kept: usize,
    pub(crate) interrupted_policy: InterruptedPolicy,
    pub(crate) interrupted_message: String,
    pub(crate) pending_at_open: PendingAtOpen,
    pub(crate) read_only: bool,
    pub(crate) preallocate: bool,
    pub(crate) lock_timeout: std::time::Duration,
    pub(crate) storage: Arc<dyn Storage>,
    /// True once [`StoreOptions::storage`] chose the file system (then `file_mode` is its own).
    pub(crate) storage_chosen: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Sync,
            segment_bytes_max: 16 << 20,
            snapshot_every_records: 100_000,
            snapshot_every_bytes: 64 << 20,
            snapshots_kept: 2,
            interrupted_policy: InterruptedPolicy::MarkFailed,
            interrupted_message: super::INTERRUPTED_REASON.to_string(),
            pending_at_open: PendingAtOpen::Keep,
            read_only: false,
            preallocate: true,
            lock_timeout: std::time::Duration::ZERO,
            storage: Arc::new(StdStorage),
            storage_chosen: false,
        }
    }
}

impl StoreOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// What an acknowledged mutation survives.
    #[must_use]
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Log segment size limit.
    #[must_use]
    pub fn segment_bytes_max(mut self, n: u64) -> Self {
        self.segment_bytes_max = n;
        self
    }
    /// Records between background snapshots (0: never by count).
    #[must_use]
    pub fn snapshot_every_records(mut self, n: u64) -> Self {
        self.snapshot_every_records = n;
        self
    }
    /// Record bytes between background snapshots (0: never by size).
    #[must_use]
    pub fn snapshot_every_bytes(mut self, n: u64) -> Self {
        self.snapshot_every_bytes = n;
        self
    }
    /// How many snapshots to keep (at least 1).
    #[must_use]
    pub fn snapshots_kept(mut self, n: usize) -> Self {
        self.snapshots_kept = n.max(1);
        self
    }
    /// The policy for tasks interrupted by a crash.
    #[must_use]
    pub fn interrupted_policy(mut self, p: InterruptedPolicy) -> Self {
        self.interrupted_policy = p;
        self
    }
    /// The error (or reason) recorded on work interrupted by a crash, e.g. seed 002's "Task
    /// failed due to system restart". At most 1,024 bytes (longer is cut at a character
    /// boundary).
    #[must_use]
    pub fn interrupted_message(mut self, message: impl Into<String>) -> Self {
        let mut m: String = message.into();
        if m.len() > 1024 {
            let mut cut = 1024;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        self.interrupted_message = m;
        self
    }
    /// What a writable open does with pending tasks (seed 002 cancels them).
    #[must_use]
    pub fn pending_at_open(mut self, p: PendingAtOpen) -> Self {
        self.pending_at_open = p;
        self
    }
    /// The interrupted-work policy these options carry.
    pub fn interrupted_policy_value(&self) -> InterruptedPolicy {
        self.interrupted_policy
    }
    /// Open without the write lock; every mutation fails with `ReadOnly`.
    ///
    /// A read-only store over the local log keeps its log's segments open (up to
    /// `wal::PINNED_SEGMENTS_MAX`) and reads histories from them, as a writer does, instead of
    /// holding every event in memory. So a writer's compaction does not free the disk space of
    /// the segments it removes until the read-only stores opened before it close: keep
    /// read-only stores short-lived, or reopen them, where disk space is tight.
    #[must_use]
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }
    /// How long a writer's open waits for another writer to release the store's lock before
    /// failing with [`crate::Error::Locked`], which then names the holder's process id and
    /// since when it holds the lock (default zero: at once).
    #[must_use]
    pub fn lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
    /// Preallocate log segments.
    #[must_use]
    pub fn preallocate(mut self, yes: bool) -> Self {
        self.preallocate = yes;
        self
    }
    /// Keeps the store in memory: nothing is read from or written to disk (`dir` is only a
    /// name), and everything is gone when the last handle drops. For dry runs (the CLI's
    /// `import --dry-run` on a store that does not exist yet) and tests; the guarantees of
    /// docs/durability.md are about disks and do not apply.
    #[must_use]
    pub fn in_memory(mut self) -> Self {
        self.storage = Arc::new(crate::wal::sim::SimStorage::new(0));
        self.storage_chosen = true;
        self.preallocate = false;
        self
    }
    testing_pub! {
    /// The file system to use (a simulated disk in tests). Its own rules then decide the
    /// permissions of new files ([`StoreOptions::file_mode`] no longer applies).
    #[must_use]
    fn storage(mut self, s: Arc<dyn Storage>) -> Self {
        self.storage = s;
        self.storage_chosen = true;
        self
    }
    }
    /// Permission bits of the files the store creates (default `0o600`); directories get the
    /// same bits plus search for each class that may read (`0o640` gives `0o750`). The
    /// process umask still applies. Existing files and directories are left as they are.
    /// Ignored for a store [`StoreOptions::in_memory`] (or given its own storage in tests).
    #[must_use]
    pub fn file_mode(mut self, mode: u32) -> Self {
        if !self.storage_chosen {
            self.storage = Arc::new(StdStorageModes::from_file_mode(mode));
        }
        self
    }
    /// Opens the store at `dir` with these options.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, self)
    }
    /// Opens the store at `dir` over `log` instead of the local log in `<dir>/wal`: the
    /// store's records go to `log`, while `dir` keeps its snapshots and its lock
    /// (`<dir>/LOCK`, held until the store is closed or dropped, so one writer at a time). The
    /// open recovers as [`StoreOptions::open`] does: it loads the newest good snapshot and
    /// replays the log's records after it; a snapshot later truncates the log below it
    /// (through [`super::Log::truncate_before`]).
    ///
    /// What `log` must guarantee is in [`super::Log`]'s docs (contiguous LSNs from 1, atomic
    /// batches, durable once `wait_durable` returns). The options about the local log
    /// (durability, segment size, preallocation) do not apply: durability is the log's. The
    /// store's `backup`, `verify` and `repair` read the local log's files and are not for a
    /// store over another log. Fails with [`crate::Error::InvalidInput`] when `dir` holds a
    /// local log (`<dir>/wal`), whose records `log` would silently leave out, and with
    /// [`crate::Error::Locked`] when another store holds `dir`.
    ///
    /// Replaying the log into memory and each later write go through `log` unbuffered: a
    /// log that answers slowly makes the store slow, not wrong.
    pub fn open_with_log(self, dir: impl AsRef<Path>, log: Arc<dyn super::Log>) -> Result<Store> {
        Store::open_over(dir.as_ref(), self, log)
    }
}
