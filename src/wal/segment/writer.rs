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
    if preallocate {
        file.preallocate(header.segment_bytes_max)
            .map_err(io("preallocate segment"))?;
    }
    file.sync_all().map_err(io("fsync new segment"))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    tracing::debug!(segment = %path.display(), first_lsn = header.first_lsn, "created segment");
    Ok(ActiveSegment {
        file,
        first_lsn: header.first_lsn,
        path,
    })
}
