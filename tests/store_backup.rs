//! Online backups. Goal: a backup is a consistent, verified, durable copy of a live store that
//! is itself a store, an interrupted backup is never taken for a complete one, and every
//! rotated backup restores exactly. Method: real directories for rotation and for concurrent
//! writers (4 threads submitting while backups are taken); the simulated disk for power cuts
//! at every fsync and write of a backup run, each followed by a crash image that is opened,
//! checked and restored.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tasklog::store::backup::{self, BackupInfo};
use tasklog::store::{Store, StoreOptions};
use tasklog::task::NewTask;
use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;

type Dump = BTreeMap<String, (String, Vec<(u64, String)>)>;

fn dump(store: &Store) -> Dump {
    store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| {
            let h = store
                .history(&t.id)
                .unwrap()
                .iter()
                .map(|e| (e.lsn, e.kind.to_string()))
                .collect();
            (t.id.clone(), (serde_json::to_string(&t).unwrap(), h))
        })
        .collect()
}

fn open_dump(options: StoreOptions, dir: &Path) -> Dump {
    let store = options.read_only(true).open(dir).unwrap();
    let d = dump(&store);
    store.close().unwrap();
    d
}

fn churn(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let id = format!("t{i:04}");
        store
            .submit(NewTask::new(format!("task {i}")).id(&id))
            .unwrap();
        if i % 3 != 0 {
            store.start(&id).unwrap();
            store.complete(&id, Some(serde_json::json!(i))).unwrap();
        }
    }
}

fn small() -> StoreOptions {
    StoreOptions::new()
        .segment_bytes_max(4096)
        .preallocate(false)
        .snapshots_kept(2)
        .snapshot_every_records(40)
}

#[test]
fn a_backup_is_a_store_and_restores_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small().open(tmp.path().join("db")).unwrap();
    churn(&store, 0, 100);
    let expected = dump(&store);
    let info = store.backup(tmp.path().join("b")).unwrap();
    assert_eq!(info.lsn, store.last_lsn());
    assert_eq!(info.tasks, 100);
    // The store goes on; the backup does not change.
    churn(&store, 100, 110);
    assert_eq!(
        open_dump(StoreOptions::new(), &tmp.path().join("b")),
        expected
    );
    let (checked, _) = backup::check(&tasklog::wal::StdStorage, &tmp.path().join("b")).unwrap();
    assert_eq!(checked, info);
    let restored = backup::restore(
        Arc::new(tasklog::wal::StdStorage),
        &tmp.path().join("b"),
        &tmp.path().join("r"),
    )
    .unwrap();
    assert_eq!(restored.lsn, info.lsn);
    assert_eq!(
        open_dump(StoreOptions::new(), &tmp.path().join("r")),
        expected
    );
    // A restored store takes writes and keeps them.
    let r = StoreOptions::new().open(tmp.path().join("r")).unwrap();
    r.submit(NewTask::new("new").id("new")).unwrap();
    r.close().unwrap();
    drop(r);
    assert_eq!(
        open_dump(StoreOptions::new(), &tmp.path().join("r")).len(),
        101
    );
    // A backup never overwrites a store or a backup.
    let e = store.backup(tmp.path().join("b")).unwrap_err();
    assert!(e.to_string().contains("already holds"), "{e}");
    let e = store.backup(tmp.path().join("db")).unwrap_err();
    assert!(e.to_string().contains("already holds"), "{e}");
    store.close().unwrap();
}

/// A damaged backup is refused by `check` and `restore`, naming the file.
#[test]
fn a_damaged_backup_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small().open(tmp.path().join("db")).unwrap();
    churn(&store, 0, 20);
    let info = store.backup(tmp.path().join("b")).unwrap();
    let snap = tmp
        .path()
        .join("b/snapshots")
        .join(format!("snap-{:020}.snap", info.lsn));
    let mut bytes = std::fs::read(&snap).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&snap, bytes).unwrap();
    let e = backup::restore(
        Arc::new(tasklog::wal::StdStorage),
        &tmp.path().join("b"),
        &tmp.path().join("r"),
    )
    .unwrap_err();
    assert!(e.is_corruption() && e.to_string().contains("snap-"), "{e}");
    assert!(!tmp.path().join("r").exists(), "nothing restored");
    let manifest = tmp.path().join("b/BACKUP");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&manifest, bytes).unwrap();
    let e = backup::check(&tasklog::wal::StdStorage, &tmp.path().join("b")).unwrap_err();
    assert!(e.is_corruption() && e.to_string().contains("BACKUP"), "{e}");
}

