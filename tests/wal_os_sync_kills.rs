//! Goal: the real file system's side of the I/O seam (`StdStorage`, `StdStorageModes`,
//! `src/wal/storage.rs`, and the OS calls under them, `src/wal/os.rs`) really makes durable
//! what the log says it makes durable (issue #23: cargo-mutants showed that replacing
//! `sync_data`, `sync_all` or `sync_dir` there with `Ok(())` failed no test):
//!
//! - a new segment is fsynced, and then its directory, before the log appends to it;
//! - an acknowledged append has fdatasynced its segment;
//! - the same for a store whose files have their own mode bits (`StdStorageModes`);
//! - `drop_cache` evicts the file's cached pages; `allocate` reserves blocks without changing
//!   the file's length.
//!
//! Method. The simulated disk cannot see these: it sits *above* `StdStorage`. A power cut
//! cannot be simulated on the real file system either, so this test counts the syncs at the
//! OS boundary: the test binary defines the C functions `fsync` and `fdatasync` itself (the
//! executable's own definitions win over the C library's, so every call from `std` lands
//! here), records which file each call was for (`/proc/self/fd`), and forwards it to the kernel
//! with the raw system call. The page cache is read through `cachestat(2)` (Linux 6.5+;
//! skipped with a message where the kernel lacks it). Linux on x86_64 and aarch64 only.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
// The interposed C functions, the variadic `syscall` and `cachestat` are foreign calls.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long, c_uint};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tasklog::NewTask;
use tasklog::store::StoreOptions;
use tasklog::wal::storage::{OpenMode, StdStorage, StdStorageModes, Storage};
use tasklog::wal::{Wal, WalOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Fsync,
    Fdatasync,
}

/// Every `fsync`/`fdatasync` the process made, with the path of its file.
static TRACE: Mutex<Vec<(Call, PathBuf)>> = Mutex::new(Vec::new());

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const FSYNC: std::ffi::c_long = 74;
    pub const FDATASYNC: std::ffi::c_long = 75;
    pub const CACHESTAT: std::ffi::c_long = 451;
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const FSYNC: std::ffi::c_long = 82;
    pub const FDATASYNC: std::ffi::c_long = 83;
    pub const CACHESTAT: std::ffi::c_long = 451;
}

unsafe extern "C" {
    fn syscall(number: c_long, ...) -> c_long;
}

fn record(call: Call, fd: c_int) {
    if let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        TRACE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((call, path));
    }
}

/// `fsync(2)`, recorded. Same contract as the C library's: 0, or -1 with `errno` set (the raw
/// `syscall` sets it).
#[unsafe(no_mangle)]
pub extern "C" fn fsync(fd: c_int) -> c_int {
    record(Call::Fsync, fd);
    // SAFETY: the fsync system call takes one int and touches no memory of ours.
    unsafe { syscall(nr::FSYNC, fd as c_long) as c_int }
}

/// `fdatasync(2)`, recorded.
#[unsafe(no_mangle)]
pub extern "C" fn fdatasync(fd: c_int) -> c_int {
    record(Call::Fdatasync, fd);
    // SAFETY: as above.
    unsafe { syscall(nr::FDATASYNC, fd as c_long) as c_int }
}

/// The calls recorded for paths under `root` (canonical), emptying nothing: tests run in
/// parallel, each under its own temporary directory.
fn calls_under(root: &Path) -> Vec<(Call, PathBuf)> {
    let root = root.canonicalize().unwrap();
    TRACE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, p)| p.starts_with(&root))
        .cloned()
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().canonicalize().unwrap())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// A log opened on the real file system fsyncs its new segment and then the log directory
/// before `open` returns, and an acknowledged append has fdatasynced the segment.
///
/// Kills: `StdFile::sync_all`, `StdFile::sync_data`, `StdStorage::sync_dir` (storage.rs) and
/// `os::sync_all`, `os::sync_data`, `os::sync_dir` (os.rs) → `Ok(())`. The bugs they stand
/// for: on real disks (the only place a power cut happens) a new segment's name, or an
/// acknowledged record, is lost at a power cut while every test on the simulated disk passes.
#[test]
fn a_log_on_the_real_file_system_syncs_its_segment_and_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let (wal, _) = Wal::open(&log, WalOptions::default().preallocate(false)).unwrap();
    let log = log.canonicalize().unwrap();
    let seg = segments(&log).into_iter().next().expect("a segment");

    let at_open = calls_under(&log);
    let seg_fsync = at_open
        .iter()
        .position(|c| *c == (Call::Fsync, seg.clone()))
        .unwrap_or_else(|| panic!("the new segment was never fsynced: {at_open:?}"));
    assert!(
        at_open[seg_fsync..].contains(&(Call::Fsync, log.clone())),
        "the log directory was not fsynced after its new segment: {at_open:?}"
    );

    let before = at_open.len();
    wal.append(b"acknowledged").unwrap();
    let after = calls_under(&log);
    assert!(
        after[before..].contains(&(Call::Fdatasync, seg.clone())),
        "an append was acknowledged without an fdatasync of its segment: {:?}",
        &after[before..]
    );
    wal.close().unwrap();
}

