//! Snapshots: the whole store state (tasks, every history, idempotency keys, sessions) as of
//! one LSN, so that open replays only the log after it. This build writes format v3 and reads
//! v1, v2 and v3; `docs/format.md` gives the layouts byte by byte. In short (all integers
//! little-endian):
//!
//! | offset | size | field (v2, v3) |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `TASKSNAP` |
//! | 8  | 4 | format version (3; 2 read) |
//! | 12 | 4 | flags (0) |
//! | 16 | 8 | LSN of the last record included |
//! | 24 | 8 | number of task records |
//! | 32 | 8 | tasks section length |
//! | 40 | 8 | history section length, as stored |
//! | 48 | 4 | CRC-32 of the tasks section |
//! | 52 | 4 | CRC-32 of the history section |
//! | 56 | 4 | reserved (0) |
//! | 60 | 4 | CRC-32 of bytes 0..60 |
//! | 64 | tasks length | task records (postcard), then request ids and closed sessions |
//! | 64 + tasks length | history length | every history arena, back to back (v3: in LZ4 blocks after an index, `blocks`) |
//!
//! Version 1 (40-byte header, one postcard body with the arenas inline) is read by `v1`.
//! Written as: temp file, fsync, rename, fsync directory. Histories are carried whole, so log
//! segments below the oldest kept snapshot can be removed without losing the audit trail.

pub(crate) mod blocks;
mod history_checks;
mod v1;
mod v2;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::state::{Held, State};
use crate::task::TaskState;
use crate::wal::{OpenMode, Storage};

/// Magic bytes at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TASKSNAP";
/// The snapshot format version this build writes (it reads 1, 2 and 3).
pub const SNAPSHOT_VERSION: u32 = 3;
/// Largest LSN accepted from a snapshot file (far beyond any real log; keeps `lsn + 1` safe).
pub const LSN_MAX: u64 = u64::MAX / 2;
/// Header length of the format this build writes, in bytes.
pub const SNAPSHOT_HEADER_LEN: usize = v2::HEADER_LEN;
/// Largest snapshot body (everything after the header) this build will read, checked before
/// allocating.
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 30;
/// Bytes at the start of every version's header: magic and version.
const PREFIX_LEN: usize = 12;

/// A snapshot file found on disk.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// Its path.
    pub path: PathBuf,
    /// The LSN in its name.
    pub lsn: u64,
}

/// The file name of the snapshot at `lsn`.
pub fn file_name(lsn: u64) -> String {
    format!("snap-{lsn:020}.snap")
}

/// Removes the temp files (`*.snap.tmp`) a failed or interrupted snapshot write left in `dir`,
/// then fsyncs it. For writers only (they hold the lock, so no snapshot is being written).
pub fn remove_temp_files(storage: &dyn Storage, dir: &Path) -> Result<usize> {
    if !storage.exists(dir) {
        return Ok(0);
    }
    let mut removed = 0;
    for path in storage
        .list_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
    {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap-") && n.ends_with(".snap.tmp"))
        {
            storage
                .remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(removed)
}

/// Snapshot files in `dir`, newest first. Temp files and strangers are ignored.
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<Vec<SnapshotFile>> {
    if !storage.exists(dir) {
        return Ok(Vec::new());
    }
    let mut out: Vec<SnapshotFile> = storage
        .list_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let lsn = name
                .strip_prefix("snap-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()?;
            Some(SnapshotFile { path, lsn })
        })
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.lsn));
    Ok(out)
}

/// Encodes the state as a complete snapshot file image (format v2). For a state whose
/// histories keep events in the log, use [`encode_with_log`].
pub fn encode(state: &State) -> Result<Vec<u8>> {
    v2::encode_with_layout(state, None).map(|(image, _)| image)
}

/// [`encode`], reading the events that histories keep in the log from `log`.
pub fn encode_with_log(state: &State, log: &dyn crate::store::Log) -> Result<Vec<u8>> {
    v2::encode_with_layout(state, Some(log)).map(|(image, _)| image)
}

pub use v2::Layout;

/// A snapshot being written to its temporary file: encoded straight into the file (no image in
/// memory), made durable and visible by [`Pending::commit`]. Dropping it leaves the temporary
/// file, which the next write of the same name or the next open removes.
pub struct Pending {
    file: Box<dyn crate::wal::StorageFile>,
    tmp: PathBuf,
    dir: PathBuf,
    name: String,
    /// The file's length.
    pub bytes: u64,
    /// Where each history went (see [`Layout`]).
    pub layout: Layout,
}

