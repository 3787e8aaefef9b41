//! The narrow interface through which the store reaches its log: append a batch, read from an
//! LSN, cut below an LSN. The local [`Wal`] implements it; a replicated log could stand in.

use crate::error::Result;
use crate::wal::{Lsn, Ticket, TruncateReport, Wal, WalStats};

/// A durable, ordered log of opaque records.
pub trait Log: Send + Sync {
    /// Assigns contiguous LSNs to `payloads` (in order) and queues them as one atomic batch:
    /// after a crash all of them or none are read back. Does not wait for durability.
    fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket>;
    /// Waits until every record up to `lsn` is acknowledged under the log's durability mode.
    fn wait_durable(&self, lsn: Lsn) -> Result<()>;
    /// Calls `f` with every record whose LSN is `from` or later, in order.
    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64>;
    /// Removes what lies wholly below `lsn`.
    fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport>;
    /// Forces everything queued onto stable storage.
    fn sync(&self) -> Result<()>;
    /// The LSN the next record will get.
    fn next_lsn(&self) -> Lsn;
    /// The highest acknowledged LSN.
    fn durable_lsn(&self) -> Lsn;
    /// The lowest LSN still held.
    fn first_lsn(&self) -> Lsn;
    /// Figures for statistics.
    fn stats(&self) -> WalStats;
    /// Flushes and releases the log.
    fn close(&self) -> Result<()>;
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
}
