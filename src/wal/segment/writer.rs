//! Creating segment files, and the active segment the group-commit leader writes to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::wal::Lsn;
use crate::wal::storage::{OpenMode, Storage, StorageFile};

use super::header::{SegmentHeader, segment_path};

/// The segment being appended to. Only the group-commit leader touches it.
#[derive(Debug)]
pub struct ActiveSegment {
    /// The open file.
    pub file: Arc<dyn StorageFile>,
    /// Its first LSN.
    pub first_lsn: Lsn,
    /// Its path.
    pub path: PathBuf,
    /// The file's length as last preallocated (0 when not preallocating): a write ending
    /// below it needs no look at the file. Asking the file system for the length before every
    /// durable write (one `statx`) cost a single durable writer about a third of its rate on
    /// the development VM (docs/benchmarks.md, "W1: one stat per append").
    pub reserved_to: u64,
}

/// Creates a segment: header written, space preallocated if asked, file fsynced, then the
/// directory fsynced so the new name survives a power cut.
pub fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    header: SegmentHeader,
    preallocate: bool,
) -> Result<ActiveSegment> {
    let path = segment_path(dir, header.first_lsn);
    let io = |op: &'static str| {
        let p = path.clone();
        move |e| Error::io(op, p, e)
    };
    let file: Arc<dyn StorageFile> = Arc::from(
        storage
            .open(&path, OpenMode::CreateNew)
            .map_err(io("create segment"))?,
    );
    file.write_all_at(&header.encode(), 0)
        .map_err(io("write segment header"))?;
    let reserved_to = if preallocate {
        reserve(&*file, 0, header.segment_bytes_max).map_err(io("preallocate segment"))?
    } else {
        0
    };
    file.sync_all().map_err(io("fsync new segment"))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    tracing::debug!(segment = %path.display(), first_lsn = header.first_lsn, "created segment");
    Ok(ActiveSegment {
        file,
        first_lsn: header.first_lsn,
        path,
        reserved_to,
    })
}

/// The space a segment is first preallocated with; it doubles as the data reaches its end, up
/// to `segment_bytes_max`. Small, so that a new store costs well under 1 MiB of disk and works
/// on a volume of a few MiB; doubling keeps the number of size changes (each one a metadata
/// flush in the next fdatasync) logarithmic in the segment size.
pub const PREALLOCATE_BYTES_FIRST: u64 = 256 << 10;

/// Makes sure `file` is preallocated past `end`: to twice its length (at least
/// [`PREALLOCATE_BYTES_FIRST`], at most `max`, never less than `end`). When the volume has
/// no room for that (`StorageFull`), preallocates nothing more and lets the write itself decide:
/// a store on a nearly full volume keeps working until the data really does not fit.
/// Returns the length up to which the file is preallocated now (see the notes inside).
pub fn reserve(file: &dyn StorageFile, end: u64, max: u64) -> std::io::Result<u64> {
    let len = file.len()?;
    if end < len {
        return Ok(len);
    }
    let target = len
        .saturating_mul(2)
        .max(PREALLOCATE_BYTES_FIRST)
        .min(max)
        .max(end);
    match file.preallocate(target) {
        // NOTE: also where the system cannot preallocate (the file then grows by its writes):
        // the next look at the file is due when the data passes `target`, not at every write.
        Ok(()) => Ok(target),
        // NOTE: a failed fallocate may have extended the file partly, with zeros; readers
        // treat zeros after the data as unwritten space, so that is harmless. The old length
        // is returned, so the next write tries again (space may have been freed by then).
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            tracing::debug!(target, error = %e, "no room to preallocate; the segment grows by its writes");
            Ok(len)
        }
        Err(e) => Err(e),
    }
}