/// Four threads submit while backups are taken: every backup opens, holds every task
/// acknowledged before it began, and each of its tasks is exactly as the store had it at the
/// backup's LSN (its history is a prefix of the final one, nothing invented).
#[test]
fn backups_under_concurrent_writers_are_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small().open(tmp.path().join("db")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{i:05}");
                    store.submit(NewTask::new("x").id(&id)).unwrap();
                    store.start(&id).unwrap();
                    store.complete(&id, None).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut taken = Vec::new();
    for k in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let before: Vec<String> = store
            .all_tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        let info = store.backup(tmp.path().join(format!("b{k}"))).unwrap();
        taken.push((before, info));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let last = dump(&store);
    store.close().unwrap();
    for (before, info) in taken {
        let got = open_dump(StoreOptions::new(), &info.dir);
        assert_eq!(got.len() as u64, info.tasks);
        for id in &before {
            assert!(
                got.contains_key(id),
                "{id} acknowledged before the backup is missing"
            );
        }
        for (id, (_, history)) in &got {
            let full = &last.get(id).expect("a task from nowhere").1;
            assert!(history.iter().all(|e| e.0 <= info.lsn));
            let prefix: Vec<_> = full.iter().filter(|e| e.0 <= info.lsn).cloned().collect();
            assert_eq!(
                history, &prefix,
                "{id}: not the store's history at LSN {}",
                info.lsn
            );
        }
    }
}

/// Rotation keeps the newest N, removes interrupted runs, and each kept backup restores to
/// exactly the state the store had when it was taken.
#[test]
fn every_rotated_backup_restores_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let store = small().open(tmp.path().join("db")).unwrap();
    let mut states = Vec::new();
    for k in 0..5 {
        churn(&store, k * 20, k * 20 + 20);
        let r = backup::backup_rotate(&store, &root, 3).unwrap();
        states.push((r.backup.dir.clone(), dump(&store)));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // An interrupted run: a backup directory without a manifest.
    let interrupted = root.join("backup-99999999T999999.999Z");
    std::fs::create_dir_all(interrupted.join("wal")).unwrap();
    let kept = backup::list_rotated(&root).unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(!kept.contains(&interrupted));
    let expected: Vec<_> = states.iter().skip(2).map(|s| s.0.clone()).collect();
    assert_eq!(kept, expected);
    for (i, (dir, state)) in states.iter().skip(2).enumerate() {
        let target = tmp.path().join(format!("restored{i}"));
        backup::restore(Arc::new(tasklog::wal::StdStorage), dir, &target).unwrap();
        assert_eq!(
            &open_dump(StoreOptions::new(), &target),
            state,
            "{}",
            dir.display()
        );
    }
    let r = backup::backup_rotate(&store, &root, 3).unwrap();
    assert_eq!(r.interrupted_removed, vec![interrupted.clone()]);
    assert!(!interrupted.exists());
    assert_eq!(backup::list_rotated(&root).unwrap().len(), 3);
    store.close().unwrap();
}

fn sim_options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(4096)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
}

/// Power cut during a backup, at every fsync and every write of the run (the fault stops it
/// there, then only what was durable survives, unsynced appends torn at 512 bytes): the store
/// opens exactly; the backup is either complete (checks, restores and opens exactly) or not
/// taken for one: `check`/`restore` refuse it, and opening it as a store is refused too.
#[test]
fn a_power_cut_during_a_backup_never_leaves_a_backup_that_looks_complete() {
    let mut complete = 0;
    let mut refused = 0;
    for fault in ["sync", "write"] {
        for n in 1.. {
            let sim = SimStorage::new(n);
            sim.set_torn_crash(Some(512));
            let store = sim_options(&sim).open("/db").unwrap();
            churn(&store, 0, 30);
            store.snapshot().unwrap();
            churn(&store, 30, 40);
            let expected = dump(&store);
            match fault {
                "sync" => sim.fail_nth_sync(n),
                _ => sim.fail_nth_write(n),
            }
            let result = store.backup("/bk");
            sim.clear_faults();
            let image = sim.crash();
            drop(store);
            let reopened = sim_options(&image).open("/db").unwrap();
            assert_eq!(dump(&reopened), expected, "{fault} {n}: the store");
            reopened.close().unwrap();
            match backup::check(&image, Path::new("/bk")) {
                Ok(_) => {
                    complete += 1;
                    backup::restore(Arc::new(image.clone()), Path::new("/bk"), Path::new("/r"))
                        .unwrap();
                    let r = sim_options(&image).read_only(true).open("/r").unwrap();
                    assert_eq!(dump(&r), expected, "{fault} {n}: restored");
                }
                Err(_) => {
                    refused += 1;
                    assert!(
                        result.is_err(),
                        "{fault} {n}: a backup that returned Ok must survive the power cut"
                    );
                    if let Ok(s) = sim_options(&image).read_only(true).open("/bk") {
                        // Only an empty store, never a partial one, can open.
                        assert!(
                            s.is_empty() && expected.is_empty() || dump(&s) == expected,
                            "{fault} {n}: an interrupted backup opened as a store"
                        );
                    }
                }
            }
            if result.is_ok() {
                break;
            }
        }
    }
    println!("power cuts during backup: {complete} complete, {refused} refused");
    assert!(refused >= 4 && complete >= 2);
}

