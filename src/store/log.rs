//! The narrow interface through which the store reaches its log: append a batch, read from an
//! LSN, cut below an LSN. The local [`Wal`] implements it; a replicated log can stand in
//! (`StoreOptions::open_with_log`).

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::wal::{Lsn, Ticket, TruncateReport, Wal, WalStats};

/// A durable, ordered log of opaque records: what the store needs from the log it writes to.
///
/// Implemented by the local [`Wal`]; any crate can implement it (with [`Ticket::new`],
/// [`TruncateReport`] and `WalStats::default()` for the return types) and open a store over
/// it with [`crate::StoreOptions::open_with_log`]. The store keeps its snapshots and its lock
/// in its directory and everything else in the log, so the log must keep these promises; the
/// store's guarantees (docs/durability.md) hold only as far as they do:
///
/// - **LSNs** start at 1 and are contiguous: the first record ever gets 1 and each record gets
///   the previous one's LSN + 1, with no gaps and no reuse, also across a reopen and after
///   [`Log::truncate_before`]. The store calls [`Log::submit`] under its write lock and
///   checks that the batch starts at the LSN it expects; a log that skips one poisons the
///   store.
/// - **A batch is atomic**: after a crash or a failed write, all of a batch's records are read
///   back or none is. The store writes one change (e.g. a batch of mutations) as one batch.
/// - **Durable** means: once [`Log::wait_durable`]`(lsn)` returned `Ok`, every record up to
///   `lsn` survives whatever the log promises to survive (for the local log: a crash, and a
///   power loss under `Durability::Sync`), and is read back by every later
///   [`Log::replay`], also by a new instance over the same storage. The store acknowledges a
///   change to its caller only after that. An `Err` means "not known to be durable": the store
///   is then poisoned (it refuses further writes) and the change is not acknowledged.
/// - **Replay** returns, in LSN order and each exactly once, every record from `from` (or from
///   [`Log::first_lsn`], if later) up to the last one submitted, and returns how many it
///   passed to `f`. An error from `f` stops it and is returned as is.
/// - **Truncation** removes only records wholly below the LSN given (the store gives one just
///   past its newest snapshot); it may keep some of them (the local log removes whole segments
///   only), so [`Log::first_lsn`] may stay below the LSN given. It never removes a record at or
///   above it and never changes LSNs.
///
/// Methods take `&self` and may be called from several threads; the store calls `submit`
/// under one lock, so a log need not order concurrent submits itself.
pub trait Log: Send + Sync {
    /// Assigns contiguous LSNs to `payloads` (in order, the first one [`Log::next_lsn`]) and
    /// queues them as one atomic batch: after a crash all of them or none are read back. Does
    /// not wait for durability. Returns the range as a [`Ticket`] (from another crate:
    /// [`Ticket::new`]`(first, last)`).
    fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket>;
    /// Returns once every record up to `lsn` is durable (see the trait's docs); an error when
    /// that is not known, or when `lsn` was never submitted.
    fn wait_durable(&self, lsn: Lsn) -> Result<()>;
    /// Calls `f` with every record whose LSN is `from` or later, in order, and returns how
    /// many. After [`Log::truncate_before`], records below [`Log::first_lsn`] are not read.
    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64>;
    /// Removes what lies wholly below `lsn` (maybe less; never more) and says how much.
    fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport>;
    /// Makes everything submitted so far durable, whatever the log's durability mode.
    fn sync(&self) -> Result<()>;
    /// The LSN the next submitted record will get (1 for an empty log).
    fn next_lsn(&self) -> Lsn;
    /// The highest durable LSN (0 when none is). Never more than is durable: reads return a
    /// change without calling [`Log::wait_durable`] when its LSN is at or below this.
    fn durable_lsn(&self) -> Lsn;
    /// The lowest LSN still held ([`Log::next_lsn`] when the log holds none).
    fn first_lsn(&self) -> Lsn;
    /// Figures for statistics (`WalStats::default()` with the fields the log knows set).
    fn stats(&self) -> WalStats;
    /// Makes everything submitted durable and releases the log. Called once, by the store's
    /// close; no other method is called after it.
    fn close(&self) -> Result<()>;
    /// The local log, when this is it: a large import is written to a staging segment beside
    /// it (`wal::Staging`); any other log gets it as one ordinary batch.
    #[doc(hidden)]
    fn local_wal(&self) -> Option<&Wal> {
        None
    }
    /// True when [`Log::read_lsns`] reads single records cheaply (without a replay). The
    /// store then keeps only the positions of the events of histories not yet in a snapshot
    /// and reads them on demand; otherwise it keeps their bytes in memory. Defaults to false.
    fn reads_by_lsn(&self) -> bool {
        false
    }
    /// Keeps a copy of a snapshot beside the log, for a log that several machines share: a
    /// store opened on another machine (another directory) finds it through
    /// [`Log::fetch_snapshot`] and replays only what follows it. Called after the snapshot
    /// file at `path`, covering the records up to `lsn`, is durable in the store's directory,
    /// and before the log is cut below it: the store cuts the log only when this returned
    /// `Ok` (an error is logged; the snapshot stays local and the log uncut). The default
    /// keeps nothing: the local log lives in the store's directory beside its snapshots.
    fn keep_snapshot(&self, lsn: Lsn, path: &Path) -> Result<()> {
        let _ = (lsn, path);
        Ok(())
    }
    /// Writes the newest snapshot kept beside the log ([`Log::keep_snapshot`]) whose LSN is
    /// above `newer_than` into the new file `into`, durably, and returns its LSN; `None` when
    /// there is none. An open (also a read-only one) calls it before it loads its snapshots,
    /// with the newest LSN it has locally; the file is then checked (magic, version, CRCs)
    /// like any snapshot and a damaged one is passed over. An error is logged and the open
    /// goes on with what it has. The default has none.
    fn fetch_snapshot(&self, newer_than: Lsn, into: &Path) -> Result<Option<Lsn>> {
        let _ = (newer_than, into);
        Ok(None)
    }
    /// Keeps a settings file of the store (`name`, e.g. `kinds.json`: the per-kind admission
    /// rules) beside the log, for a log that several machines share: whichever machine opens
    /// the store next finds it through [`Log::fetch_setting`], so the rules follow the writer
    /// from machine to machine. Called before the store writes the file to its own directory
    /// and applies it: an error refuses the change, which then applies nowhere. The default
    /// keeps nothing: the local log lives beside the store's own copy.
    fn keep_setting(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let _ = (name, bytes);
        Ok(())
    }
    /// The settings file `name` kept beside the log ([`Log::keep_setting`]), at most
    /// `max_bytes` long (a longer one is an error, read no further); `None` when none is kept.
    /// Every open over this log calls it and, when it has one, uses it in place of the copy in
    /// its directory (a writable open also replaces that copy). An error fails the open: a
    /// store that cannot read its rules must not run tasks they would hold back. The default
    /// has none.
    fn fetch_setting(&self, name: &str, max_bytes: u64) -> Result<Option<Vec<u8>>> {
        let _ = (name, max_bytes);
        Ok(None)
    }
    /// Calls `f` with each record of `lsns` (written, and not below [`Log::first_lsn`]), in
    /// the order given. The default replays from the smallest one and picks them out, which
    /// is correct but costs a replay: a log that can do better overrides this and
    /// [`Log::reads_by_lsn`].
    fn read_lsns(&self, lsns: &[Lsn], f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        read_by_replay(self, lsns, f)
    }
}

