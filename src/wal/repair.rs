//! `repair`: the explicit, opt-in tool that cuts a damaged log back to its last good record.
//! Nothing is ever deleted silently: the damaged bytes are copied to `<dir>/quarantine/` (and
//! fsynced there) before the log is cut.

use std::path::{Path, PathBuf};

use super::Lsn;
use super::recovery::lock_path;
use super::storage::{OpenMode, StdStorage, Storage};
use super::verify::inspect;
use crate::error::{Error, Result};

/// Where `repair` cut the log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CutPoint {
    /// The segment cut (truncated, or removed when the offset is 0).
    pub file: PathBuf,
    /// The byte offset it was cut at.
    pub offset: u64,
    /// The last record kept (0 if none).
    pub last_good_lsn: Lsn,
}

/// What `repair` did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RepairReport {
    /// True if nothing was changed on disk.
    pub dry_run: bool,
    /// `None` when the log has no damage.
    pub cut: Option<CutPoint>,
    /// Bytes copied to quarantine (trailing zeros of preallocated space excluded).
    pub bytes_quarantined: u64,
    /// Files written to quarantine (or that would be).
    pub files_quarantined: Vec<PathBuf>,
    /// Segments removed from the log (whole).
    pub segments_removed: Vec<PathBuf>,
}

/// Finds the last good record of the log in `dir`, copies everything after it to
/// `<dir>/quarantine/`, and cuts the log there. Takes the write lock.
pub fn repair(dir: &Path, dry_run: bool) -> Result<RepairReport> {
    repair_with_storage(&StdStorage, dir, dry_run)
}

/// [`repair`] over any storage.
pub fn repair_with_storage(
    storage: &dyn Storage,
    dir: &Path,
    dry_run: bool,
) -> Result<RepairReport> {
    let lock_file = lock_path(dir);
    let _lock = super::lock::acquire(storage, dir, &lock_file, std::time::Duration::ZERO)?;
    let found = inspect(storage, dir, false)?;
    let mut report = RepairReport {
        dry_run,
        ..Default::default()
    };
    let Some((index, offset, last_good_lsn)) = found.damage else {
        return Ok(report);
    };
    let quarantine = dir.join("quarantine");
    let mut plan: Vec<(PathBuf, u64, PathBuf)> = Vec::new();
    for (i, (_, path)) in found.segments.iter().enumerate().skip(index) {
        let from = if i == index { offset } else { 0 };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut target = quarantine.join(format!("{name}.from-{from}"));
        let mut n = 1;
        while storage.exists(&target) {
            target = quarantine.join(format!("{name}.from-{from}.{n}"));
            n += 1;
        }
        plan.push((path.clone(), from, target));
    }
    let seg_path = plan.first().map(|p| p.0.clone()).unwrap_or_default();
    report.cut = Some(CutPoint {
        file: seg_path,
        offset,
        last_good_lsn,
    });
    if !dry_run {
        // The quarantine directory's entry (in the log directory) must be durable before
        // anything is cut, or a power cut could keep the cut and lose the copy.
        super::storage::create_dir_durable(storage, &quarantine)
            .map_err(|e| Error::io("create directory", &quarantine, e))?;
    }
    for (path, from, target) in &plan {
        let bytes = storage
            .open(path, OpenMode::Read)
            .and_then(|f| f.read_all())
            .map_err(|e| Error::io("read", path, e))?;
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let from = usize::try_from(*from).unwrap_or(usize::MAX);
        let damaged = bytes.get(from..end.max(from)).unwrap_or_default();
        report.bytes_quarantined += damaged.len() as u64;
        report.files_quarantined.push(target.clone());
        if !dry_run {
            let io = |op| move |e| Error::io(op, target, e);
            let f = storage
                .open(target, OpenMode::CreateNew)
                .map_err(io("create quarantine file"))?;
            f.write_all_at(damaged, 0)
                .map_err(io("write quarantine file"))?;
            f.sync_all().map_err(io("fsync quarantine file"))?;
        }
    }
    tracing::warn!(dir = %dir.display(), dry_run, ?report.cut, bytes = report.bytes_quarantined, "repairing the log");
    if dry_run {
        return Ok(report);
    }
    storage
        .sync_dir(&quarantine)
        .map_err(|e| Error::io("fsync directory", &quarantine, e))?;
    cut(storage, dir, &plan, &mut report)?;
    Ok(report)
}

