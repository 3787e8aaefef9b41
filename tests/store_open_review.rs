//! Goal: pin the open-time findings of the outside durability review (issue #24): read-only
//! opens beside a writer that snapshots and compacts never report false corruption (4); new
//! directories survive a power cut because their parent is synced, and `repair` makes its
//! quarantine directory durable before cutting (8); a snapshot whose header disagrees with its
//! file name is skipped, and temp files of a failed snapshot write are removed by the next
//! writer open (11).
//!
//! Method: stores on the simulated disk (`SimStorage`), which loses a directory whose entry in
//! its parent was not synced, and keeps only synced bytes at a power cut (`crash`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tasklog::NewTask;
use tasklog::store::{Store, StoreOptions};
use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;

fn options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        // NOTE: small segments: the simulated disk copies a whole file on each fsync.
        .segment_bytes_max(4 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
}

fn open(sim: &SimStorage) -> Store {
    options(sim).open("/data/db").unwrap()
}

/// Finding 8: a store created on a fresh disk, an acknowledged task, a power cut: the task is
/// there. Before, `/data`, `/data/db` and `/data/db/wal` were never synced into their parents,
/// and the power cut took the whole store.
#[test]
fn a_new_store_survives_a_power_cut_right_after_its_first_acknowledgement() {
    let sim = SimStorage::new(1);
    let store = open(&sim);
    store.submit(NewTask::new("t").id("t")).unwrap();
    let image = sim.crash();
    drop(store);
    assert_eq!(open(&image).get("t").unwrap().id, "t");
}

/// Finding 8: the first snapshot creates `snapshots/`; once segments below it are removed,
/// losing that directory would lose the tasks. After a power cut every task is there.
#[test]
fn the_first_snapshot_directory_survives_a_power_cut() {
    let sim = SimStorage::new(2);
    let store = options(&sim).snapshots_kept(1).open("/data/db").unwrap();
    for i in 0..200 {
        store.submit(NewTask::new("t").id(format!("t{i}"))).unwrap();
    }
    let info = store.snapshot().unwrap();
    assert!(info.segments_removed > 0, "the test needs compaction");
    let image = sim.crash();
    drop(store);
    let again = open(&image);
    assert_eq!(again.len(), 200);
}

/// Finding 8: `repair` copies the damaged bytes into `quarantine/` before cutting them. A
/// power cut after the cut but before repair's last directory fsync (made to fail here) must
/// still find the copy: the quarantine directory's own entry was synced before the cut.
#[test]
fn repair_quarantine_is_durable_before_the_cut() {
    let sim = SimStorage::new(3);
    let store = open(&sim);
    for i in 0..20 {
        store.submit(NewTask::new("t").id(format!("t{i}"))).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let wal = Path::new("/data/db/wal");
    let mut segs: Vec<_> = sim.list_dir(wal).unwrap();
    segs.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    segs.sort();
    // Damage the middle of the first segment: not a torn tail, so repair cuts there.
    let first = segs.first().unwrap().clone();
    let mut bytes = sim.file_bytes(&first).unwrap();
    let len_before = bytes.len();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    sim.put_file(&first, bytes);
    // A rehearsal on an identical disk counts repair's fsyncs: the last is its directory sync.
    let rehearsal = sim.crash();
    let (_, syncs_before) = rehearsal.op_counts();
    tasklog::wal::repair_with_storage(&rehearsal, wal, false).unwrap();
    let syncs = rehearsal.op_counts().1 - syncs_before;
    let disk = sim.crash();
    disk.fail_nth_sync(syncs);
    assert!(tasklog::wal::repair_with_storage(&disk, wal, false).is_err());
    let image = disk.crash();
    let cut = image.file_bytes(&first).map_or(0, |b| b.len());
    assert!(cut < len_before, "the test needs the cut to be durable");
    let quarantined: Vec<_> = image.list_dir(&wal.join("quarantine")).unwrap_or_default();
    assert!(
        !quarantined.is_empty(),
        "the cut is durable but its quarantine copy was lost"
    );
}

/// Finding 11: a snapshot whose header LSN is not the LSN in its name is skipped (reported),
/// and an older one or the log is used.
#[test]
fn a_snapshot_named_for_another_lsn_is_skipped() {
    let sim = SimStorage::new(4);
    let store = open(&sim);
    for i in 0..5 {
        store.submit(NewTask::new("t").id(format!("t{i}"))).unwrap();
    }
    let info = store.snapshot().unwrap();
    for i in 5..10 {
        store.submit(NewTask::new("t").id(format!("t{i}"))).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let bytes = sim.file_bytes(&info.path).unwrap();
    let liar = info
        .path
        .with_file_name(format!("snap-{:020}.snap", info.lsn + 3));
    sim.put_file(&liar, bytes);
    let again = open(&sim);
    let report = again.recovery_report();
    assert_eq!(report.snapshot_used.as_deref(), Some(info.path.as_path()));
    assert!(
        report.snapshots_skipped.iter().any(|(p, _)| p == &liar),
        "{report:?}"
    );
    assert_eq!(again.len(), 10);
}

/// Finding 11: temp files of a snapshot write that failed are removed by the next writer open,
/// and left alone by read-only opens.
#[test]
fn snapshot_temp_files_are_removed_by_the_next_writer_open() {
    let sim = SimStorage::new(5);
    let store = open(&sim);
    store.submit(NewTask::new("t").id("t")).unwrap();
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let tmp = Path::new("/data/db/snapshots/snap-00000000000000000009.snap.tmp");
    sim.put_file(tmp, vec![7; 100]);
    let reader = options(&sim).read_only(true).open("/data/db").unwrap();
    drop(reader);
    assert!(sim.exists(tmp), "a read-only open removed a file");
    let writer = open(&sim);
    assert!(!sim.exists(tmp), "the temp file is still there");
    assert_eq!(writer.len(), 1);
}

/// Finding 4: read-only opens while a writer snapshots and compacts in a loop never fail (a
/// vanished segment or snapshot is read again, not reported as corruption) and always see at
/// least what was acknowledged before they began.
#[test]
fn read_only_opens_beside_a_compacting_writer_never_report_corruption() {
    let sim = SimStorage::new(6);
    let store = options(&sim).snapshots_kept(1).open("/data/db").unwrap();
    store.submit(NewTask::new("t").id("t0")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Tasks acknowledged so far (`len()` would also count tasks applied but not yet written).
    let acked = Arc::new(AtomicUsize::new(1));
    let writer = {
        let (store, stop, acked) = (store.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut i = 1;
            // NOTE: bounded, so a slow reader on a busy machine does not face an ever larger
            // snapshot.
            for _ in 0..100 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for _ in 0..20 {
                    store.submit(NewTask::new("t").id(format!("t{i}"))).unwrap();
                    acked.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
                store.snapshot().unwrap();
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 41 {
        std::thread::yield_now();
    }
    for n in 0..300 {
        let acked = acked.load(Ordering::SeqCst);
        let reader = options(&sim)
            .read_only(true)
            .open("/data/db")
            .unwrap_or_else(|e| panic!("read-only open {n} failed: {e}"));
        assert!(
            reader.len() >= acked,
            "open {n} saw {} < {acked}",
            reader.len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