/// [`Log::read_lsns`] through [`Log::replay`]: correct for any log, at the cost of a replay
/// from the smallest LSN asked for.
pub(crate) fn read_by_replay<L: Log + ?Sized>(
    log: &L,
    lsns: &[Lsn],
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<()> {
    let Some(&from) = lsns.iter().min() else {
        return Ok(());
    };
    let mut found: std::collections::HashMap<Lsn, Vec<u8>> = std::collections::HashMap::new();
    log.replay(from, &mut |lsn, bytes| {
        if lsns.contains(&lsn) {
            found.insert(lsn, bytes.to_vec());
        }
        Ok(())
    })?;
    for &lsn in lsns {
        let bytes = found.get(&lsn).ok_or_else(|| crate::Error::InvalidInput {
            at: Some("lsn".into()),
            reason: format!("the log does not hold LSN {lsn}"),
        })?;
        f(lsn, bytes)?;
    }
    Ok(())
}

/// Waits until a submitted batch is durable: through the local log's group commit, or
/// through the log's own `wait_durable` for a ticket made outside this crate.
pub(crate) fn wait(log: &dyn Log, ticket: Ticket) -> Result<()> {
    if !ticket.is_external() {
        return ticket.wait().map(|_| ());
    }
    if ticket.last_lsn() >= ticket.first_lsn() {
        log.wait_durable(ticket.last_lsn())?;
    }
    Ok(())
}

/// A caller-supplied log together with the store directory's lock, released when the log is
/// closed (the local log keeps its own lock in its directory instead).
pub(crate) struct LockedLog {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) lock: Mutex<Option<Box<dyn crate::wal::StorageLock>>>,
}