/// The same for a store whose files have their own mode bits (`StoreOptions::file_mode`,
/// which puts `StdStorageModes` under it): its log directory is fsynced once a segment is made,
/// and a submitted task's record is fdatasynced before `submit` returns.
///
/// Kills: `StdStorageModes::sync_dir` → `Ok(())` (storage.rs), and the file syncs above through
/// the other storage.
#[test]
fn a_store_with_its_own_file_modes_syncs_its_log_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = StoreOptions::new()
        .file_mode(0o640)
        .snapshot_every_records(0)
        .open(&dir)
        .unwrap();
    let dir = dir.canonicalize().unwrap();
    let at_open = calls_under(&dir);
    let seg = at_open
        .iter()
        .find(|(c, p)| *c == Call::Fsync && p.extension().is_some_and(|e| e == "seg"))
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no segment fsynced at open: {at_open:?}"));
    let seg_dir = seg.parent().unwrap().to_path_buf();
    assert!(
        at_open.contains(&(Call::Fsync, seg_dir.clone())),
        "{} never fsynced: {at_open:?}",
        seg_dir.display()
    );
    let before = at_open.len();
    store.submit(NewTask::new("t").id("t")).unwrap();
    let after = calls_under(&dir);
    assert!(
        after[before..].contains(&(Call::Fdatasync, seg.clone())),
        "a submit returned without an fdatasync of the log: {:?}",
        &after[before..]
    );
    store.close().unwrap();
}

/// What `cachestat(2)` says of a whole file.
#[repr(C)]
#[derive(Debug, Default)]
struct CacheStat {
    cache: u64,
    dirty: u64,
    writeback: u64,
    evicted: u64,
    recently_evicted: u64,
}

/// The page-cache state of `file`, or `None` where the kernel has no `cachestat`.
fn cachestat(file: &impl AsRawFd) -> Option<CacheStat> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    let range = Range { off: 0, len: 0 }; // len 0: to the end of the file
    let mut stat = CacheStat::default();
    let flags: c_uint = 0;
    // SAFETY: cachestat reads `range` and writes `stat`, both live `repr(C)` values of the
    // layout the kernel documents (struct cachestat_range, struct cachestat).
    let rc = unsafe {
        syscall(
            nr::CACHESTAT,
            file.as_raw_fd() as c_long,
            &range as *const Range,
            &mut stat as *mut CacheStat,
            flags,
        )
    };
    (rc == 0).then_some(stat)
}

