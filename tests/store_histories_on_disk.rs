//! Histories live on disk once a snapshot holds them (issue #20): after a snapshot, a
//! history's events are read from the snapshot file on demand and leave memory. Method: build
//! stores through the public API, compare every history (live and removed tasks) with a dump
//! taken before, and check the store's own count of history bytes in memory. Covers: the
//! memory drop itself; events appended after a snapshot (kept in memory, then written by the
//! next one); histories pointing at a snapshot file that retention has since deleted (the
//! open handle keeps it readable) with the log cut below it; reopening; and a snapshot file
//! damaged under a running store, which makes reading the affected history an error naming
//! the file, never a panic or a wrong answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tasklog::store::{Store, StoreOptions};
use tasklog::task::{NewTask, TaskState};
use tasklog::wal::Durability;

type Dump = BTreeMap<String, String>;

fn histories(store: &Store, ids: &[String]) -> Dump {
    ids.iter()
        .map(|id| {
            let h = serde_json::to_string(&store.history(id).unwrap()).unwrap();
            (id.clone(), h)
        })
        .collect()
}

fn options() -> StoreOptions {
    StoreOptions::new()
        .durability(Durability::Buffered)
        .preallocate(false)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(1)
}

/// `n` tasks created with ids `{prefix}{i}`: started, progressed, two thirds completed, every
/// fifth removed.
fn populate(store: &Store, prefix: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
    for (i, id) in ids.iter().enumerate() {
        store
            .submit(NewTask::new(format!("task {i}")).id(id))
            .unwrap();
        store.start(id).unwrap();
        store
            .progress(id, 40, Some("step"), Some("working"))
            .unwrap();
        if i % 3 != 0 {
            store
                .complete(id, Some(serde_json::json!({"i": i})))
                .unwrap();
        }
        if i % 5 == 0 {
            store.remove(id, Some("gone")).unwrap();
        }
    }
    ids
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_snapshot_moves_histories_out_of_memory_and_they_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let ids = populate(&store, "a", 600);
    let before = histories(&store, &ids);
    let heap_before = store.history_heap_bytes();
    store.snapshot().unwrap();
    let heap_after = store.history_heap_bytes();
    // What stays is a small fixed record per history (its place in the file), not its events.
    // NOTE: before the snapshot the events are only positions in the log already
    // (tests/store_histories_in_log.rs), so the drop is no longer fourfold: 14 bytes of
    // position per event leave, a record per history stays.
    assert!(
        heap_after < heap_before,
        "histories still in memory after a snapshot: {heap_before} -> {heap_after} bytes"
    );
    assert_eq!(histories(&store, &ids), before);
}

#[test]
fn events_after_a_snapshot_stay_in_memory_until_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let mut ids = populate(&store, "a", 200);
    store.snapshot().unwrap();
    // Grow histories that now live in the file, and add new ones.
    for id in ids.iter().take(90) {
        match store.get(id).map(|t| t.state) {
            Ok(TaskState::Running) => {
                store.progress(id, 80, None, None).unwrap();
            }
            Ok(_) => {
                store.remove(id, None).unwrap();
            }
            Err(_) => {}
        }
    }
    ids.extend(populate(&store, "b", 50));
    let grown = histories(&store, &ids);
    store.snapshot().unwrap();
    assert_eq!(histories(&store, &ids), grown, "after the second snapshot");
    store.close().unwrap();
    let store = options().open(dir.path()).unwrap();
    assert_eq!(histories(&store, &ids), grown, "after reopening");
}

#[test]
fn histories_outlive_the_snapshot_file_they_point_at_and_the_log_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = options()
        .durability(Durability::Sync)
        .segment_bytes_max(8 << 10)
        .open(dir.path())
        .unwrap();
    let ids = populate(&store, "a", 300);
    let want = histories(&store, &ids);
    let first = store.snapshot().unwrap();
    // A second snapshot with one kept removes the first file and the segments below the
    // second; histories loaded before still point at the first file's (unlinked) inode.
    store.submit(NewTask::new("later").id("later")).unwrap();
    let second = store.snapshot().unwrap();
    assert!(!first.path.exists(), "retention removed the first snapshot");
    assert!(
        first.segments_removed + second.segments_removed > 0,
        "the log below the snapshots was cut"
    );
    assert_eq!(histories(&store, &ids), want);
    store.close().unwrap();
    let store = options().open(dir.path()).unwrap();
    assert_eq!(histories(&store, &ids), want);
}

#[test]
fn a_snapshot_file_damaged_under_a_running_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    // Histories enough for several of the section's blocks (v3 compresses them 64 KiB at a
    // time), so that a cut in the last block leaves the first one whole.
    let ids = populate(&store, "a", 1000);
    store.snapshot().unwrap();
    let path = snapshots(dir.path()).pop().unwrap();
    // Cut the file inside its history section (another program, or a failing disk).
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 200)
        .unwrap();
    let last = ids.last().unwrap();
    let err = store.history(last).unwrap_err();
    let text = err.to_string();
    assert!(err.is_corruption(), "{text}");
    assert!(
        text.contains(path.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );
    // Tasks are unaffected, and so are histories before the cut.
    assert!(store.get(&ids[1]).is_ok());
    assert!(store.history(&ids[0]).is_ok());
}

#[test]
fn events_applied_while_a_snapshot_is_written_are_kept() {
    // The snapshot is encoded under the state lock and written outside it; histories are
    // pointed at the file afterwards. Events applied in between are in no snapshot yet and
    // must stay in memory: a writer thread appends them while snapshots are taken.
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(options().open(dir.path()).unwrap());
    let ids: Vec<String> = (0..20).map(|i| format!("r{i:02}")).collect();
    for id in &ids {
        store.submit(NewTask::new("r").id(id)).unwrap();
        store.start(id).unwrap();
    }
    let writer = {
        let (store, ids) = (store.clone(), ids.clone());
        std::thread::spawn(move || {
            for round in 0..150u8 {
                for id in &ids {
                    store.progress(id, round % 100, None, None).unwrap();
                }
            }
        })
    };
    let mut taken = 0;
    while !writer.is_finished() || taken < 3 {
        store.snapshot().unwrap();
        taken += 1;
    }
    writer.join().unwrap();
    for id in &ids {
        assert_eq!(store.history(id).unwrap().len(), 2 + 150, "history of {id}");
    }
}
