//! Staging segments: a large atomic batch written beside the log, then made live by one rename.
//!
//! A [`Staging`] is an ordinary segment file (same header, same frames, each record a lone
//! record, flags `0b11`) named `<first_lsn as 20 digits>.seg.staging` in the log directory.
//! The log ignores every name that is not `<20 digits>.seg` (docs/format.md, "Directory
//! layout"), so until it is renamed the file is not part of the log, whatever it holds: a
//! crash while staging leaves the log exactly as it was.
//!
//! [`Staging::commit`] makes it live: fsync the staging file; under the log's mutex (no
//! submit, no leader can run meanwhile) seal the active segment as a roll does (fdatasync);
//! rename `….seg.staging` → `….seg`; fsync the directory; create the next active segment
//! after it. The rename is the one atomic step (docs/format.md, "Assumptions about media").
//! Memory stays bounded: records are buffered up to [`STAGING_BUFFER_BYTES`] and written.
//!
//! IMPORTANT: the staging file must be synced *before* the rename. Renamed first, a power cut
//! could keep the new name with a torn or zero tail in a segment that is no longer the last
//! one: corruption under the format's invariants, or a half-present batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::frame::{self, FLAGS_SINGLE, RECORD_BYTES_MAX};
use super::group_commit::{Core, Need, SegmentMeta};
use super::segment::header::segment_path;
use super::segment::writer::create_segment;
use super::segment::{SEGMENT_HEADER_LEN, SegmentHeader};
use super::storage::{OpenMode, Storage, StorageFile};
use super::{Lsn, Wal};
use crate::error::{Error, Result};

/// Suffix of a staging segment's file name (after the segment's own `.seg`).
pub const STAGING_SUFFIX: &str = ".staging";

/// Encoded frames buffered before they are written to the staging file. 1 MiB, as the log's
/// own buffer (`group_commit::BUFFER_FLUSH_BYTES`, where the reason is measured).
pub const STAGING_BUFFER_BYTES: usize = 1 << 20;

/// The staging file name of a segment whose first LSN is `first_lsn`.
pub fn staging_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    let mut name = segment_path(dir, first_lsn).into_os_string();
    name.push(STAGING_SUFFIX);
    PathBuf::from(name)
}

/// True for a file name of the form `<20 digits>.seg.staging`.
pub fn is_staging_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(STAGING_SUFFIX))
        .is_some_and(|seg| super::segment::parse_segment_name(Path::new(seg)).is_some())
}

/// Deletes every leftover staging file in `dir` (a crash while staging, or a commit that
/// failed before its rename): never part of the log, so never read. Logged with its size.
/// Called by a writer's open, under the log's lock; the directory is fsynced after.
pub fn remove_leftovers(storage: &dyn Storage, dir: &Path) -> Result<usize> {
    let entries = storage
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut removed = 0;
    for path in entries.into_iter().filter(|p| is_staging_name(p)) {
        let bytes = storage
            .open(&path, OpenMode::Read)
            .and_then(|f| f.len())
            .unwrap_or(0);
        storage
            .remove_file(&path)
            .map_err(|e| Error::io("remove leftover staging segment", &path, e))?;
        tracing::warn!(
            file = %path.display(),
            bytes,
            "removed a staging segment left by an interrupted import (it was never part of the log)"
        );
        removed += 1;
    }
    if removed > 0 {
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(removed)
}

/// A batch of records being written to a staging segment. Dropped without
/// [`Staging::commit`], its file is deleted and the log is unchanged.
#[derive(Debug)]
pub struct Staging {
    core: Arc<Core>,
    file: Option<Arc<dyn StorageFile>>,
    path: PathBuf,
    header: SegmentHeader,
    /// The first LSN of the active segment when the staging began. Equal to `first_lsn`
    /// when that segment holds no record: the staged segment then takes its place (the
    /// rename replaces the empty file) rather than follow it under the same name.
    active_first_lsn: Lsn,
    /// LSN the next appended record gets.
    next_lsn: Lsn,
    /// Where the next write lands in the file.
    offset: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Starts a staging segment at the log's next LSN (see the module docs). The records
    /// appended to it become part of the log all at once, at [`Staging::commit`], and only
    /// if no other record was submitted to the log meanwhile (the caller keeps other writers
    /// out; the store holds its write lock).
    pub fn begin_staging(&self) -> Result<Staging> {
        let core = &self.core;
        if core.options.read_only {
            return Err(Error::ReadOnly);
        }
        let (first_lsn, active_first_lsn, prev_first_lsn) = {
            let st = core.state.lock();
            if let Some(e) = st.refuse() {
                return Err(e);
            }
            let active = st.planned_end().0;
            // An active segment without records has the staged segment's name: the staged one
            // replaces it, and follows the segment before it.
            let prev = if active == st.next_lsn {
                let n = st.segments.len();
                n.checked_sub(2)
                    .and_then(|i| st.segments.get(i))
                    .map_or(0, |s| s.first_lsn)
            } else {
                active
            };
            (st.next_lsn, active, prev)
        };
        let header = SegmentHeader {
            first_lsn,
            prev_first_lsn,
            segment_bytes_max: core.options.segment_bytes_max,
        };
        let path = staging_path(&core.dir, first_lsn);
        // A leftover of an earlier failed commit in this process (open removes older ones).
        if core.storage.exists(&path) {
            core.storage
                .remove_file(&path)
                .map_err(|e| Error::io("remove old staging segment", &path, e))?;
        }
        let file: Arc<dyn StorageFile> = Arc::from(
            core.storage
                .open(&path, OpenMode::CreateNew)
                .map_err(|e| Error::io("create staging segment", &path, e))?,
        );
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| Error::io("write staging segment header", &path, e))?;
        tracing::debug!(file = %path.display(), first_lsn, "staging segment started");
        Ok(Staging {
            core: core.clone(),
            file: Some(file),
            path,
            header,
            active_first_lsn,
            next_lsn: first_lsn,
            offset: SEGMENT_HEADER_LEN as u64,
            buf: Vec::new(),
        })
    }
}

