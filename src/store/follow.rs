//! A read-only store that follows a log another process writes: a replica (issue #22, warm
//! standbys of `tasklog serve --jetstream`).

use super::Store;
use crate::error::{Error, Result};

impl Store {
    /// Applies the records the log gained since this store was opened (or last followed) and
    /// returns the last LSN applied; readers see the new state at once.
    ///
    /// For a read-only store over a caller-supplied log (`StoreOptions::read_only` with
    /// `open_with_log`) that another process writes: a replica. Errors:
    /// - `InvalidInput` for a writable store (it writes its own log) or one over the local
    ///   log (reopen it instead);
    /// - `Corrupt` when the log no longer holds the record after the last one applied (the
    ///   writer cut it below a newer snapshot while this replica lagged): reopen the replica,
    ///   which starts from that snapshot. Nothing is applied then.
    ///
    /// Records are read outside the state lock and applied under it, one by one in LSN order,
    /// so a failure part way leaves the state as of the last record applied.
    pub fn follow(&self) -> Result<u64> {
        if !self.inner.options.read_only || self.inner.log.local_wal().is_some() {
            return Err(Error::InvalidInput {
                at: Some("Store::follow".into()),
                reason: "only a read-only store over a caller-supplied log follows it; a writer writes its own log and a local log is followed by reopening".into(),
            });
        }
        if self.is_closed() {
            return Err(Error::Closed);
        }
        // One follower at a time: two would read the same records and the second would find
        // them applied (harmless, but twice the reading).
        let _one = self.inner.follow_lock.lock();
        let from = self.inner.state.read_recursive().applied_lsn + 1;
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        self.inner.log.replay(from, &mut |lsn, bytes| {
            records.push((lsn, bytes.to_vec()));
            Ok(())
        })?;
        let Some(&(first, _)) = records.first() else {
            return Ok(from - 1);
        };
        if first != from {
            return Err(Error::corrupt(
                self.inner.dir.clone(),
                None,
                Some(from),
                format!(
                    "the log now starts at LSN {first}, past LSN {} this replica applied last: it fell behind a cut below a newer snapshot; reopen it",
                    from - 1
                ),
            ));
        }
        let mut st = self.inner.state.write();
        for (lsn, bytes) in &records {
            st.apply_record(*lsn, bytes)?;
        }
        Ok(st.applied_lsn)
    }
}
