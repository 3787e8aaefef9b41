//! Writing a file atomically: a temporary file in the same directory, fsync, rename over the
//! target, fsync of the directory. A crash leaves either the old file (or none) or the whole
//! new one, never a partial file under the target's name; at worst a stray `.tmp` file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `tasks_export_YYYYMMDD_HHMMSS.json`, from the current UTC time.
pub fn default_file_name() -> String {
    chrono::Utc::now()
        .format("tasks_export_%Y%m%d_%H%M%S.json")
        .to_string()
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = format!(".{name}.{:016x}.tmp", fastrand::u64(..));
    target.with_file_name(tmp)
}

/// Calls `write` with a temporary file next to `target`, then makes the result durable and
/// renames it to `target`. On any error the temporary file is removed and `target` untouched.
pub fn write_atomically<T>(target: &Path, write: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    let tmp = temp_path(target);
    let result = (|| {
        // A new export is private (0600, it holds every task); one that replaces a file keeps
        // that file's permission bits, so a reader someone was granted can still read it.
        let mut options = OpenOptions::new();
        crate::wal::os::create_mode(&mut options, 0o600);
        let mut file = options
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        if let Ok(old) = fs::metadata(target) {
            file.set_permissions(old.permissions())
                .map_err(|e| Error::io("chmod", &tmp, e))?;
        }
        let out = write(&mut file)?;
        file.flush().map_err(|e| Error::io("write", &tmp, e))?;
        crate::wal::os::sync_all(&file).map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, target).map_err(|e| Error::io("rename", target, e))?;
        sync_dir(target)?;
        Ok(out)
    })();
    if result.is_err() {
        // NOTE: best effort; the error that matters is the one returned.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs the directory holding `path`, so that the rename itself is durable.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    dir_synced(&dir, crate::wal::os::sync_dir(&dir))
}

/// The directory holding `path`: `.` for a bare file name.
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What the directory fsync's outcome means for the export (apart, so tests can give it the
/// errors a real file system seldom produces).
fn dir_synced(dir: &Path, result: io::Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        // Some file systems refuse to fsync a directory; the rename is then as durable as
        // that file system makes it.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::io("open directory", dir, e)),
        Err(e) => Err(Error::io("fsync directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().expect("should create a temp dir");
        let target = dir.path().join("out.json");
        let r: Result<()> = write_atomically(&target, |f| {
            f.write_all(b"partial")
                .map_err(|e| Error::io("write", "t", e))?;
            Err(Error::Closed)
        });
        assert!(r.is_err());
        let left: Vec<_> = fs::read_dir(dir.path()).expect("should list").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_write_replaces_the_target_whole() {
        let dir = tempfile::tempdir().expect("should create a temp dir");
        let target = dir.path().join("out.json");
        fs::write(&target, b"old").expect("should write");
        write_atomically(&target, |f| {
            f.write_all(b"new").map_err(|e| Error::io("write", "t", e))
        })
        .expect("should write");
        assert_eq!(fs::read(&target).expect("should read"), b"new");
        assert_eq!(fs::read_dir(dir.path()).expect("should list").count(), 1);
        assert!(default_file_name().starts_with("tasks_export_"));
    }

    /// Issue #23: the new file is fsynced before the rename makes it the target, and the
    /// directory after the rename (a power cut must leave the old file or the whole new one).
    #[test]
    #[cfg(unix)]
    fn the_file_is_fsynced_before_the_rename_and_the_directory_after() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("should create a temp dir");
        let target = dir.path().join("out.json");
        fs::write(&target, b"old").expect("should write");
        let _ = crate::wal::os::fsync_trace::take();
        write_atomically(&target, |f| {
            f.write_all(b"new").map_err(|e| Error::io("write", "t", e))
        })
        .expect("should write");
        let trace = crate::wal::os::fsync_trace::take();
        let id = |p: &Path| {
            let m = fs::metadata(p).expect("should stat");
            (m.dev(), m.ino())
        };
        // The rename keeps the inode: the target's is the temporary file's.
        let file_at = trace.iter().position(|i| *i == id(&target));
        let dir_at = trace.iter().rposition(|i| *i == id(dir.path()));
        assert!(file_at.is_some(), "the new file was not fsynced: {trace:?}");
        assert!(dir_at.is_some(), "the directory was not fsynced: {trace:?}");
        assert!(file_at < dir_at, "file, then directory: {trace:?}");
    }

    /// Issue #23 (cargo-mutants survivors): a bare file name is synced in `.`; a file system
    /// that refuses to fsync a directory (EINVAL) is accepted; a missing directory and a failed
    /// fsync are errors naming the directory and what failed.
    #[test]
    fn the_directory_fsync_outcome_is_mapped_exactly() {
        assert_eq!(dir_of(Path::new("out.json")), PathBuf::from("."));
        assert_eq!(dir_of(Path::new("a/out.json")), PathBuf::from("a"));
        let dir = Path::new("/x");
        assert!(dir_synced(dir, Ok(())).is_ok());
        let refused = io::Error::from(io::ErrorKind::InvalidInput);
        assert!(dir_synced(dir, Err(refused)).is_ok());
        let op = |r: Result<()>| match r {
            Err(Error::Io { op, path, .. }) => (op, path),
            other => panic!("{other:?}"),
        };
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            op(dir_synced(dir, Err(missing))),
            ("open directory", dir.into())
        );
        let eio = io::Error::other("EIO");
        assert_eq!(
            op(dir_synced(dir, Err(eio))),
            ("fsync directory", dir.into())
        );
    }

    /// Issue #24 (9): a new export is 0600; one replacing a file keeps that file's mode.
    #[test]
    #[cfg(unix)]
    fn a_new_export_is_private_and_a_replacement_keeps_the_old_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("should create a temp dir");
        let mode = |p: &Path| fs::metadata(p).expect("should stat").permissions().mode() & 0o777;
        let fresh = dir.path().join("fresh.json");
        write_atomically(&fresh, |f| {
            f.write_all(b"x").map_err(|e| Error::io("write", "t", e))
        })
        .expect("should write");
        assert_eq!(mode(&fresh), 0o600);
        let shared = dir.path().join("shared.json");
        fs::write(&shared, b"old").expect("should write");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o644)).expect("should chmod");
        write_atomically(&shared, |f| {
            f.write_all(b"y").map_err(|e| Error::io("write", "t", e))
        })
        .expect("should write");
        assert_eq!(mode(&shared), 0o644);
        assert_eq!(fs::read(&shared).expect("should read"), b"y");
    }
}
