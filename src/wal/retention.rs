//! `truncate_before`: dropping whole old segments.

use super::group_commit::{Core, SegmentMeta};
use super::storage::OpenMode;
use super::{Lsn, TruncateReport};
use crate::error::{Error, Result};

/// Removes every segment all of whose records are below `lsn` (never the active, last one),
/// oldest first, fsyncing the directory after each removal.
///
/// NOTE: one at a time, each made durable before the next, so that whatever a crash or a
/// failed unlink leaves is always a suffix of the chain: a file system that persists unlinks
/// out of order could otherwise keep an older segment and lose a newer one, a hole at the
/// front that `check_chain` refuses to open. A segment leaves the in-memory list only once
/// its removal succeeded, so the list never forgets a file that is still on disk.
///
/// NOTE: the state mutex is held across the unlinks and directory fsyncs (appenders wait):
/// a replay that finds a planned segment gone checks the list under that mutex to tell
/// "compacted away" from an I/O failure, so list and directory must change together.
/// Truncation is rare (after snapshots) and removes few segments.
pub fn truncate_before(core: &Core, lsn: Lsn) -> Result<TruncateReport> {
    if core.options.read_only {
        return Err(Error::ReadOnly);
    }
    let mut st = core.state.lock();
    if let Some(e) = st.refuse() {
        return Err(e);
    }
    let mut report = TruncateReport::default();
    // Segment 0 holds LSNs first(0)..first(1); it can go when first(1) <= lsn.
    while let Some(seg) = st
        .segments
        .get(1)
        .filter(|next| next.first_lsn <= lsn)
        .and_then(|_| st.segments.first().cloned())
    {
        let len = remove_segment(core, &seg, lsn)?;
        st.segments.remove(0);
        st.log_bytes = st.log_bytes.saturating_sub(len);
        report.segments_removed += 1;
        report.bytes_removed += len;
    }
    Ok(report)
}

/// Unlinks one segment and fsyncs the directory. Returns the bytes it held.
fn remove_segment(core: &Core, seg: &SegmentMeta, lsn: Lsn) -> Result<u64> {
    let len = core
        .storage
        .open(&seg.path, OpenMode::Read)
        .and_then(|f| f.len())
        .unwrap_or(0);
    core.storage
        .remove_file(&seg.path)
        .map_err(|e| Error::io("remove segment", &seg.path, e))?;
    core.storage
        .sync_dir(&core.dir)
        .map_err(|e| Error::io("fsync directory", &core.dir, e))?;
    tracing::debug!(segment = %seg.path.display(), "removed segment below LSN {lsn}");
    Ok(len)
}
