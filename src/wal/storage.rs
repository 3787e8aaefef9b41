//! The I/O seam. Everything tasklog writes or reads on disk (log segments, snapshots, the lock
//! file) goes through [`Storage`], so that tests can put a simulated disk underneath that tears
//! writes, fails fsyncs, fills up, or "loses power" and keeps only what was synced.
//!
//! `StdStorage` is the real file system.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// A new file, read and write; fails if it exists.
    CreateNew,
}

/// One open file.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Reads as much of `buf` as the file holds from `offset` on, through short reads; returns
    /// how many bytes were read: fewer than `buf.len()` only where the file ends.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            let n = self.read_at(rest, offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync: data and the metadata needed to read it back.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync: data and all metadata.
    fn sync_all(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reserves `len` bytes of disk from offset 0 without changing what reads return beyond the
    /// written data (posix_fallocate on Linux). Storage that cannot preallocate does nothing.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Extends the file to at least `len` bytes of allocated, zero-filled space (posix_fallocate
    /// without KEEP_SIZE). Unlike [`StorageFile::allocate`] the file's length changes, so later
    /// appends inside it do not change the size and fdatasync need not flush metadata: on this
    /// disk that is worth about 40% per durable append (KEEP_SIZE gained nothing when measured).
    /// Readers must treat the zeros after the data as unwritten space.
    fn preallocate(&self, len: u64) -> io::Result<()> {
        if self.len()? < len {
            self.set_len(len)?;
        }
        Ok(())
    }
    /// An offset from which every byte up to the end of the file reads as zero, as far as the
    /// storage can tell without reading: holes, and preallocated space never written. The file's
    /// length when it cannot tell. Lets open accept the zero tail of a preallocated segment
    /// without reading tens of MiB of zeros.
    fn zeros_from(&self) -> io::Result<u64> {
        self.len()
    }
    /// Evicts the file's clean cached pages, so later reads come from the disk (posix_fadvise
    /// `DONTNEED` on Linux). After a failed writeback Linux marks the pages clean while the
    /// disk holds the old bytes: reading through the cache would trust bytes that were never
    /// written. Dirty pages stay (sync first). Storage without a cache does nothing.
    fn drop_cache(&self) -> io::Result<()> {
        Ok(())
    }
    /// The whole file as bytes: a read-only memory map where the storage can map, else a copy.
    fn map_all(&self) -> io::Result<FileBytes> {
        Ok(FileBytes::Owned(self.read_all()?))
    }
    /// Reads the whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.read_prefix(u64::MAX)
    }
    /// Reads the first `max` bytes of the file (fewer if it is shorter).
    fn read_prefix(&self, max: u64) -> io::Result<Vec<u8>> {
        self.read_range(0, max)
    }
    /// [`StorageFile::read_prefix`], but reads only from offset `skip` on: the bytes before it
    /// are left zero (and, in a large buffer, never touched, so they cost no memory).
    fn read_range(&self, skip: u64, max: u64) -> io::Result<Vec<u8>> {
        let len = self.len()?.min(max);
        let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        let from = usize::try_from(skip).map_or(len, |s| s.min(len));
        let read = self.read_full_at(buf.get_mut(from..).unwrap_or_default(), from as u64)?;
        buf.truncate(from + read);
        Ok(buf)
    }
}

/// The bytes of a whole file, mapped or copied.
#[derive(Debug)]
pub enum FileBytes {
    /// A copy in memory.
    Owned(Vec<u8>),
    /// A read-only memory map.
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(v) => v,
            FileBytes::Mapped(m) => m,
        }
    }
}

/// An exclusive lock held until dropped.
pub trait StorageLock: Send + Sync + Debug {}

/// File-system operations.
pub trait Storage: Send + Sync + Debug {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The paths of the entries of a directory (files only), in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Atomically renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory, making creates, renames and removes in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True if the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive, non-blocking lock on `path` (created if missing). `Ok(None)` when
    /// another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>>;
    /// What the holder of the lock at `path` wrote about itself (see `wal::lock`), if this
    /// storage keeps such a thing; at most a few hundred bytes.
    fn lock_holder(&self, path: &Path) -> Option<Vec<u8>> {
        let _ = path;
        None
    }
}

