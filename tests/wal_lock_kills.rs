//! Goal: a writer waiting for the lock (`WalOptions::lock_timeout`, the CLI's `--wait`) waits
//! politely: it backs off between attempts up to a pause of 25 ms instead of spinning, so a
//! queued writer does not take a core from the one it waits for (issue #23, mutation testing
//! of `src/wal/lock.rs`).
//!
//! Method: `wal::lock::acquire` over a storage that counts lock attempts and delegates to the
//! real file system, while this test holds the lock itself. The bound on attempts follows from
//! the pauses alone (`thread::sleep` never returns early), so a loaded machine only lowers the
//! count: no timing is asserted.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tasklog::Error;
use tasklog::wal::lock::acquire;
use tasklog::wal::{OpenMode, StdStorage, Storage, StorageFile, StorageLock};

/// The real file system, counting `try_lock` calls.
#[derive(Debug, Default)]
struct CountingLocks {
    attempts: AtomicU64,
}

impl Storage for CountingLocks {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        StdStorage.open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdStorage.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        StdStorage.list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdStorage.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdStorage.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        StdStorage.exists(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        StdStorage.try_lock(path)
    }
}

/// Kills `pause * 2` → `pause / 2` in `acquire` (the back-off halving towards zero: a waiting
/// writer would retry the lock in a busy loop, tens of thousands of attempts a second, burning
/// a core of the machine the holder needs). With pauses of 1, 2, 4, 8, 16 ms and then 25 ms, a
/// 300 ms wait makes at most about 18 attempts, whatever the load.
#[test]
fn a_writer_waiting_for_the_lock_backs_off_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let lock_file = dir.path().join("LOCK");
    let held = StdStorage
        .try_lock(&lock_file)
        .unwrap()
        .expect("the lock is free");

    let storage = CountingLocks::default();
    let timeout = Duration::from_millis(300);
    match acquire(&storage, dir.path(), &lock_file, timeout) {
        Err(Error::Locked {
            lock_file: named,
            waited_ms,
            ..
        }) => {
            assert_eq!(named, lock_file);
            assert!(
                waited_ms >= 300,
                "refused after {waited_ms} ms of a 300 ms wait"
            );
        }
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    let attempts = storage.attempts.load(Ordering::Relaxed);
    assert!(
        (2..=30).contains(&attempts),
        "{attempts} lock attempts in a 300 ms wait (backing off to 25 ms makes at most ~18)"
    );

    // Released, the same waiter gets it on its next attempt.
    drop(held);
    acquire(&storage, dir.path(), &lock_file, timeout).expect("the lock was released");
}
