//! Goal: each promise of online backups (`src/store/backup.rs`) that a deliberately broken
//! build used to pass (issue #23, cargo-mutants, session 14) has a test here that fails when
//! the promise is broken: a backup never holds an event the store itself could still lose; a
//! backup whose files do not read back is refused, not declared complete; a rotation removes
//! only its own interrupted backups, never other directories or files under its root, and
//! keeping 0 keeps every backup.
//!
//! Method: stores on the simulated disk (`SimStorage`, whose `crash()` keeps only what was made
//! durable), wrapped in a disk that silently flips a bit of what it writes; real directories
//! for the rotation (it works on the real file system only). The mutants each test kills are
//! listed in docs/mutation-survivors.md ("store/backup.rs (session 14)").

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;

use tasklog::NewTask;
use tasklog::store::backup;
use tasklog::store::{Store, StoreOptions};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{Durability, OpenMode, Storage, StorageFile};

fn buffered_store(sim: &SimStorage) -> Store {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .durability(Durability::Buffered)
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap()
}

/// `Store::backup` syncs the log before it writes: with `Buffered` durability (acknowledged
/// before any fdatasync) a power cut right after a backup must not leave the store behind its
/// own backup, holding fewer events than a copy that was handed out as consistent (kills the
/// deleted `!` in `if !read_only`, the sync skipped for writers).
#[test]
fn a_power_cut_after_a_backup_leaves_the_store_no_older_than_the_backup() {
    let sim = SimStorage::new(143);
    let store = buffered_store(&sim);
    for i in 0..10 {
        let id = format!("t{i}");
        store.submit(NewTask::new("job").id(&id)).unwrap();
        store.start(&id).unwrap();
    }
    let info = store.backup("/backup").unwrap();
    assert_eq!((info.lsn, info.tasks), (store.last_lsn(), 10));
    // The power is cut right after the backup, before any sync or close.
    let after = sim.crash();
    drop(store);

    let store = buffered_store(&after);
    assert!(
        store.last_lsn() >= info.lsn,
        "the store reopens at LSN {}, behind its backup at {}",
        store.last_lsn(),
        info.lsn
    );
    assert_eq!(store.len(), 10);
    // Its start survived (the open then applies the interrupted-work policy to it).
    let kinds: Vec<_> = store
        .history("t9")
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(&kinds[..2], ["created", "started"]);
    store.close().unwrap();
    let copy = StoreOptions::new()
        .storage(Arc::new(after.clone()))
        .read_only(true)
        .open(Path::new("/backup"))
        .unwrap();
    assert_eq!(copy.last_lsn(), info.lsn);
}

/// The simulated disk, except that every write to a file under `/backup/snapshots` lands with
/// one bit flipped (a failing disk or controller that reports success).
#[derive(Debug)]
struct FlipsBackupWrites {
    inner: SimStorage,
}

#[derive(Debug)]
struct FlippingFile {
    inner: Box<dyn StorageFile>,
}

impl StorageFile for FlippingFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut bad = buf.to_vec();
        if let Some(b) = bad.get_mut(buf.len() / 2) {
            *b ^= 0x10;
        }
        self.inner.write_all_at(&bad, offset)
    }
    storage_file_passes_to!(inner; read_at, sync_data, sync_all, set_len, len, allocate, zeros_from);
}

impl Storage for FlipsBackupWrites {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let file = self.inner.open(path, mode)?;
        if path.starts_with("/backup/snapshots") {
            Ok(Box::new(FlippingFile { inner: file }))
        } else {
            Ok(file)
        }
    }
    crate::storage_but_open_passes_to!(inner);
}

