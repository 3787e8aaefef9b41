//! Reading the log back: `replay` and `read_from`.
//!
//! A writer maps each segment (memmap2 through `StorageFile::map_all`) and walks it in place:
//! no per-record allocation, and the payload handed to the callback borrows the map. Read-only
//! handles copy each segment instead (`read_all`) because they hold no lock, and a writer in
//! another process could cut a torn tail under a map (SIGBUS). See docs/benchmarks.md for the
//! map-versus-copy measurement.

use super::Lsn;
use super::group_commit::{Core, Need, SegmentMeta};
use super::recovery::read_header;
use super::segment::{ScanSpec, TailPolicy, scan_segment};
use super::storage::{FileBytes, OpenMode};
use crate::error::{Error, Result};

/// The segments to read for records from `from`, and the LSN to stop before.
fn plan(core: &Core, from: Lsn) -> Result<(Vec<SegmentMeta>, Lsn)> {
    let (limit, segments) = {
        let st = core.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        (st.next_lsn, st.segments.clone())
    };
    let limit = if core.options.read_only {
        limit
    } else {
        // Everything submitted must be in the files before we map them.
        core.drive(limit - 1, Need::Written)?;
        limit
    };
    let start = segments
        .iter()
        .rposition(|s| s.first_lsn <= from)
        .unwrap_or(0);
    Ok((segments.get(start..).unwrap_or_default().to_vec(), limit))
}

/// Calls `visit` for each record with LSN in `from..limit_cap`, in order. Returns the count.
pub fn replay_range(
    core: &Core,
    from: Lsn,
    limit_cap: Lsn,
    visit: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<u64> {
    let (segments, limit) = plan(core, from)?;
    let limit = limit.min(limit_cap);
    let mut delivered = 0u64;
    let mut expected: Option<Lsn> = None;
    let count = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        if expected.is_some_and(|e| e >= limit) {
            break;
        }
        let path = &seg.path;
        let file = core
            .storage
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", path, e))?;
        let header = read_header(&*file, path, seg.first_lsn)?;
        if let Some(e) = expected
            && header.first_lsn != e
        {
            return Err(Error::corrupt(
                path,
                Some(16),
                Some(e),
                format!(
                    "gap in LSNs: the previous segment ends before LSN {e} but this one starts at {}",
                    header.first_lsn
                ),
            ));
        }
        let bytes = if core.options.read_only {
            FileBytes::Owned(
                file.read_all()
                    .map_err(|e| Error::io("read segment", path, e))?,
            )
        } else {
            file.map_all()
                .map_err(|e| Error::io("map segment", path, e))?
        };
        let last = i + 1 == count;
        let policy = if last {
            TailPolicy::Tolerate
        } else {
            TailPolicy::Strict
        };
        let spec = ScanSpec {
            file: path,
            first_lsn: header.first_lsn,
            policy,
            from,
            limit,
        };
        let end = scan_segment(&bytes, &spec, |lsn, payload| {
            delivered += 1;
            visit(lsn, payload)
        })?;
        if last && end.next_lsn < limit {
            return Err(Error::corrupt(
                path,
                Some(end.data_end),
                Some(end.next_lsn),
                format!("the log ends before LSN {limit}, which was written"),
            ));
        }
        expected = Some(end.next_lsn);
    }
    Ok(delivered)
}