/// Creates `path` and any missing parents, then fsyncs the parent of each directory it
/// created, top down, so that the new entries survive a power cut (a directory's own entry
/// lives in its parent).
pub fn create_dir_durable(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !storage.exists(a))
        .collect();
    storage.create_dir_all(path)?;
    for dir in missing.iter().rev() {
        let parent = match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => continue,
        };
        storage.sync_dir(parent)?;
    }
    Ok(())
}

/// The real file system. New files are created `0600` and new directories `0700` (before the
/// umask): a store holds task inputs and results that are nobody else's business. Use
/// [`StdStorageModes`] for other permission bits.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdStorage;

/// The real file system, creating files and directories with these permission bits.
///
/// ## Defaults
/// - `file_mode`: `0o600`.
/// - `dir_mode`: `0o700`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdStorageModes {
    /// Permission bits of new files (the process umask still applies).
    pub file_mode: u32,
    /// Permission bits of new directories (the process umask still applies).
    pub dir_mode: u32,
}

impl Default for StdStorageModes {
    fn default() -> Self {
        StdStorageModes {
            file_mode: 0o600,
            dir_mode: 0o700,
        }
    }
}

impl StdStorageModes {
    /// Files created with `file_mode`; directories with the same bits plus search (`x`) for
    /// every class that may read (`0o640` gives `0o750`).
    pub fn from_file_mode(file_mode: u32) -> Self {
        let file_mode = file_mode & 0o777;
        let search = (file_mode & 0o444) >> 2;
        StdStorageModes {
            file_mode,
            dir_mode: file_mode | search,
        }
    }
}

#[derive(Debug)]
struct StdFile(File);

impl StorageFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        super::os::read_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        super::os::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        super::os::sync_data(&self.0)
    }
    fn sync_all(&self) -> io::Result<()> {
        super::os::sync_all(&self.0)
    }
    fn drop_cache(&self) -> io::Result<()> {
        super::os::drop_cache(&self.0)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        super::os::reserve(&self.0, len)
    }
    fn preallocate(&self, len: u64) -> io::Result<()> {
        if self.len()? >= len {
            return Ok(());
        }
        super::os::preallocate(&self.0, len)
    }
    fn zeros_from(&self) -> io::Result<u64> {
        super::os::zeros_from(&self.0, self.len()?, DATA_RANGES_MAX)
    }
    fn map_all(&self) -> io::Result<FileBytes> {
        if self.len()? == 0 {
            // mmap of an empty file fails with EINVAL.
            return Ok(FileBytes::Owned(Vec::new()));
        }
        map_file(&self.0).map(FileBytes::Mapped)
    }
    // NOTE: no `read_all` override: the trait's default reads by offset from 0. A
    // `read_to_end` here read from the file's *position*, so a second read of the same handle
    // (a retry) saw an empty file and a read-only open an empty log.
}

/// Data ranges `StdFile::zeros_from` follows before giving up (and reading the bytes instead): a
/// segment written in order has one or two.
const DATA_RANGES_MAX: usize = 64;

/// Maps a whole file read-only.
// SAFETY: the map is shared (MAP_SHARED): any later write to the file shows through the `&[u8]`
// it hands out, and a truncation or a read error turns an access into SIGBUS. So the log maps
// only *sealed* segments: ones it rolled past, whose bytes were fdatasynced at the roll and are
// never written again, in a handle that holds the exclusive LOCK (read-only handles never map).
// The active (last) segment, still written and where an I/O error is likeliest, is always
// copied (`read_prefix`), at open and in replay. Truncations (torn-tail cut at open, repair)
// touch only the last segment or run without a handle; `truncate_before` unlinks files, which
// keeps mapped pages valid. What remains: a media read error inside a mapped sealed segment
// raises SIGBUS instead of an error (a damaged disk under a sealed, checksummed file).
#[allow(unsafe_code)]
fn map_file(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: see above; only sealed segments are mapped, read-only, and the map never
    // outlives its use in a replay.
    unsafe { memmap2::Mmap::map(file) }
}

#[derive(Debug)]
struct StdLock(#[allow(dead_code)] File);

impl StorageLock for StdLock {}

impl Storage for StdStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        StdStorageModes::default().open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdStorageModes::default().create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        StdStorageModes::default().list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdStorageModes::default().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdStorageModes::default().remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdStorageModes::default().sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        StdStorageModes::default().exists(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        StdStorageModes::default().try_lock(path)
    }
    fn lock_holder(&self, path: &Path) -> Option<Vec<u8>> {
        StdStorageModes::default().lock_holder(path)
    }
}

