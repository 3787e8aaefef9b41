//! What each operating system offers the real file system (`StdStorage`), in one place.
//!
//! | operation | Linux | macOS | Windows |
//! |---|---|---|---|
//! | positional read/write | `pread`/`pwrite` | `pread`/`pwrite` | `ReadFile`/`WriteFile` at an offset |
//! | `sync_data` | `fdatasync` | `fcntl(F_FULLFSYNC)` | `FlushFileBuffers` |
//! | `sync_all` | `fsync` | `fcntl(F_FULLFSYNC)` | `FlushFileBuffers` |
//! | directory sync | `fsync` on the directory | `fsync` on the directory | none: NTFS journals its metadata; not available to programs |
//! | reserve without growing | `fallocate(KEEP_SIZE)` | none (run unreserved) | none (run unreserved) |
//! | preallocate and grow | `fallocate(0)` | none (growing file) | none (growing file) |
//! | drop cached pages | `posix_fadvise(DONTNEED)` | none | none |
//! | find the zero tail | `SEEK_DATA`/`SEEK_HOLE` | none: read the bytes | none: read the bytes |
//! | new file mode | `StoreOptions::file_mode` | `StoreOptions::file_mode` | the directory's ACL |
//!
//! macOS: plain `fsync` there only hands data to the drive, whose cache may lose it at a power
//! cut; `F_FULLFSYNC` asks the drive to flush it (the same call SQLite makes with
//! `PRAGMA fullfsync` and etcd makes on darwin). Windows: `File::sync_all` and `sync_data` are
//! `FlushFileBuffers`, which flushes the file's data and metadata through the drive's cache.
//! The power-cut and kill tests run on Linux only: docs/durability.md says what that means.

use std::fs::File;
use std::io;

/// Reads up to `buf.len()` bytes at `offset` without moving any shared position the caller
/// relies on (every read and write of the log is positional).
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        // `seek_read` moves the handle's cursor too; nothing here reads by cursor.
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_write(file, buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file system accepted no bytes",
                    ));
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Makes the file's data durable (and the metadata needed to read it back).
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        full_fsync(file)
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        file.sync_data()
    }
}

/// Makes the file's data and all of its metadata durable.
pub(crate) fn sync_all(file: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    let result = full_fsync(file);
    #[cfg(not(target_vendor = "apple"))]
    let result = file.sync_all();
    #[cfg(all(test, unix))]
    if result.is_ok() {
        fsync_trace::record(file);
    }
    result
}

/// Unit tests only: the files (device, inode) this thread fsynced through [`sync_all`], in
/// order. Code that writes through `std::fs` rather than the `Storage` seam (the export's
/// atomic file) cannot run on the simulated disk; this trace is how its tests prove a file
/// was fsynced before its rename, and its directory after (issue #23).
#[cfg(all(test, unix))]
pub(crate) mod fsync_trace {
    use std::cell::RefCell;
    use std::os::unix::fs::MetadataExt;

    thread_local! {
        static TRACE: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(file: &std::fs::File) {
        if let Ok(m) = file.metadata() {
            TRACE.with(|t| t.borrow_mut().push((m.dev(), m.ino())));
        }
    }

    /// The trace so far, emptied.
    pub(crate) fn take() -> Vec<(u64, u64)> {
        TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
    }
}

/// `F_FULLFSYNC`, said explicitly rather than left to what `std` happens to do on Apple
/// targets. Some file systems (network and FUSE ones) refuse it; plain `fsync` is then the
/// best there is.
#[cfg(target_vendor = "apple")]
fn full_fsync(file: &File) -> io::Result<()> {
    match rustix::fs::fcntl_fullfsync(file) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::INVAL => {
            rustix::fs::fsync(file).map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops the file's cached pages, so the next read comes from the disk. Linux only; elsewhere
/// there is no portable way, and the call does nothing (see docs/durability.md, platforms).
pub(crate) fn drop_cache(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed) {
            Ok(()) => Ok(()),
            // Not every file system has a page cache to drop; nothing was cached then.
            Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::OPNOTSUPP => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(())
    }
}

/// Reserves blocks up to `len` without moving end-of-file. Where the platform cannot, the
/// file runs unreserved (appends allocate as they go).
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // KEEP_SIZE: a reader never sees the reserved range as data, and fdatasync does not
        // have to flush a size change per append.
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, len) {
            Ok(()) => Ok(()),
            // File systems without fallocate (tmpfs on old kernels, some FUSE): run unreserved.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Ok(())
    }
}

/// Allocates blocks up to `len` and extends the file to it. Where the platform cannot, the
/// file grows as it is written.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // Without fallocate, run on a growing file rather than write zeros in the hot path.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Ok(())
    }
}

/// Where the file's last range that may hold data ends, asked of the file system: `SEEK_DATA`
/// and `SEEK_HOLE` on Linux (which reports a range as a hole only if it reads as zeros; ext4
/// and xfs count unwritten, preallocated extents as holes unless the page cache holds pages for
/// them, and written or dirty pages are always data). Elsewhere nothing is known: `len`, and
/// the caller reads the bytes.
pub(crate) fn zeros_from(file: &File, len: u64, data_ranges_max: usize) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::SeekFrom;
        use rustix::io::Errno;
        // The end of the last range that may hold data, found so far.
        let mut data_end = 0;
        let mut at = 0;
        for _ in 0..data_ranges_max {
            if at >= len {
                return Ok(data_end);
            }
            let data = match rustix::fs::seek(file, SeekFrom::Data(at)) {
                Ok(d) => d,
                // No data at or after `at`.
                Err(e) if e == Errno::NXIO => return Ok(data_end),
                // No SEEK_DATA here: nothing is known.
                Err(e) if e == Errno::INVAL || e == Errno::OPNOTSUPP || e == Errno::NOSYS => {
                    return Ok(len);
                }
                Err(e) => return Err(e.into()),
            };
            if data >= len {
                return Ok(data_end);
            }
            let hole = rustix::fs::seek(file, SeekFrom::Hole(data))?;
            data_end = hole.min(len);
            at = hole;
        }
        Ok(len)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, data_ranges_max);
        Ok(len)
    }
}

/// Sets the permission bits a new file is created with (Unix); Windows files take their
/// directory's ACL.
pub(crate) fn create_mode(options: &mut std::fs::OpenOptions, mode: u32) {
    #[cfg(unix)]
    {
        std::os::unix::fs::OpenOptionsExt::mode(options, mode);
    }
    #[cfg(not(unix))]
    {
        let _ = (options, mode);
    }
}

/// Sets the permission bits new directories are created with (Unix).
pub(crate) fn dir_mode(builder: &mut std::fs::DirBuilder, mode: u32) {
    #[cfg(unix)]
    {
        std::os::unix::fs::DirBuilderExt::mode(builder, mode);
    }
    #[cfg(not(unix))]
    {
        let _ = (builder, mode);
    }
}

/// Makes a directory's entries (files created, renamed or removed in it) durable. Windows
/// offers programs no such call (a directory cannot be flushed); NTFS journals its metadata,
/// and the call does nothing there.
pub(crate) fn sync_dir(path: &std::path::Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        sync_all(&File::open(path)?)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
