//! `truncate_before`: dropping whole old segments.

use super::group_commit::Core;
use super::storage::OpenMode;
use super::{Lsn, TruncateReport};
use crate::error::{Error, Result};

/// Removes every segment all of whose records are below `lsn` (never the active, last one),
/// then fsyncs the directory so the removals are durable.
pub fn truncate_before(core: &Core, lsn: Lsn) -> Result<TruncateReport> {
    if core.options.read_only {
        return Err(Error::ReadOnly);
    }
    let mut st = core.state.lock();
    if let Some(e) = st.refuse() {
        return Err(e);
    }
    // Segment i holds LSNs first(i)..first(i+1); it can go when first(i+1) <= lsn.
    let removable = st
        .segments
        .windows(2)
        .take_while(|w| w.get(1).is_some_and(|n| n.first_lsn <= lsn))
        .count();
    let mut report = TruncateReport::default();
    for seg in st.segments.drain(..removable).collect::<Vec<_>>() {
        let len = core
            .storage
            .open(&seg.path, OpenMode::Read)
            .and_then(|f| f.len())
            .unwrap_or(0);
        core.storage
            .remove_file(&seg.path)
            .map_err(|e| Error::io("remove segment", &seg.path, e))?;
        tracing::debug!(segment = %seg.path.display(), "removed segment below LSN {lsn}");
        report.segments_removed += 1;
        report.bytes_removed += len;
    }
    st.log_bytes = st.log_bytes.saturating_sub(report.bytes_removed);
    drop(st);
    if report.segments_removed > 0 {
        core.storage
            .sync_dir(&core.dir)
            .map_err(|e| Error::io("fsync directory", &core.dir, e))?;
    }
    Ok(report)
}