/// Encodes the state as a snapshot for `lsn` into `dir/NAME.tmp` (written as it is encoded:
/// memory stays bounded by the largest history, the events being read from the log and the
/// write buffers). Nothing is visible until [`Pending::commit`].
pub fn encode_to_temp_file(
    storage: &dyn Storage,
    dir: &Path,
    state: &State,
    log: &dyn crate::store::Log,
) -> Result<Pending> {
    crate::wal::create_dir_durable(storage, dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let name = file_name(state.applied_lsn);
    let (file, tmp) = create_temp(storage, dir, &name)?;
    let mut sink = v2::FileSink::new(file.as_ref(), &tmp);
    let layout = v2::encode_into(state, Some(log), &mut sink)?;
    let bytes = v2::Sink::len(&sink);
    Ok(Pending {
        file,
        tmp,
        dir: dir.to_path_buf(),
        name,
        bytes,
        layout,
    })
}

impl Pending {
    /// Makes the snapshot durable and visible: fsync, rename, fsync the directory. Returns its
    /// path.
    pub fn commit(self, storage: &dyn Storage) -> Result<PathBuf> {
        let path = self.dir.join(&self.name);
        commit_temp(storage, self.file, &self.tmp, &path, &self.dir)?;
        Ok(path)
    }
}

/// [`encode`], with where each history went in the image.
pub fn encode_with_layout(
    state: &State,
    log: Option<&dyn crate::store::Log>,
) -> Result<(Vec<u8>, Layout)> {
    v2::encode_with_layout(state, log)
}

/// Opens the history section of the snapshot just written at `path`, for
/// [`State::rebase_histories`].
pub fn open_history_section(
    storage: &dyn Storage,
    path: &Path,
    layout: &Layout,
) -> Result<std::sync::Arc<crate::store::history::Arena>> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    // The file was written by this build: format v3, histories in blocks.
    let blocks = v2::read_index(
        path,
        file.as_ref(),
        layout.history_offset,
        layout.history_len,
    )?;
    Ok(crate::store::history::Arena::in_blocks(
        path,
        layout.history_offset,
        Err(file),
        blocks,
    ))
}

/// Writes `bytes` as `dir/name` durably: `name.tmp` (a leftover one removed first), fsync,
/// rename, fsync the directory. A crash leaves either the old state or the whole new file.
/// Snapshots and a backup's manifest are written this way.
pub(crate) fn write_file_durably(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    let path = dir.join(name);
    let (file, tmp) = create_temp(storage, dir, name)?;
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    commit_temp(storage, file, &tmp, &path, dir)
}