impl Storage for StdStorageModes {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => {
                super::os::create_mode(&mut o, self.file_mode);
                o.read(true).write(true).create_new(true)
            }
        };
        Ok(Box::new(StdFile(o.open(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        super::os::dir_mode(&mut builder, self.dir_mode);
        builder.recursive(true).create(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.path());
            }
        }
        Ok(out)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        super::os::sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        let mut o = OpenOptions::new();
        super::os::create_mode(&mut o, self.file_mode);
        let file = o
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for a writer that waits in vain (`wal::lock`). Information only:
                // not synced, and a failure to write it costs only a vaguer message.
                let line = super::lock::holder_line();
                if file.set_len(0).is_ok() {
                    let _ = super::os::write_all_at(&file, line.as_bytes(), 0);
                }
                Ok(Some(Box::new(StdLock(file))))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
    fn lock_holder(&self, path: &Path) -> Option<Vec<u8>> {
        super::lock::read_holder(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_all_twice_reads_the_whole_file_both_times() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello segment").expect("write");
        let f = StdStorage.open(&path, OpenMode::Read).expect("open");
        assert_eq!(f.read_all().expect("first"), b"hello segment");
        assert_eq!(f.read_all().expect("second"), b"hello segment");
    }

    /// A file that returns at most 3 bytes a read, as `pread` may.
    #[derive(Debug)]
    struct ThreeBytesARead(StdFile);

    impl StorageFile for ThreeBytesARead {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.read_at(buf.get_mut(..n).unwrap_or_default(), offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
        fn sync_all(&self) -> io::Result<()> {
            self.0.sync_all()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn len(&self) -> io::Result<u64> {
            self.0.len()
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            self.0.allocate(len)
        }
    }

    /// `read_full_at` reads on through short reads from its offset, and reads fewer bytes only
    /// where the file ends; `read_range` (built on it) leaves the skipped bytes zero.
    #[test]
    fn read_full_at_reads_through_short_reads_to_the_end_of_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789abcdef").expect("write");
        let f = ThreeBytesARead(StdFile(std::fs::File::open(&path).expect("open")));
        let mut buf = [0u8; 10];
        assert_eq!(f.read_full_at(&mut buf, 2).expect("read"), 10);
        assert_eq!(&buf, b"23456789ab");
        assert_eq!(f.read_full_at(&mut buf, 9).expect("read"), 7);
        assert_eq!(&buf[..7], b"9abcdef");
        assert_eq!(f.read_full_at(&mut buf, 16).expect("at the end"), 0);
        assert_eq!(f.read_full_at(&mut [], 3).expect("nothing asked"), 0);
        assert_eq!(f.read_range(5, 12).expect("range"), b"\0\0\0\0\x0056789ab");
        assert_eq!(f.read_range(20, 100).expect("past the end"), vec![0u8; 16]);
    }

    /// The contract of `zeros_from`, whatever the file system answers: never past a non-zero
    /// byte, and only zeros after it. Preallocated space never written is the case that matters
    /// (the tail of the last segment), with data written far into it after an unwritten gap (a
    /// valid frame after garbage must be found, or a torn tail would be cut wrongly).
    #[test]
    fn zeros_from_never_hides_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let f = StdStorage.open(&path, OpenMode::CreateNew).expect("create");
        assert_eq!(f.zeros_from().expect("empty"), 0);
        f.preallocate(1 << 20).expect("preallocate");
        // NOTE: nothing is read back: reading caches the zero pages, which then count as data
        // and would hide a wrong answer. `last` is where the written non-zero bytes end.
        let check = |what: &str, last: u64| {
            let z = f.zeros_from().expect("zeros_from");
            assert!(z >= last && z <= 1 << 20, "{what}: {z} vs data to {last}");
        };
        check("preallocated only", 0);
        f.write_all_at(&[7; 100], 48).expect("write");
        check("a written prefix", 148);
        f.write_all_at(&[9; 10], 700 << 10).expect("write far");
        check("data after an unwritten gap", (700 << 10) + 10);
        f.sync_data().expect("sync");
        check("after a sync", (700 << 10) + 10);
        f.write_all_at(&[1], (1 << 20) - 1)
            .expect("write the last byte");
        check("data in the last byte", 1 << 20);
    }
}
