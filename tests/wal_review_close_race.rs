//! Regression test for review finding F4: `close()` released the LOCK while a leader that
//! kept leading for others was still writing, so a second writer could open the log and
//! acknowledge a record the old leader's late write then overwrote.

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tasklog::wal::{OpenMode, StdStorage, Storage, StorageFile, StorageLock, Wal, WalOptions};

/// Slows down writes holding the markers "HOLD" (200 ms) and "SLOW" (1.5 s: longer than
/// a second writer needs to open the log and acknowledge a record, even on a busy machine).
#[derive(Debug)]
struct SlowFile(Box<dyn StorageFile>);

impl StorageFile for SlowFile {
    fn write_all_at(&self, b: &[u8], o: u64) -> io::Result<()> {
        if b.windows(4).any(|w| w == b"HOLD") {
            std::thread::sleep(Duration::from_millis(200));
        }
        if b.windows(4).any(|w| w == b"SLOW") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        self.0.write_all_at(b, o)
    }
    storage_file_passes_to!(0; read_at, sync_data, sync_all, set_len, len, allocate, preallocate, map_all, read_all);
}

#[derive(Debug)]
struct Slow;

impl Storage for Slow {
    fn open(&self, p: &Path, m: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(SlowFile(StdStorage.open(p, m)?)))
    }
    fn create_dir_all(&self, p: &Path) -> io::Result<()> {
        StdStorage.create_dir_all(p)
    }
    fn list_dir(&self, p: &Path) -> io::Result<Vec<PathBuf>> {
        StdStorage.list_dir(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> io::Result<()> {
        StdStorage.rename(a, b)
    }
    fn remove_file(&self, p: &Path) -> io::Result<()> {
        StdStorage.remove_file(p)
    }
    fn sync_dir(&self, p: &Path) -> io::Result<()> {
        StdStorage.sync_dir(p)
    }
    fn exists(&self, p: &Path) -> bool {
        StdStorage.exists(p)
    }
    fn try_lock(&self, p: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        StdStorage.try_lock(p)
    }
}

#[test]
fn close_waits_for_a_leader_still_writing_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (wal, _) = Wal::open_with_storage(Arc::new(Slow), &d, WalOptions::default()).unwrap();
    let a = {
        let w = wal.clone();
        std::thread::spawn(move || w.append(b"HOLD-record"))
    };
    std::thread::sleep(Duration::from_millis(50));
    let c = {
        let w = wal.clone();
        std::thread::spawn(move || w.close())
    };
    std::thread::sleep(Duration::from_millis(50));
    let b = {
        let w = wal.clone();
        std::thread::spawn(move || w.submit(&[b"SLOW-record"]).and_then(|t| t.wait()))
    };
    c.join().unwrap().unwrap();
    // Once close() returned, nothing of the old handle may still write.
    let (wal2, _) = Wal::open(&d, WalOptions::default()).unwrap();
    let z = wal2.append(b"ZZZZ-record").unwrap();
    let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(ra.unwrap(), 1);
    wal2.close().unwrap();
    let (wal3, _) = Wal::open(&d, WalOptions::default()).unwrap();
    let recs = wal3.read_from(1, 10).unwrap();
    let at_z = recs.iter().find(|r| r.lsn == z).map(|r| r.payload.clone());
    assert_eq!(
        at_z.as_deref(),
        Some(&b"ZZZZ-record"[..]),
        "acknowledged record replaced; records {recs:?}"
    );
    // B's record was either acknowledged (and then it is in the log) or refused.
    if let Ok(lsn) = rb {
        assert!(
            recs.iter()
                .any(|r| r.lsn == lsn && r.payload == b"SLOW-record")
        );
    }
}