/// Creates `dir/name.tmp` afresh (a leftover one removed first).
fn create_temp(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
) -> Result<(Box<dyn crate::wal::StorageFile>, PathBuf)> {
    let tmp = dir.join(format!("{name}.tmp"));
    if storage.exists(&tmp) {
        storage
            .remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let file = storage
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    Ok((file, tmp))
}

/// fsyncs the written `tmp`, renames it to `path` and fsyncs `dir`.
fn commit_temp(
    storage: &dyn Storage,
    file: Box<dyn crate::wal::StorageFile>,
    tmp: &Path,
    path: &Path,
    dir: &Path,
) -> Result<()> {
    file.sync_all().map_err(|e| Error::io("fsync", tmp, e))?;
    drop(file);
    storage
        .rename(tmp, path)
        .map_err(|e| Error::io("rename", tmp, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Writes a snapshot image durably: temp file, fsync, rename, fsync directory.
pub fn write(storage: &dyn Storage, dir: &Path, lsn: u64, image: &[u8]) -> Result<PathBuf> {
    crate::wal::create_dir_durable(storage, dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let name = file_name(lsn);
    write_file_durably(storage, dir, &name, image)?;
    Ok(dir.join(name))
}

/// Reads and checks a snapshot file, returning the state it holds. Every byte's CRC is
/// checked; the histories of a v2 file are checked structurally only when read (see
/// [`read_checked`]).
pub fn read(storage: &dyn Storage, path: &Path) -> Result<State> {
    let (file, header, len) = open_checked(storage, path)?;
    let header = header.as_slice();
    match version(path, header)? {
        1 => {
            let image = file.read_all().map_err(|e| Error::io("read", path, e))?;
            v1::decode(path, &image)
        }
        _ => v2::read(path, file, header, len),
    }
}

/// What [`read_visiting`] hands over for each task: its id and its state (`None`: removed).
pub type TaskVisit<'v> = dyn FnMut(&str, Option<TaskState>) -> Result<()> + 'v;

/// [`read_checked`] without building a state: the same checks (every history's included),
/// each task's id and state going to `visit` as its record is read and nothing kept (what
/// `verify` keeps of a snapshot: its memory is then the reader's window and the history
/// block at hand, not a loaded store). The histories are checked on a second thread as the
/// records name them; a damaged one is reported once the records are read, unless they fail
/// first (`read_checked`'s precedence). Returns the snapshot's LSN. A v1 file is read whole,
/// then visited.
pub fn read_visiting(storage: &dyn Storage, path: &Path, visit: &mut TaskVisit<'_>) -> Result<u64> {
    let (file, header, len) = open_checked(storage, path)?;
    let header = header.as_slice();
    match version(path, header)? {
        1 => {
            let image = file.read_all().map_err(|e| Error::io("read", path, e))?;
            let state = v1::decode(path, &image)?;
            for (id, entry) in state.entries() {
                entry
                    .history
                    .check()
                    .map_err(|e| history_error(path, state.applied_lsn, id, e))?;
                visit(id, entry.task.as_ref().map(Held::state))?;
            }
            Ok(state.applied_lsn)
        }
        _ => v2::read_visiting(path, file, header, len, visit),
    }
}

/// Opens the snapshot at `path`, checks its length against the limits and reads the first
/// bytes that hold its header (fewer when the file is shorter).
fn open_checked(
    storage: &dyn Storage,
    path: &Path,
) -> Result<(Box<dyn crate::wal::StorageFile>, Vec<u8>, u64)> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len < v1::HEADER_LEN as u64 {
        return Err(Error::corrupt(
            path,
            Some(0),
            None,
            format!("file is {len} bytes, shorter than the header"),
        ));
    }
    if len > SNAPSHOT_BYTES_MAX + v2::HEADER_LEN as u64 {
        return Err(Error::TooLarge {
            what: "snapshot file",
            len,
            max: SNAPSHOT_BYTES_MAX,
        });
    }
    let mut header = [0u8; v2::HEADER_LEN];
    let header = header
        .get_mut(..v2::HEADER_LEN.min(len as usize))
        .unwrap_or_default();
    let done = file
        .read_full_at(header, 0)
        .map_err(|e| Error::io("read", path, e))?;
    let header = header.get(..done).unwrap_or_default().to_vec();
    Ok((file, header, len))
}

/// [`read`], then a structural check of every history (what `tasklog verify` runs).
pub fn read_checked(storage: &dyn Storage, path: &Path) -> Result<State> {
    let state = read(storage, path)?;
    for (id, entry) in state.entries() {
        entry
            .history
            .check()
            .map_err(|e| history_error(path, state.applied_lsn, id, e))?;
    }
    Ok(state)
}

/// The error for the history of `id`, in the snapshot at `path` (covering `lsn`), that failed
/// its check with `e`: named by the task.
fn history_error(path: &Path, lsn: u64, id: &str, e: Error) -> Error {
    match e {
        Error::Codec { reason, .. } => Error::corrupt(
            path,
            None,
            Some(lsn),
            format!("history of {id:?}: {reason}"),
        ),
        Error::Corrupt {
            file,
            offset,
            lsn,
            reason,
        } => Error::Corrupt {
            file,
            offset,
            lsn,
            reason: format!("history of {id:?}: {reason}"),
        },
        e => e,
    }
}

/// Decodes a snapshot image held in memory; `path` is for error messages.
pub fn decode(path: &Path, image: &[u8]) -> Result<State> {
    match version(path, image)? {
        1 => v1::decode(path, image),
        _ => v2::decode(path, image),
    }
}

/// Recomputes the CRCs of an image in place, so that a fuzzer's damage reaches the decoders
/// behind them. Not for anything else.
#[doc(hidden)]
pub fn reseal_for_fuzzing(image: &mut [u8]) {
    match image
        .get(8..12)
        .map(|v| u32::from_le_bytes(v.try_into().unwrap_or_default()))
    {
        Some(1) => v1::reseal(image),
        Some(2 | 3) => v2::reseal(image),
        _ => {}
    }
}

/// Checks the magic and returns the format version: 1, 2 or 3, else `UnsupportedVersion`. The
/// version comes before the header CRC because the header's length depends on it.
fn version(path: &Path, header: &[u8]) -> Result<u32> {
    if header.len() < PREFIX_LEN {
        return Err(Error::corrupt(
            path,
            Some(0),
            None,
            "shorter than the snapshot header",
        ));
    }
    if field(header, 0, 8) != SNAPSHOT_MAGIC {
        return Err(Error::corrupt(
            path,
            Some(0),
            None,
            "bad magic (not a tasklog snapshot)",
        ));
    }
    match u32_at(header, 8) {
        v @ (1..=3) => Ok(v),
        found => Err(Error::UnsupportedVersion {
            file: path.into(),
            found,
            supported: SNAPSHOT_VERSION,
        }),
    }
}

/// `n` bytes at `at` (empty when out of range: callers check lengths first).
fn field(bytes: &[u8], at: usize, n: usize) -> &[u8] {
    bytes.get(at..at + n).unwrap_or_default()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(field(bytes, at, 4).try_into().unwrap_or_default())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(field(bytes, at, 8).try_into().unwrap_or_default())
}

fn codec(reason: String) -> Error {
    Error::Codec {
        what: "snapshot".into(),
        reason,
        source: None,
    }
}