/// Temp files of an interrupted snapshot or backup are removed at the next writer open.
#[test]
fn leftover_temp_files_are_removed_at_the_next_open() {
    let sim = SimStorage::new(3);
    let store = sim_options(&sim).open("/db").unwrap();
    churn(&store, 0, 10);
    store.close().unwrap();
    drop(store);
    for (path, bytes) in [
        ("/db/snapshots/snap-00000000000000000005.snap.tmp", vec![]),
        (
            "/db/snapshots/snap-00000000000000000009.snap.tmp",
            vec![7u8; 100],
        ),
        ("/db/BACKUP.tmp", vec![1u8; 64]),
    ] {
        sim.put_file(Path::new(path), bytes);
    }
    let image = sim.crash();
    let ro = sim_options(&image).read_only(true).open("/db").unwrap();
    drop(ro);
    assert!(
        image.exists(Path::new("/db/BACKUP.tmp")),
        "read-only opens change nothing"
    );
    let store = sim_options(&image).open("/db").unwrap();
    store.close().unwrap();
    // Durably removed: gone after another power cut too.
    let after = image.crash();
    let left: Vec<_> = ["/db/snapshots", "/db"]
        .iter()
        .flat_map(|d| after.list_dir(Path::new(d)).unwrap())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[allow(dead_code)]
fn _info_is_debug(i: &BackupInfo) -> String {
    format!("{i:?}")
}

/// The manifest reads by hand as `docs/format.md` says, byte by byte.
#[test]
fn the_manifest_reads_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small().open(tmp.path().join("db")).unwrap();
    churn(&store, 0, 7);
    let info = store.backup(tmp.path().join("b")).unwrap();
    let m = std::fs::read(tmp.path().join("b/BACKUP")).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
    assert_eq!(m.len(), 64);
    assert_eq!(&m[0..8], b"TLBACKUP");
    assert_eq!(u32_at(8), 1, "version");
    assert_eq!(u32_at(12), 0, "flags");
    assert_eq!(u64_at(16), info.lsn);
    let snap = std::fs::read(
        tmp.path()
            .join("b/snapshots")
            .join(format!("snap-{:020}.snap", info.lsn)),
    )
    .unwrap();
    assert_eq!(u64_at(24), snap.len() as u64);
    assert_eq!(u32_at(32), crc32fast_hash(&snap));
    assert_eq!(u32_at(36), 0);
    assert_eq!(u64_at(40) as i64, info.created_ms);
    assert_eq!(u64_at(48), 7, "tasks");
    assert_eq!(u32_at(56), 0);
    assert_eq!(u32_at(60), crc32fast_hash(&m[..60]));
    // The log: one empty segment starting after the snapshot.
    let segs: Vec<_> = std::fs::read_dir(tmp.path().join("b/wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert_eq!(segs, [format!("{:020}.seg", info.lsn + 1)]);
    store.close().unwrap();
}

/// CRC-32 (IEEE), bit by bit: an independent reading of the manifest's checksums.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A snapshot stopped at each of its fsyncs and writes (a failing disk, or the process killed
/// there: the file system keeps what was done, as ext4 may keep an unsynced directory entry
/// after a power cut): the temp files it leaves are gone after the next writer open, durably
/// (another power cut does not bring them back).
#[test]
fn temp_files_left_by_interrupted_snapshots_are_removed_at_the_next_open() {
    let mut left_behind = 0;
    for fault in ["sync", "write"] {
        for n in 1..8 {
            let sim = SimStorage::new(n);
            let store = sim_options(&sim).open("/db").unwrap();
            churn(&store, 0, 10);
            match fault {
                "sync" => sim.fail_nth_sync(n),
                _ => sim.fail_nth_write(n),
            }
            let _ = store.snapshot();
            sim.clear_faults();
            drop(store);
            let image = sim;
            let tmp_files = |disk: &SimStorage| -> Vec<std::path::PathBuf> {
                ["/db/snapshots", "/db"]
                    .iter()
                    .flat_map(|d| disk.list_dir(Path::new(d)).unwrap_or_default())
                    .filter(|p| p.to_string_lossy().ends_with(".tmp"))
                    .collect()
            };
            left_behind += tmp_files(&image).len();
            let store = sim_options(&image)
                .open("/db")
                .unwrap_or_else(|e| panic!("{fault} {n}: {e}"));
            store.close().unwrap();
            drop(store);
            assert!(tmp_files(&image).is_empty(), "{fault} {n}");
            assert!(tmp_files(&image.crash()).is_empty(), "{fault} {n}");
        }
    }
    assert!(
        left_behind > 0,
        "no case left a temp file: the test proves nothing"
    );
}
