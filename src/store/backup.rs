//! Online backups: a consistent, verified, fsynced copy of a live store, written while writers
//! go on, that is itself a store (open it, or restore it with [`restore_into`]).
//!
//! A backup directory holds what a store holds, made fresh: `snapshots/snap-<L>.snap`, a new
//! snapshot image of the state at LSN `L` (every task and whole history), and `wal/`, one empty
//! log segment starting at `L + 1`; then the manifest `BACKUP` (see `docs/format.md`), written
//! last. Writers are held only while the state is encoded (as for a snapshot).
//!
//! NOTE: why a fresh image and not hard links to the store's own snapshot and sealed segments:
//! a hard link shares the bytes, so a flipped bit in the store's file is a flipped bit in the
//! "backup" too, and a backup is kept exactly against that. A fresh image is also compact
//! (like SQLite's `VACUUM INTO`) and cannot race with compaction removing segments.
//!
//! An interrupted backup is never mistaken for a complete one: the log segment is written
//! last, so a directory whose log never arrived is refused on open (no `wal/`, or "the log
//! ends before" the snapshot), and [`restore_into`] and the rotation accept only a
//! directory whose manifest checks (magic, version, CRC) and matches its snapshot's length and
//! CRC. The rotation removes interrupted backups at its next run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::recovery::{snapshot_dir, wal_dir};
use super::{Store, StoreOptions, snapshot};
use crate::error::{Error, Result};
use crate::wal::segment::SegmentHeader;
use crate::wal::{OpenMode, Storage};

mod names;

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "BACKUP";
/// Magic bytes at the start of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"TLBACKUP";
/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// A manifest's length in bytes.
pub const MANIFEST_LEN: usize = 64;
/// Prefix of the backup directories a rotation writes.
pub const ROTATED_PREFIX: &str = "backup-";
/// The segment size written into a backup's log (it holds no record until written to).
const BACKUP_SEGMENT_BYTES: u64 = 64 << 20;

/// What a backup holds, as its manifest says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The backup directory.
    pub dir: PathBuf,
    /// The LSN of the last event it holds.
    pub lsn: u64,
    /// Tasks in it.
    pub tasks: u64,
    /// Length of its snapshot file in bytes.
    pub snapshot_bytes: u64,
    /// CRC-32 of its snapshot file.
    pub snapshot_crc: u32,
    /// When it was taken (Unix milliseconds).
    pub created_ms: i64,
}

impl BackupInfo {
    /// The manifest's bytes (layout in `docs/format.md`; all integers little-endian).
    fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut out = [0u8; MANIFEST_LEN];
        let fields: [(usize, &[u8]); 7] = [
            (0, &MANIFEST_MAGIC),
            (8, &MANIFEST_VERSION.to_le_bytes()),
            // 12..16: flags, 0.
            (16, &self.lsn.to_le_bytes()),
            (24, &self.snapshot_bytes.to_le_bytes()),
            (32, &self.snapshot_crc.to_le_bytes()),
            // 36..40: reserved, 0.
            (40, &self.created_ms.to_le_bytes()),
            (48, &self.tasks.to_le_bytes()),
            // 56..60: reserved, 0.
        ];
        for (at, bytes) in fields {
            if let Some(slot) = out.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        }
        let crc = crc32fast::hash(out.get(..60).unwrap_or_default());
        if let Some(slot) = out.get_mut(60..64) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Reads and checks a manifest.
    fn decode(bytes: &[u8], path: &Path) -> Result<(u64, u64, u32, i64, u64)> {
        let corrupt = |offset: u64, reason: &str| Error::corrupt(path, Some(offset), None, reason);
        if bytes.len() != MANIFEST_LEN {
            return Err(corrupt(
                0,
                &format!(
                    "a backup manifest is {MANIFEST_LEN} bytes, this one {}",
                    bytes.len()
                ),
            ));
        }
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        if bytes.get(..8) != Some(&MANIFEST_MAGIC[..]) {
            return Err(corrupt(0, "not a tasklog backup manifest (bad magic)"));
        }
        let crc = crc32fast::hash(bytes.get(..60).unwrap_or_default());
        if crc != u32_at(60) {
            return Err(corrupt(60, "manifest CRC mismatch"));
        }
        let version = u32_at(8);
        if version != MANIFEST_VERSION {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: version,
                supported: MANIFEST_VERSION,
            });
        }
        Ok((
            u64_at(16),
            u64_at(24),
            u32_at(32),
            u64_at(40) as i64,
            u64_at(48),
        ))
    }
}