/// The lock file of a store opened over a caller-supplied log.
pub(crate) fn lock_path(dir: &Path) -> std::path::PathBuf {
    dir.join("LOCK")
}

impl Log for LockedLog {
    fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket> {
        self.log.submit(payloads)
    }
    fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.log.wait_durable(lsn)
    }
    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64> {
        self.log.replay(from, f)
    }
    fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport> {
        self.log.truncate_before(lsn)
    }
    fn sync(&self) -> Result<()> {
        self.log.sync()
    }
    fn next_lsn(&self) -> Lsn {
        self.log.next_lsn()
    }
    fn durable_lsn(&self) -> Lsn {
        self.log.durable_lsn()
    }
    fn first_lsn(&self) -> Lsn {
        self.log.first_lsn()
    }
    fn stats(&self) -> WalStats {
        self.log.stats()
    }
    fn reads_by_lsn(&self) -> bool {
        self.log.reads_by_lsn()
    }
    fn read_lsns(&self, lsns: &[Lsn], f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        self.log.read_lsns(lsns, f)
    }
    fn keep_snapshot(&self, lsn: Lsn, path: &Path) -> Result<()> {
        self.log.keep_snapshot(lsn, path)
    }
    fn fetch_snapshot(&self, newer_than: Lsn, into: &Path) -> Result<Option<Lsn>> {
        self.log.fetch_snapshot(newer_than, into)
    }
    fn keep_setting(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.log.keep_setting(name, bytes)
    }
    fn fetch_setting(&self, name: &str, max_bytes: u64) -> Result<Option<Vec<u8>>> {
        self.log.fetch_setting(name, max_bytes)
    }
    fn close(&self) -> Result<()> {
        let closed = self.log.close();
        // Released even when the close failed: the log is done either way.
        self.lock.lock().take();
        closed
    }
}

impl Log for Wal {
    fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket> {
        Wal::submit(self, payloads)
    }
    fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        Wal::wait_durable(self, lsn)
    }
    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64> {
        Wal::replay(self, from, f)
    }
    fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport> {
        Wal::truncate_before(self, lsn)
    }
    fn sync(&self) -> Result<()> {
        Wal::sync(self)
    }
    fn next_lsn(&self) -> Lsn {
        Wal::next_lsn(self)
    }
    fn durable_lsn(&self) -> Lsn {
        Wal::durable_lsn(self)
    }
    fn first_lsn(&self) -> Lsn {
        Wal::first_lsn(self)
    }
    fn stats(&self) -> WalStats {
        Wal::stats(self)
    }
    fn close(&self) -> Result<()> {
        Wal::close(self)
    }
    fn local_wal(&self) -> Option<&Wal> {
        Some(self)
    }
    fn reads_by_lsn(&self) -> bool {
        true
    }
    fn read_lsns(&self, lsns: &[Lsn], f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        match Wal::read_lsns(self, lsns, f) {
            // A segment damaged where a snapshot covers it (passed over at open) cannot be
            // walked by position from its start; a replay passes over the damage. `f` has not
            // been called: the local log reads every record before handing any over.
            Err(e) if e.is_corruption() => {
                tracing::warn!(error = %e, "reading records by position failed; reading by replay");
                read_by_replay(self, lsns, f)
            }
            other => other,
        }
    }
}