impl Staging {
    /// The LSN of the first record staged.
    pub fn first_lsn(&self) -> Lsn {
        self.header.first_lsn
    }
    /// The LSN the next appended record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }
    /// The staging file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (a lone-record frame); returns its LSN. Not durable, not part of the
    /// log until [`Staging::commit`].
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn> {
        if payload.len() > RECORD_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "record",
                len: payload.len() as u64,
                max: RECORD_BYTES_MAX as u64,
            });
        }
        let lsn = self.next_lsn;
        if lsn >= super::segment::LSN_SANE_MAX {
            return Err(Error::InvalidInput {
                at: Some("payloads".into()),
                reason: format!("no LSNs left after {lsn}"),
            });
        }
        frame::encode_into(&mut self.buf, lsn, FLAGS_SINGLE, payload);
        self.next_lsn += 1;
        if self.buf.len() >= STAGING_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(lsn)
    }

    /// Writes the buffered frames to the staging file.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file.as_ref().ok_or(Error::Closed)?;
        file.write_all_at(&self.buf, self.offset)
            .map_err(|e| Error::io("write staging segment", &self.path, e))?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes every staged record part of the log, atomically: after a crash at any moment
    /// the log holds all of them or none. Returns the last LSN (`first_lsn - 1` when nothing
    /// was staged: then nothing is written). Durable when it returns, whatever the log's
    /// durability mode.
    ///
    /// An error before the rename leaves the log as it was (the staging file is deleted; a
    /// failed seal of the active segment poisons the log all the same, as any failed fsync
    /// does); an error after it poisons the log.
    pub fn commit(mut self) -> Result<Lsn> {
        let last = self.next_lsn - 1;
        if self.next_lsn == self.header.first_lsn {
            return Ok(last);
        }
        self.flush()?;
        let file = self.file.take().ok_or(Error::Closed)?;
        // IMPORTANT: synced before it gets a segment's name (see the module docs).
        file.sync_all()
            .map_err(|e| Error::io("fsync staging segment", &self.path, e))?;
        drop(file);
        let core = self.core.clone();
        // Everything submitted before the staging began must be written and synced first: the
        // staged segment follows it.
        core.drive(self.header.first_lsn - 1, Need::Synced)?;
        let mut st = core.state.lock();
        core.wait_no_leader(&mut st);
        if let Some(e) = st.refuse() {
            return Err(e);
        }
        if st.next_lsn != self.header.first_lsn || st.planned_end().0 != self.active_first_lsn {
            return Err(Error::InvalidInput {
                at: Some("staging".into()),
                reason: format!(
                    "the log moved on while records were staged at LSN {} (its next LSN is now {}): \
                     the staged records are dropped",
                    self.header.first_lsn, st.next_lsn
                ),
            });
        }
        let bytes = self.offset;
        let next_first = last + 1;
        // NOTE: under the state mutex, with no leader running (checked above, and none can
        // start while we hold it), so the writer mutex is free and no record can be assigned
        // an LSN in between.
        let result = self.make_live(&core, next_first);
        match result {
            Ok((seg_path, next)) => {
                let replaced = self.replaces_active();
                if !replaced {
                    st.segments
                        .push(SegmentMeta::new(self.header.first_lsn, seg_path));
                }
                st.segments
                    .push(SegmentMeta::new(next_first, next.path.clone()));
                *core.writer.lock() = Some(next);
                // A replaced empty active segment's header is no longer there.
                let replaced_bytes = if replaced {
                    SEGMENT_HEADER_LEN as u64
                } else {
                    0
                };
                st.set_committed_staging(next_first, bytes - replaced_bytes);
                core.cond.notify_all();
                tracing::info!(
                    first_lsn = self.header.first_lsn,
                    last_lsn = last,
                    bytes,
                    "staging segment committed"
                );
                Ok(last)
            }
            Err((e, renamed)) => {
                tracing::error!(error = %e, renamed, "staging commit failed; the log is poisoned until reopened");
                st.poisoned = Some((e.to_string(), Arc::new(e.duplicate())));
                core.poison_flag.store(true, Ordering::Release);
                core.cond.notify_all();
                Err(e)
            }
        }
    }

    /// True when the staged segment replaces an active segment that holds no record.
    fn replaces_active(&self) -> bool {
        self.active_first_lsn == self.header.first_lsn
    }

    /// Seal, rename, fsync the directory, create the next active segment. The error says
    /// whether the rename was done.
    fn make_live(
        &self,
        core: &Core,
        next_first: Lsn,
    ) -> std::result::Result<(PathBuf, super::segment::writer::ActiveSegment), (Error, bool)> {
        let mut writer = core.writer.lock();
        let active = writer.as_mut().ok_or((Error::ReadOnly, false))?;
        if active.first_lsn != self.active_first_lsn {
            return Err((
                Error::corrupt(
                    active.path.clone(),
                    None,
                    Some(self.header.first_lsn),
                    "the staging segment does not follow the active segment",
                ),
                false,
            ));
        }
        active
            .file
            .sync_data()
            .map_err(|e| (Error::io("fdatasync", active.path.clone(), e), false))?;
        let seg_path = segment_path(&core.dir, self.header.first_lsn);
        // When the staged segment replaces an empty active segment, this renames over a file
        // the log still holds open. POSIX allows that. On Windows, std's rename uses POSIX
        // semantics (FILE_RENAME_FLAG_POSIX_SEMANTICS, Windows 10 1607 and later;
        // rust-lang/rust#131072) and std opens files with FILE_SHARE_DELETE, so it works
        // there too. On older Windows
        // the rename fails before anything changed: the log is poisoned as after any failed
        // step of a commit, and a reopen finds it as it was (the staging file deleted).
        core.storage
            .rename(&self.path, &seg_path)
            .map_err(|e| (Error::io("rename staging segment", &self.path, e), false))?;
        core.storage
            .sync_dir(&core.dir)
            .map_err(|e| (Error::io("fsync directory", &core.dir, e), true))?;
        let header = SegmentHeader {
            first_lsn: next_first,
            prev_first_lsn: self.header.first_lsn,
            segment_bytes_max: core.options.segment_bytes_max,
        };
        let next = create_segment(&*core.storage, &core.dir, header, core.options.preallocate)
            .map_err(|e| (e, true))?;
        drop(writer);
        Ok((seg_path, next))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Not committed (or the commit failed before its rename): the file is not part of the
        // log; delete it. Best effort: a writer's open deletes any that remain.
        if self.file.take().is_some() || self.core.storage.exists(&self.path) {
            if let Err(e) = self.core.storage.remove_file(&self.path) {
                tracing::warn!(file = %self.path.display(), error = %e, "could not remove an abandoned staging segment");
            } else {
                tracing::debug!(file = %self.path.display(), "abandoned staging segment removed");
            }
        }
    }
}