impl Store {
    /// Writes a consistent, verified, fsynced copy of this store to `dest`, a directory that
    /// must not hold a store or a backup yet; writers go on meanwhile (they wait only while the
    /// state is encoded). The copy is itself a store: open it, or [`restore_into`] it.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupInfo> {
        let dest = dest.as_ref();
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let (image, lsn, tasks) = {
            let st = self.inner.state.read();
            (
                snapshot::encode_with_log(&st, self.inner.log.as_ref())?,
                st.applied_lsn,
                st.len() as u64,
            )
        };
        // As for a snapshot: never hold an event the log could still lose (Interval and
        // Buffered acknowledge before the fdatasync).
        if !self.inner.options.read_only {
            self.inner.log.sync().map_err(|e| self.poison(e))?;
        }
        let storage = self.inner.options.storage.clone();
        write_backup(storage, dest, &image, lsn, tasks)
    }
}

/// Writes a store holding `image` (a snapshot at `lsn`) into `dest`, checks it by opening it,
/// then writes the manifest: the backup is complete only once `BACKUP` is in place.
fn write_backup(
    storage: Arc<dyn Storage>,
    dest: &Path,
    image: &[u8],
    lsn: u64,
    tasks: u64,
) -> Result<BackupInfo> {
    write_store_image(&*storage, dest, image, lsn)?;
    verify_store(&storage, dest, lsn, tasks)?;
    let info = BackupInfo {
        dir: dest.to_path_buf(),
        lsn,
        tasks,
        snapshot_bytes: image.len() as u64,
        snapshot_crc: crc32fast::hash(image),
        created_ms: chrono::Utc::now().timestamp_millis(),
    };
    super::snapshot::write_file_durably(&*storage, dest, MANIFEST, &info.encode())?;
    tracing::info!(dest = %dest.display(), lsn, tasks, bytes = image.len(), "backup written");
    Ok(info)
}

/// Lays out a store at `dest` from a snapshot image: the snapshot (temp file, fsync, rename,
/// fsync directory), then the log, an empty segment starting after the snapshot.
fn write_store_image(storage: &dyn Storage, dest: &Path, image: &[u8], lsn: u64) -> Result<()> {
    for taken in [wal_dir(dest), snapshot_dir(dest), dest.join(MANIFEST)] {
        if storage.exists(&taken) {
            return Err(Error::InvalidInput {
                at: Some("dest".into()),
                reason: format!(
                    "{} already holds a store or a backup ({} exists); give a new directory",
                    dest.display(),
                    taken.display()
                ),
            });
        }
    }
    // IMPORTANT: the snapshot first, the log last. Until the log's segment is durable the
    // directory is refused on open: with no `wal/` it is no store, and with an empty `wal/`
    // the snapshot is ahead of the log. Only an empty store's copy (LSN 0) could open early,
    // and it opens as what it is, empty.
    snapshot::write(storage, &snapshot_dir(dest), lsn, image)?;
    let wal = wal_dir(dest);
    crate::wal::create_dir_durable(storage, &wal)
        .map_err(|e| Error::io("create directory", &wal, e))?;
    let header = SegmentHeader {
        first_lsn: lsn + 1,
        prev_first_lsn: 0,
        segment_bytes_max: BACKUP_SEGMENT_BYTES,
    };
    crate::wal::segment::writer::create_segment(storage, &wal, header, false)?;
    Ok(())
}