/// `verify_store`: a backup is opened and checked before its manifest is written, so a copy
/// that does not read back (here: the disk flipped a bit of its snapshot) is an error and never
/// gets a manifest; `check` then refuses the directory as no complete backup (kills
/// `verify_store` → `Ok(())`: the damaged copy was declared complete).
#[test]
fn a_backup_that_does_not_read_back_is_refused_and_gets_no_manifest() {
    let sim = SimStorage::new(144);
    let store = StoreOptions::new()
        .storage(Arc::new(FlipsBackupWrites { inner: sim.clone() }))
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap();
    for i in 0..10 {
        store
            .submit(NewTask::new("job").id(format!("t{i}")))
            .unwrap();
    }
    let err = store.backup("/backup").unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(
        !sim.exists(Path::new("/backup/BACKUP")),
        "a manifest was written for a copy that does not read back"
    );
    let err = backup::check(&sim, Path::new("/backup")).unwrap_err();
    assert!(err.to_string().contains("not a complete backup"), "{err}");
    store.close().unwrap();
}

/// `rotated_dirs`: a rotation lists, and removes as interrupted, only directories named
/// `backup-*` under its root: another directory there and a file named like a backup stay,
/// and the rotation succeeds (kills `&&` → `||` in the filter: the foreign directory was
/// removed as an interrupted backup, the file made the rotation fail).
#[test]
fn a_rotation_leaves_other_directories_and_files_under_its_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let store = StoreOptions::new().open(tmp.path().join("db")).unwrap();
    store.submit(NewTask::new("job").id("a")).unwrap();
    let other_dir = root.join("keep-me");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(other_dir.join("notes"), b"mine").unwrap();
    let named_like_one = root.join("backup-notes.txt");
    std::fs::write(&named_like_one, b"not a backup").unwrap();

    let first = backup::backup_rotate(&store, &root, 1).unwrap();
    assert!(first.interrupted_removed.is_empty(), "{first:?}");
    store.submit(NewTask::new("job").id("b")).unwrap();
    let second = backup::backup_rotate(&store, &root, 1).unwrap();
    assert_eq!(second.removed, vec![first.backup.dir.clone()]);
    assert!(second.interrupted_removed.is_empty(), "{second:?}");
    assert_eq!(
        backup::list_rotated(&root).unwrap(),
        vec![second.backup.dir.clone()]
    );
    assert!(
        other_dir.join("notes").exists(),
        "a foreign directory was removed"
    );
    assert!(named_like_one.exists(), "a foreign file was removed");
    store.close().unwrap();
}

/// `backup_rotate` with `keep` 0 keeps every backup, as documented ("keep 0: keep all"),
/// and removes none (kills `keep > 0` → `>=`: every backup, the new one included, was
/// removed).
#[test]
fn a_rotation_keeping_zero_keeps_every_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let store = StoreOptions::new().open(tmp.path().join("db")).unwrap();
    let mut taken = Vec::new();
    for i in 0..3 {
        store
            .submit(NewTask::new("job").id(format!("t{i}")))
            .unwrap();
        let r = backup::backup_rotate(&store, &root, 0).unwrap();
        assert!(r.removed.is_empty(), "{r:?}");
        taken.push(r.backup.dir);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(backup::list_rotated(&root).unwrap(), taken);
    store.close().unwrap();
}

/// A clock stepped back: the root holds a complete backup named for a later time than now
/// (taken before the clock was set back). The rotation names the new backup after it, so
/// with `keep` 1 the new backup is the one kept. Before, the new backup's name sorted first
/// and the rotation removed the backup it had just taken, keeping the older one.
#[test]
fn a_rotation_with_the_clock_behind_its_newest_backup_keeps_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let store = StoreOptions::new().open(tmp.path().join("db")).unwrap();
    store.submit(NewTask::new("job").id("a")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let from_the_future = root.join("backup-29991231T235959.999Z");
    store.backup(&from_the_future).unwrap();
    store.submit(NewTask::new("job").id("b")).unwrap();

    let rotated = backup::backup_rotate(&store, &root, 1).unwrap();
    assert_eq!(
        rotated.backup.dir,
        root.join("backup-29991231T235959.999Z-1")
    );
    assert_eq!(rotated.removed, vec![from_the_future]);
    assert_eq!(
        backup::list_rotated(&root).unwrap(),
        vec![rotated.backup.dir.clone()]
    );
    assert_eq!(rotated.backup.tasks, 2, "{rotated:?}");
    store.close().unwrap();
}
