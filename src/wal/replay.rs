//! Reading the log back: `replay` and `read_from`.
//!
//! A writer maps each sealed segment (memmap2 through `StorageFile::map_all`) and walks it in
//! place: no per-record allocation, and the payload handed to the callback borrows the map. The
//! last (active) segment is copied up to its data end, never mapped. Read-only handles copy
//! each segment instead (`read_all`) because they hold no lock, and a writer in
//! another process could cut a torn tail under a map (SIGBUS). See docs/benchmarks.md for the
//! map-versus-copy measurement.

use super::Lsn;
use super::group_commit::{Core, Need, SegmentMeta};
use super::recovery::read_header;
use super::segment::{
    CoveredScan, SEGMENT_HEADER_LEN, ScanSpec, TailPolicy, Vouched, scan_segment_covered, vouch,
};
use super::storage::FileBytes;
use crate::error::{Error, Result};

/// The segments to read for records from `from`, the LSN to stop before, and the segment and
/// offset at which the next frame will land (the end of the active segment's data).
///
/// NOTE: the segment list is taken *after* driving the buffer to the files: a submitted batch
/// may land in a segment the leader creates only when it writes it (a planned roll), and a
/// list copied before that write would make the old segment look like the last one and the
/// log look short.
fn plan(core: &Core, from: Lsn) -> Result<(Vec<SegmentMeta>, Lsn, (Lsn, u64))> {
    let limit = {
        let st = core.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        st.next_lsn
    };
    if !core.options.read_only {
        // Everything submitted must be in the files before we map them.
        core.drive(limit.saturating_sub(1), Need::Written)?;
    }
    let st = core.state.lock();
    // NOTE: `from == 0` (no LSN) asks for whatever the log still holds, so it is not a skip.
    if let Some(first) = st.segments.first().map(|s| s.first_lsn)
        && from != 0
        && from < first
    {
        return Err(compacted(from, first));
    }
    let start = st
        .segments
        .iter()
        .rposition(|s| s.first_lsn <= from)
        .unwrap_or(0);
    Ok((
        st.segments.get(start..).unwrap_or_default().to_vec(),
        limit,
        st.planned_end(),
    ))
}

/// The error for a replay that asks for records `truncate_before` removed.
///
/// NOTE: the store's subscriptions produce the same text; keep the two identical.
fn compacted(from: Lsn, first: Lsn) -> Error {
    Error::InvalidInput {
        at: Some("from".into()),
        reason: format!("LSN {from} was compacted away; the log starts at LSN {first}"),
    }
}

/// Opens a planned segment (through its pinned handle on a read-only log). A segment
/// `truncate_before` unlinked after `plan` copied the list is reported as compacted away, not
/// as an I/O failure.
fn open_planned(
    core: &Core,
    seg: &SegmentMeta,
    from: Lsn,
) -> Result<std::sync::Arc<dyn super::storage::StorageFile>> {
    let path = &seg.path;
    seg.open(&*core.storage).map_err(|e| {
        let first = {
            let st = core.state.lock();
            st.segments.first().map_or(st.next_lsn, |s| s.first_lsn)
        };
        if e.kind() == std::io::ErrorKind::NotFound && seg.first_lsn < first {
            compacted(from, first)
        } else {
            Error::io("open segment", path, e)
        }
    })
}

/// Calls `visit` for each record with LSN in `from..limit_cap`, in order. Returns the count.
pub fn replay_range(
    core: &Core,
    from: Lsn,
    limit_cap: Lsn,
    visit: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<u64> {
    let (segments, limit, active) = plan(core, from)?;
    let limit = limit.min(limit_cap);
    let mut delivered = 0u64;
    let mut expected: Option<Lsn> = None;
    let count = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        if expected.is_some_and(|e| e >= limit) {
            break;
        }
        let path = &seg.path;
        let file = open_planned(core, seg, from)?;
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
        let last = i + 1 == count;
        // A writer's open noted where this segment's batches begin: start at the last mark at
        // or below `from` (never for `from` at or before the segment's start, which reads it
        // whole anyway). Bytes before the mark are neither read nor checked again.
        let resume = seg
            .marks
            .as_ref()
            .filter(|_| !core.options.read_only && from > header.first_lsn)
            .and_then(|m| m.at_or_below(from));
        let skip = resume.map_or(0, |(offset, _)| offset as u64);
        let bytes = if core.options.read_only {
            FileBytes::Owned(
                file.read_all()
                    .map_err(|e| Error::io("read segment", path, e))?,
            )
        } else if last {
            // IMPORTANT: the last segment may be the active one, still written: copy it up to
            // where the next frame lands, never map it (see `storage::map_file`).
            let end = if seg.first_lsn == active.0 {
                active.1
            } else {
                u64::MAX
            };
            FileBytes::Owned(
                file.read_range(skip, end)
                    .map_err(|e| Error::io("read segment", path, e))?,
            )
        } else {
            file.map_all()
                .map_err(|e| Error::io("map segment", path, e))?
        };
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
            // NOTE: the scan stops at `limit`, before the zero tail, whenever the log is whole.
            zeros_from: u64::MAX,
            resume,
            marks: None,
            vouched: None,
        };
        let mut count = |lsn, payload: &[u8]| {
            delivered += 1;
            visit(lsn, payload)
        };
        let start = resume.map_or(SEGMENT_HEADER_LEN, |(offset, _)| offset);
        let scan = if bytes.len().saturating_sub(start) >= VOUCH_MIN_BYTES {
            scan_vouched(&bytes, &spec, start, core.covered_lsn, &mut count)?
        } else {
            scan_segment_covered(&bytes, &spec, core.covered_lsn, &mut count)?
        };
        if let Some(damage) = scan.skipped {
            let mut seen = core.covered_seen.lock();
            if !seen.iter().any(|(p, _)| p == path) {
                seen.push((path.clone(), damage.to_string()));
            }
        }
        let end = scan.end;
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

/// A replay that reads at least this much of a segment has its CRCs checked on a second
/// thread (less is not worth a thread).
const VOUCH_MIN_BYTES: usize = 1 << 20;

/// [`scan_segment_covered`] with the frames' CRCs checked ahead on a second thread
/// ([`vouch`]): the scan then only applies what was hashed (on the development VM's two cores
/// the CRCs were about a twentieth of a log open; docs/benchmarks.md). Without a thread
/// (spawning failed) the scan hashes every frame itself, as it would anyway past what was
/// vouched for.
fn scan_vouched(
    bytes: &[u8],
    spec: &ScanSpec<'_>,
    start: usize,
    covered: Lsn,
    visit: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<CoveredScan> {
    let vouched = Vouched::new(start);
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("tasklog-wal-vouch".into())
            .spawn_scoped(scope, || vouch(bytes, &vouched));
        let spec = ScanSpec {
            vouched: helper.is_ok().then_some(&vouched),
            ..*spec
        };
        let scan = scan_segment_covered(bytes, &spec, covered, visit);
        vouched.stop();
        scan
    })
}