/// Opens the store at `dir` read-only and checks it holds what it should.
fn verify_store(storage: &Arc<dyn Storage>, dir: &Path, lsn: u64, tasks: u64) -> Result<()> {
    let copy = StoreOptions::new()
        .storage(storage.clone())
        .read_only(true)
        .open(dir)?;
    let (got_lsn, got_tasks) = (copy.last_lsn(), copy.len() as u64);
    copy.close()?;
    if (got_lsn, got_tasks) != (lsn, tasks) {
        return Err(Error::corrupt(
            dir,
            None,
            Some(lsn),
            format!(
                "the copy reads back as {got_tasks} tasks at LSN {got_lsn}, not {tasks} at {lsn}"
            ),
        ));
    }
    Ok(())
}

testing_pub! {
/// Reads and checks the backup at `dir`: its manifest, and its snapshot against the
/// manifest's length and CRC. Returns what it holds and the snapshot's bytes.
fn check(storage: &dyn Storage, dir: &Path) -> Result<(BackupInfo, Vec<u8>)> {
    let path = dir.join(MANIFEST);
    let bytes = match storage.open(&path, OpenMode::Read) {
        Ok(f) => {
            let len = f.len().map_err(|e| Error::io("stat", &path, e))?;
            if len != MANIFEST_LEN as u64 {
                return Err(Error::corrupt(
                    &path,
                    Some(0),
                    None,
                    format!("a backup manifest is {MANIFEST_LEN} bytes, this one {len}"),
                ));
            }
            f.read_all().map_err(|e| Error::io("read", &path, e))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::InvalidInput {
                at: Some("backup".into()),
                reason: format!(
                    "{} is not a complete backup: it has no {MANIFEST} manifest (an interrupted backup, or not a backup)",
                    dir.display()
                ),
            });
        }
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let (lsn, snapshot_bytes, snapshot_crc, created_ms, tasks) = BackupInfo::decode(&bytes, &path)?;
    let snap = snapshot_dir(dir).join(snapshot::file_name(lsn));
    let image = storage
        .open(&snap, OpenMode::Read)
        .and_then(|f| {
            let len = f.len()?;
            if len != snapshot_bytes {
                return Err(std::io::Error::other(format!(
                    "{len} bytes where the manifest says {snapshot_bytes}"
                )));
            }
            f.read_all()
        })
        .map_err(|e| Error::corrupt(&snap, None, Some(lsn), format!("backup snapshot: {e}")))?;
    if crc32fast::hash(&image) != snapshot_crc {
        return Err(Error::corrupt(
            &snap,
            Some(0),
            Some(lsn),
            "backup snapshot CRC differs from the manifest's",
        ));
    }
    let info = BackupInfo {
        dir: dir.to_path_buf(),
        lsn,
        tasks,
        snapshot_bytes,
        snapshot_crc,
        created_ms,
    };
    Ok((info, image))
}
}

/// Restores the backup at `backup` into `dir` (a new directory) on the file system: checks
/// the backup whole, lays out a store from it the way a backup is written, and opens it to
/// check it. The restored store has no manifest (it is a store, not a backup).
pub fn restore_into(backup: &Path, dir: &Path) -> Result<BackupInfo> {
    restore(Arc::new(crate::wal::StdStorage), backup, dir)
}

testing_pub! {
/// Restores the backup at `backup` into `dir` (a new directory): checks the backup whole,
/// lays out a store from it the way a backup is written, and opens it to check it. The
/// restored store has no manifest (it is a store, not a backup).
fn restore(storage: Arc<dyn Storage>, backup: &Path, dir: &Path) -> Result<BackupInfo> {
    let (info, image) = check(&*storage, backup)?;
    write_store_image(&*storage, dir, &image, info.lsn)?;
    verify_store(&storage, dir, info.lsn, info.tasks)?;
    tracing::info!(backup = %backup.display(), dir = %dir.display(), lsn = info.lsn, "backup restored");
    Ok(info)
}
}

/// What a rotated backup run did.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct RotatedBackup {
    /// The new backup.
    pub backup: BackupInfo,
    /// Complete backups removed because more than `keep` were there, oldest first.
    pub removed: Vec<PathBuf>,
    /// Interrupted backups (no valid manifest) removed.
    pub interrupted_removed: Vec<PathBuf>,
}