/// `StdStorage`'s `sync_data` and `sync_all` leave no dirty page of the file in the cache, and
/// `drop_cache` leaves no page of it at all (the open after a failed fsync relies on it to
/// read what the disk holds, not what the cache says).
///
/// Kills: `StdFile::drop_cache` and `os::drop_cache` → `Ok(())`; the `sync_data`/`sync_all`
/// mutants again, seen from the cache instead of the call.
#[test]
fn syncs_leave_no_dirty_page_and_drop_cache_leaves_none() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let probe = std::fs::File::create(tmp.path().join("probe")).unwrap();
    if cachestat(&probe).is_none() {
        // A kernel feature, not an install: `.ci/run` (TASKLOG_REQUIRE_EXTRAS=1) fails here
        // rather than pass without the check.
        let msg = "this kernel has no cachestat(2) (Linux 6.5+)";
        if std::env::var_os("TASKLOG_REQUIRE_EXTRAS").is_some_and(|v| v == "1") {
            panic!("{msg}, but TASKLOG_REQUIRE_EXTRAS=1");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let f = StdStorage.open(&path, OpenMode::CreateNew).unwrap();
    let std_file = std::fs::File::open(&path).unwrap();
    let data = vec![0x5a_u8; 1 << 20];

    f.write_all_at(&data, 0).unwrap();
    let dirty = cachestat(&std_file).unwrap();
    // NOTE: the kernel's own writeback may have flushed the pages already (a busy machine);
    // then this part cannot tell a sync from none, and says so instead of failing. The syncs
    // themselves are also counted by the tests above.
    if dirty.dirty == 0 {
        eprintln!("the pages were written back before the sync: {dirty:?}");
    }
    f.sync_data().unwrap();
    let synced = cachestat(&std_file).unwrap();
    assert_eq!(
        synced.dirty + synced.writeback,
        0,
        "after sync_data: {synced:?}"
    );

    f.write_all_at(&data, 1 << 20).unwrap();
    f.sync_all().unwrap();
    let synced = cachestat(&std_file).unwrap();
    assert_eq!(
        synced.dirty + synced.writeback,
        0,
        "after sync_all: {synced:?}"
    );
    assert!(synced.cache > 0, "the written pages are cached: {synced:?}");

    f.drop_cache().unwrap();
    let dropped = cachestat(&std_file).unwrap();
    assert_eq!(dropped.cache, 0, "after drop_cache: {dropped:?}");
}

/// `allocate` reserves the blocks without moving the end of the file (`fallocate` with
/// `KEEP_SIZE`): reads still end at the data.
///
/// Kills: `StdFile::allocate` and `os::reserve` → `Ok(())`.
#[test]
fn allocate_reserves_blocks_and_keeps_the_length() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let f = StdStorage.open(&path, OpenMode::CreateNew).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    f.allocate(1 << 20).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(f.len().unwrap(), 4, "allocate changed the length");
    assert!(
        meta.blocks() * 512 >= 1 << 20,
        "1 MiB asked, {} bytes of blocks allocated",
        meta.blocks() * 512
    );
}

/// An error the OS reports is passed on, and only "not supported here" is taken for the
/// fallback (run unreserved, keep the cache): a preallocation or reservation past the file
/// system's largest file (`EFBIG`), and dropping the cache of something that is not a regular
/// file (`ESPIPE` on a FIFO), are errors.
///
/// Kills (os.rs): the fallback guards of `reserve`, `preallocate` and `drop_cache` → `true`, and
/// each `== ENOSYS`/`== EOPNOTSUPP` → `!=` (any error taken for "unsupported"). The bug: a
/// segment created on a disk that cannot hold it, or a cache never dropped, with no error.
#[test]
fn os_errors_other_than_unsupported_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let f = StdStorage.open(&path, OpenMode::CreateNew).unwrap();
    // 1 PiB: past ext4's, xfs's and btrfs's largest file is refused before any block is
    // allocated (a size that only exceeds the free space would fill the disk first).
    let huge = 1u64 << 50;
    let err = f.allocate(huge).expect_err("reserving 1 PiB");
    assert_ne!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
    let err = f.preallocate(huge).expect_err("preallocating 1 PiB");
    assert_ne!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
    assert_eq!(f.len().unwrap(), 0);

    let fifo = tmp.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED the FIFO case: no mkfifo");
        return;
    }
    // Read and write: opening a FIFO so does not wait for a writer on Linux.
    let p = StdStorage.open(&fifo, OpenMode::ReadWrite).unwrap();
    p.drop_cache().expect_err("dropping the cache of a FIFO");
}

/// What the real file system's seam says it does, for both of its types (`StdStorage`, and
/// `StdStorageModes` under a store with its own file modes): `rename` moves the file (over an
/// existing one), `remove_file` removes it, `exists` tells, and `lock_holder` returns what the
/// holder of a lock wrote about itself (this process's id). The simulated disk stands in for
/// these in every other log test, so only here does breaking them fail a test.
///
/// Kills (storage.rs): `rename`, `remove_file` → `Ok(())`, `exists` → `false`, and
/// `lock_holder` → `None` or a few bytes, in both impls. The bugs: a snapshot or staged segment
/// never put in place, a file left behind that a cleanup reported removed, a writer waiting in
/// vain told nothing of who holds the lock.
#[test]
fn the_real_file_system_seam_does_what_it_says() {
    let modes = StdStorageModes::from_file_mode(0o640);
    let seams: [(&str, &dyn Storage); 2] =
        [("StdStorage", &StdStorage), ("StdStorageModes", &modes)];
    for (name, seam) in seams {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        assert!(seam.exists(&a), "{name}: exists");
        seam.rename(&a, &b).unwrap();
        assert!(!a.exists(), "{name}: rename left its source");
        assert_eq!(std::fs::read(&b).unwrap(), b"new", "{name}: rename");
        seam.remove_file(&b).unwrap();
        assert!(!b.exists(), "{name}: remove_file");
        assert!(!seam.exists(&b), "{name}: exists of a removed file");

        let lock_path = tmp.path().join("LOCK");
        let lock = seam.try_lock(&lock_path).unwrap().expect("a free lock");
        let holder = seam.lock_holder(&lock_path).expect("the holder's line");
        let line = String::from_utf8(holder).unwrap();
        assert!(
            line.contains(&format!("pid={}", std::process::id())),
            "{name}: holder {line:?}"
        );
        drop(lock);
    }
}

