//! Power cuts during repair and during compaction, on the simulated disk. Method: the same
//! store is built for each case; a fault stops the operation at its `n`th fsync (or write),
//! for every `n` until it completes, then the power is cut (only durable bytes and directory
//! entries survive). Repair: run again to completion on the crash image, the store must open
//! with exactly what the repair promised (nothing a good snapshot holds is lost). Compaction:
//! the crash image must open with every acknowledged task and history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tasklog::store::{Store, StoreOptions, repair};
use tasklog::task::NewTask;
use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;

type Dump = BTreeMap<String, (String, usize)>;

fn options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(4096)
        .preallocate(false)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(3)
}

fn churn(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let id = format!("t{i:03}");
        store.submit(NewTask::new("work").id(&id)).unwrap();
        store.start(&id).unwrap();
        store.complete(&id, Some(serde_json::json!(i))).unwrap();
    }
}

fn dump(sim: &SimStorage) -> Dump {
    let store = options(sim).read_only(true).open("/db").unwrap();
    store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| {
            let h = store.history(&t.id).unwrap().len();
            // Without wall-clock times: the expected state comes from another build.
            let mut v = serde_json::to_value(&t).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.ends_with("_at"));
            (t.id.clone(), (v.to_string(), h))
        })
        .collect()
}

fn segments(sim: &SimStorage) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = sim
        .list_dir(Path::new("/db/wal"))
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn flip(sim: &SimStorage, path: &Path, offset: usize) {
    let mut bytes = sim.file_bytes(path).unwrap();
    bytes[offset] ^= 0x21;
    sim.put_file(path, bytes);
}

/// (disk, state at the newest snapshot, full state). `tail` tasks after the snapshot.
fn build(seed: u64, tail: usize) -> (SimStorage, Dump, Dump) {
    let sim = SimStorage::new(seed);
    let store = options(&sim).open("/db").unwrap();
    churn(&store, 0, 15);
    store.snapshot().unwrap();
    churn(&store, 15, 30);
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let at_snapshot = dump(&sim);
    let store = options(&sim).open("/db").unwrap();
    churn(&store, 30, 30 + tail);
    store.close().unwrap();
    drop(store);
    let full = dump(&sim);
    (sim, at_snapshot, full)
}

/// Runs `op` with a fault at the `n`th sync or write, for every `n` until it succeeds, cuts the
/// power after each, and hands the crash image to `check`. Returns the number of cuts.
fn every_cut(
    setup: &dyn Fn() -> SimStorage,
    op: &dyn Fn(&SimStorage) -> bool,
    check: &dyn Fn(&SimStorage, &str),
) -> usize {
    let mut cuts = 0;
    for fault in ["sync", "write"] {
        for n in 1..500 {
            let sim = setup();
            match fault {
                "sync" => sim.fail_nth_sync(n),
                _ => sim.fail_nth_write(n),
            }
            let done = op(&sim);
            sim.clear_faults();
            check(&sim.crash(), &format!("{fault} {n}"));
            cuts += 1;
            if done {
                break;
            }
        }
    }
    cuts
}

#[test]
fn a_power_cut_during_a_quarantining_repair_loses_nothing() {
    let setup = || {
        let (sim, _, _) = build(5, 3);
        flip(&sim, &segments(&sim)[0], 100);
        sim
    };
    let full = {
        let (sim, _, full) = build(5, 3);
        drop(sim);
        full
    };
    let cuts = every_cut(
        &setup,
        &|sim| repair::repair_with_storage(Arc::new(sim.clone()), Path::new("/db"), false).is_ok(),
        &|image, what| {
            assert_eq!(dump(image), full, "{what}: before finishing the repair");
            let r = repair::repair_with_storage(Arc::new(image.clone()), Path::new("/db"), false)
                .unwrap_or_else(|e| panic!("{what}: repair again: {e}"));
            assert!(r.events_lost == 0, "{what}");
            assert_eq!(dump(image), full, "{what}: after");
        },
    );
    assert!(cuts > 5);
}

#[test]
fn a_power_cut_during_a_cutting_repair_never_loses_what_the_snapshot_holds() {
    let setup = || {
        let (sim, _, _) = build(6, 4);
        let segs = segments(&sim);
        flip(&sim, &segs[0], 100);
        let last = segs.last().unwrap();
        let len = sim.file_bytes(last).unwrap().len();
        flip(&sim, last, len - 200);
        sim
    };
    let at_snapshot = {
        let (sim, at_snapshot, _) = build(6, 4);
        drop(sim);
        at_snapshot
    };
    let cuts = every_cut(
        &setup,
        &|sim| repair::repair_with_storage(Arc::new(sim.clone()), Path::new("/db"), false).is_ok(),
        &|image, what| {
            // Whatever the cut left, repairing again to the end gives the snapshot's state (or
            // more: the cut may not have happened, and the tail is then cut now).
            let r = repair::repair_with_storage(Arc::new(image.clone()), Path::new("/db"), false)
                .unwrap_or_else(|e| panic!("{what}: repair again: {e}"));
            let _ = r;
            let got = dump(image);
            for (id, v) in &at_snapshot {
                assert_eq!(got.get(id), Some(v), "{what}: {id} lost");
            }
            assert_eq!(got.len(), at_snapshot.len(), "{what}");
        },
    );
    assert!(cuts > 5);
}

/// Compaction (a snapshot that removes old snapshots and log segments) cut at every fsync and
/// write: every acknowledged task and history is there after the power cut.
#[test]
fn a_power_cut_during_compaction_loses_nothing() {
    let full = {
        let (sim, _, full) = build(7, 5);
        drop(sim);
        full
    };
    let cuts = every_cut(
        &|| build(7, 5).0,
        &|sim| {
            let store = match options(sim).open("/db") {
                Ok(s) => s,
                Err(_) => return false,
            };
            let ok = store.snapshot().is_ok_and(|i| i.segments_removed > 0);
            drop(store);
            ok
        },
        &|image, what| {
            let got = dump(image);
            assert_eq!(got, full, "{what}");
        },
    );
    assert!(cuts > 5);
}
