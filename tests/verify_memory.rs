//! `verify` streams: its peak heap does not grow with the length of the histories it checks.
//!
//! Method: a counting global allocator records the peak of live heap bytes. Two stores hold
//! the same 400 tasks in 256 KiB segments and no snapshot; in the second each task has 10x
//! the progress events of the first (about 8x the log). `verify` on each must find nothing
//! and its peak above the baseline must be the same within a margin: holding whole tasks and
//! histories (what a store open keeps, and what verify's replay kept before issue 20), or a
//! whole log, would make the second peak several times the first. A third store has a
//! snapshot: verify's peak per task must be the replay's ids and states, not a loaded store.

use std::sync::atomic::Ordering;

use tasklog::wal::Durability;
use tasklog::{NewTask, StoreOptions};

mod counting_alloc;
use counting_alloc::{LIVE, PEAK, alone};

/// A store of `tasks` tasks, each created, started, given `progress` progress events with a
/// 100-byte message, and completed; buffered, one sync at the close, no snapshot.
fn build(dir: &std::path::Path, tasks: usize, progress: usize) {
    let store = StoreOptions::new()
        .durability(Durability::Buffered)
        .segment_bytes_max(256 * 1024)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(dir)
        .expect("open");
    let text = "m".repeat(100);
    for i in 0..tasks {
        let id = format!("task-{i:05}");
        store
            .submit(NewTask::new("t").id(id.as_str()))
            .expect("submit");
        store.start(&id).expect("start");
        for p in 0..progress {
            let percent = u8::try_from(p * 100 / progress).expect("a percentage");
            store
                .progress(&id, percent, None, Some(&text))
                .expect("progress");
        }
        store.complete(&id, None).expect("complete");
    }
    store.close().expect("close");
}

/// The peak of live heap bytes above what was live when `verify` started.
fn verify_peak(dir: &std::path::Path) -> (usize, tasklog::store::verify::VerifyReport) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let report = tasklog::store::verify::verify(dir, &mut |_| {}).expect("verify");
    (PEAK.load(Ordering::Relaxed) - base, report)
}

fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .expect("list wal")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum()
}

#[test]
fn verify_peak_does_not_grow_with_history_length() {
    let _alone = alone();
    const TASKS: usize = 400;
    let short = tempfile::tempdir().expect("tempdir");
    let long = tempfile::tempdir().expect("tempdir");
    build(short.path(), TASKS, 10);
    build(long.path(), TASKS, 100);
    let (short_peak, short_report) = verify_peak(short.path());
    let (long_peak, long_report) = verify_peak(long.path());
    for r in [&short_report, &long_report] {
        assert!(r.ok && r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.replay.as_ref().map(|r| r.tasks), Some(TASKS));
    }
    let (short_log, long_log) = (log_bytes(short.path()), log_bytes(long.path()));
    eprintln!("log {short_log} B -> peak {short_peak} B; log {long_log} B -> peak {long_peak} B");
    assert!(
        long_log > 6 * short_log,
        "the long store should hold ~8x the log"
    );
    // The margin: one segment read whole (256 KiB) plus allocator noise.
    let margin = 384 * 1024;
    assert!(
        long_peak <= short_peak + margin,
        "verify's peak grew with history length: {short_peak} B for a {short_log} B log, \
         {long_peak} B for a {long_log} B log"
    );
}

/// With a snapshot, verify reads it without loading it (`snapshot::read_visiting`): its peak
/// grows with the tasks by the replay's compact states (an id and a state each, about 100
/// bytes), not by a loaded store state (each task held, its history's place, the id table
/// and the indexes: several hundred bytes). Its peak per task must stay under 200 bytes.
#[test]
fn verify_of_a_snapshot_holds_ids_and_states_not_a_loaded_store() {
    let _alone = alone();
    const TASKS: usize = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), TASKS, 2);
    let store = StoreOptions::new().open(dir.path()).expect("open");
    store.snapshot().expect("snapshot");
    store.close().expect("close");
    drop(store);
    let (peak, report) = verify_peak(dir.path());
    assert!(
        report.ok && report.problems.is_empty(),
        "{:?}",
        report.problems
    );
    assert_eq!(report.snapshots.len(), 1);
    let replay = report.replay.as_ref().expect("replayed");
    assert!(
        replay.from_snapshot_lsn > 0,
        "the replay starts from the snapshot"
    );
    let per_task = peak / TASKS;
    eprintln!("verify of a {TASKS}-task snapshot: peak {peak} B, {per_task} B per task");
    assert!(
        per_task < 200,
        "verify's peak is {per_task} B per task: a loaded store, not ids and states"
    );
}