/// Truncates the damaged segment (or removes it when cut at 0), removes later ones, fsyncs.
fn cut(
    storage: &dyn Storage,
    dir: &Path,
    plan: &[(PathBuf, u64, PathBuf)],
    report: &mut RepairReport,
) -> Result<()> {
    for (i, (path, from, _)) in plan.iter().enumerate() {
        if i == 0 && *from > 0 {
            let f = storage
                .open(path, OpenMode::ReadWrite)
                .map_err(|e| Error::io("open", path, e))?;
            f.set_len(*from)
                .map_err(|e| Error::io("truncate", path, e))?;
            f.sync_all().map_err(|e| Error::io("fsync", path, e))?;
        } else {
            storage
                .remove_file(path)
                .map_err(|e| Error::io("remove segment", path, e))?;
            report.segments_removed.push(path.clone());
        }
    }
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Takes the log's write lock for a maintenance step.
fn lock(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn super::storage::StorageLock>> {
    let lock_file = lock_path(dir);
    super::lock::acquire(storage, dir, &lock_file, std::time::Duration::ZERO)
}

/// Moves every whole segment whose first LSN is below `keep_first` to `<dir>/quarantine/`
/// (rename, then fsync both directories), for segments whose records a snapshot holds. A
/// segment starting at `keep_first` must exist, so the log left behind starts there. Returns
/// (from, to) per segment; with `dry_run` nothing moves.
pub fn quarantine_before(
    storage: &dyn Storage,
    dir: &Path,
    keep_first: Lsn,
    dry_run: bool,
) -> Result<Vec<(PathBuf, PathBuf)>> {
    let _lock = lock(storage, dir)?;
    let segs = super::recovery::list_segments(storage, dir)?;
    if !segs.iter().any(|(first, _)| *first == keep_first) {
        return Err(Error::InvalidInput {
            at: Some("keep_first".into()),
            reason: format!("no segment of {} starts at LSN {keep_first}", dir.display()),
        });
    }
    let quarantine = dir.join("quarantine");
    let mut moves = Vec::new();
    for (_, path) in segs.iter().filter(|(first, _)| *first < keep_first) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut target = quarantine.join(format!("{name}.covered"));
        let mut n = 1;
        while storage.exists(&target) {
            target = quarantine.join(format!("{name}.covered.{n}"));
            n += 1;
        }
        moves.push((path.clone(), target));
    }
    if dry_run || moves.is_empty() {
        return Ok(moves);
    }
    super::storage::create_dir_durable(storage, &quarantine)
        .map_err(|e| Error::io("create directory", &quarantine, e))?;
    // NOTE: oldest first, so that an interruption leaves the log a contiguous run of segments
    // (what is left starts at the first segment not yet moved).
    for (from, to) in &moves {
        storage
            .rename(from, to)
            .map_err(|e| Error::io("move to quarantine", from, e))?;
    }
    storage
        .sync_dir(&quarantine)
        .map_err(|e| Error::io("fsync directory", &quarantine, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    tracing::warn!(dir = %dir.display(), segments = moves.len(), "moved segments a snapshot covers to quarantine");
    Ok(moves)
}

/// Starts the log again at LSN `next` with a new, empty segment chained to the last one: after
/// a cut below a snapshot at `next - 1`, the records between live in that snapshot.
pub fn resume_at(
    storage: &dyn Storage,
    dir: &Path,
    next: Lsn,
    segment_bytes_max: u64,
) -> Result<PathBuf> {
    let _lock = lock(storage, dir)?;
    let segs = super::recovery::list_segments(storage, dir)?;
    let prev = segs.last().map_or(0, |(first, _)| *first);
    if prev >= next {
        return Err(Error::InvalidInput {
            at: Some("next".into()),
            reason: format!("the last segment already starts at LSN {prev}, not below {next}"),
        });
    }
    let header = super::segment::SegmentHeader {
        first_lsn: next,
        prev_first_lsn: prev,
        segment_bytes_max,
    };
    let active = super::segment::writer::create_segment(storage, dir, header, false)?;
    Ok(active.path)
}

/// Every record of the log in `dir` with an LSN above `above` that can still be read, found
/// frame by frame at every offset (past damage too), once per LSN, in LSN order. For telling
/// what a cut would lose.
pub fn records_above(storage: &dyn Storage, dir: &Path, above: Lsn) -> Result<Vec<(Lsn, Vec<u8>)>> {
    let mut out = std::collections::BTreeMap::new();
    for (_, path) in super::recovery::list_segments(storage, dir)? {
        let bytes = storage
            .open(&path, OpenMode::Read)
            .and_then(|f| f.read_all())
            .map_err(|e| Error::io("read", &path, e))?;
        let mut p = super::segment::SEGMENT_HEADER_LEN;
        while p + super::frame::FRAME_HEADER_LEN <= bytes.len() {
            // A frame's first 8 bytes hold a non-zero byte: skip zero runs (preallocated
            // space) rather than trying every offset in them.
            let Some(q) = bytes.get(p..).and_then(|r| r.iter().position(|&b| b != 0)) else {
                break;
            };
            p = p.max((p + q).saturating_sub(7));
            match bytes.get(p..).map(super::frame::decode) {
                Some(Ok((f, n))) if f.lsn > above => {
                    out.entry(f.lsn).or_insert_with(|| f.payload.to_vec());
                    p += n;
                }
                Some(Ok((_, n))) => p += n,
                _ => p += 1,
            }
        }
    }
    Ok(out.into_iter().collect())
}