/// Directories get the file mode's bits plus search for every class that may read, and keep
/// search bits the file mode already has (a store asked for `0o750` files makes `0o750`
/// directories, not `0o640` ones its own group cannot enter).
///
/// Kills (storage.rs, `from_file_mode`): `file_mode | search` → `^` (the same for modes without
/// execute bits, which is all `store_file_modes` tries).
#[test]
fn directory_modes_keep_the_search_bits_a_file_mode_has() {
    assert_eq!(StdStorageModes::from_file_mode(0o640).dir_mode, 0o750);
    assert_eq!(StdStorageModes::from_file_mode(0o750).dir_mode, 0o750);
    assert_eq!(StdStorageModes::from_file_mode(0o755).dir_mode, 0o755);
}

/// A log opened at a relative path with one component (a directory to create in the current
/// directory) opens, and the current directory is what gets fsynced for its new entry.
///
/// Kills (storage.rs, `create_dir_durable`): the guard `p.as_os_str().is_empty()` → `false`
/// (the parent of `log` is the empty path, whose fsync fails with `ENOENT`: every relative
/// open of a new log refused). Changes the process's current directory for the duration; the
/// other tests here use absolute paths only.
#[test]
fn a_log_at_a_relative_path_opens_and_syncs_the_current_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let was = std::env::current_dir().unwrap();
    std::env::set_current_dir(tmp.path()).unwrap();
    // Closed before going back: the log's paths are relative to this directory.
    let opened =
        Wal::open("log", WalOptions::default().preallocate(false)).and_then(|(wal, _)| wal.close());
    std::env::set_current_dir(was).unwrap();
    opened.expect("a log at a relative path");
    let root = tmp.path().canonicalize().unwrap();
    assert!(
        calls_under(&root).contains(&(Call::Fsync, root.clone())),
        "the current directory was not fsynced for the new log directory"
    );
}

/// `backup_rotate` fsyncs the backup root after it removes old backups, so that a power cut
/// cannot bring a removed backup's name back half-deleted (it works on the real file system
/// only: no storage seam, so the simulated disk cannot see it).
///
/// Method: two rotations that each take one backup, the first removing none (`keep` 0), the
/// second removing one (`keep` 1); the second fsyncs the root exactly once more.
/// Kills: the root's `sync_dir` after removals deleted, and its `!removed.is_empty()` guard
/// turned around (store/backup.rs, session 14's run: "needs a seam").
#[test]
fn a_backup_rotation_that_removes_backups_fsyncs_their_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().open(tmp.path().join("store")).unwrap();
    store.submit(NewTask::new("t")).unwrap();
    let root = tmp.path().join("backups");
    tasklog::store::backup::backup_rotate(&store, &root, 0).unwrap();
    let root = root.canonicalize().unwrap();
    let root_fsyncs = || {
        calls_under(&root)
            .iter()
            .filter(|c| **c == (Call::Fsync, root.clone()))
            .count()
    };
    let at_start = root_fsyncs();
    let kept_all = tasklog::store::backup::backup_rotate(&store, &root, 0).unwrap();
    assert!(kept_all.removed.is_empty());
    let without_removal = root_fsyncs() - at_start;
    let before = root_fsyncs();
    let rotated = tasklog::store::backup::backup_rotate(&store, &root, 1).unwrap();
    assert_eq!(rotated.removed.len(), 2, "{rotated:?}");
    assert_eq!(
        root_fsyncs() - before,
        without_removal + 1,
        "a rotation that removed backups must fsync their directory once more"
    );
}