/// How long a rotation waits for `root/LOCK`. Not zero: the lock is an `flock` on an open file,
/// and a child process that another thread of this program forks inherits that file until it
/// runs its program, so the previous rotation's lock can outlive its release by that moment
/// (a test spawning `mkfifo` beside two rotations in a row made the second fail under load).
pub const ROTATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes a new backup of `store` into `root/backup-<UTC time>` (with `-<n>` appended when that
/// name is taken, or when the clock is behind the newest backup there: the new backup always
/// sorts last), then keeps the newest `keep` complete backups there (`keep` 0: keep all) and
/// removes interrupted ones. Real file system
/// only (it removes directories); a `root/LOCK` keeps two rotations apart: a rotation waits up
/// to [`ROTATION_LOCK_WAIT`] for another to finish, then fails with `Error::Locked`.
pub fn backup_rotate(store: &Store, root: &Path, keep: usize) -> Result<RotatedBackup> {
    let std = crate::wal::StdStorage;
    crate::wal::create_dir_durable(&std, root)
        .map_err(|e| Error::io("create directory", root, e))?;
    let lock_file = root.join("LOCK");
    let _lock = crate::wal::lock::acquire(&std, root, &lock_file, ROTATION_LOCK_WAIT)?;
    let interrupted_removed = remove_interrupted(root)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let name = names::next(&stamp, &prefixed_entries(root)?);
    let backup = store.backup(root.join(&name))?;
    let mut removed = Vec::new();
    if keep > 0 {
        let complete = list_rotated(root)?;
        let excess = complete.len().saturating_sub(keep);
        for old in complete.into_iter().take(excess) {
            remove_dir(&old)?;
            removed.push(old);
        }
    }
    if !removed.is_empty() {
        std.sync_dir(root)
            .map_err(|e| Error::io("fsync directory", root, e))?;
    }
    Ok(RotatedBackup {
        backup,
        removed,
        interrupted_removed,
    })
}

/// The complete backups (valid manifest) under `root`, oldest first (by name: the time they
/// were taken, then the number a rotation appends when that time's name is taken).
pub fn list_rotated(root: &Path) -> Result<Vec<PathBuf>> {
    let std = crate::wal::StdStorage;
    Ok(rotated_dirs(root)?
        .into_iter()
        .filter(|d| check_manifest_only(&std, d))
        .collect())
}

fn check_manifest_only(storage: &dyn Storage, dir: &Path) -> bool {
    let path = dir.join(MANIFEST);
    storage
        .open(&path, OpenMode::Read)
        .and_then(|f| f.read_all())
        .ok()
        .is_some_and(|b| BackupInfo::decode(&b, &path).is_ok())
}

fn rotated_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io("list", root, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(ROTATED_PREFIX))
        })
        .collect();
    out.sort_by(|a, b| names::compare(&file_name_text(a), &file_name_text(b)));
    Ok(out)
}

fn file_name_text(path: &Path) -> std::borrow::Cow<'_, str> {
    path.file_name().unwrap_or_default().to_string_lossy()
}

/// The names of every entry under `root` (directory or not) that starts with the rotation's
/// prefix: a new backup's name must be none of them.
fn prefixed_entries(root: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_dir(root)
        .map_err(|e| Error::io("list", root, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(ROTATED_PREFIX))
        .collect())
}

/// Removes the backup directories under `root` that have no valid manifest: interrupted runs
/// (the caller holds `root/LOCK`, so none is being written).
fn remove_interrupted(root: &Path) -> Result<Vec<PathBuf>> {
    let std = crate::wal::StdStorage;
    let mut removed = Vec::new();
    for d in rotated_dirs(root)? {
        if !check_manifest_only(&std, &d) {
            tracing::warn!(dir = %d.display(), "removing an interrupted backup");
            remove_dir(&d)?;
            removed.push(d);
        }
    }
    Ok(removed)
}

fn remove_dir(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|e| Error::io("remove directory", dir, e))
}
