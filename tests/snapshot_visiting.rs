//! `snapshot::read_visiting` (what `verify` reads: every check, no state built) refuses exactly
//! the snapshot files `snapshot::read_checked` refuses, and hands over the same task ids and
//! states when both read one. Method: the golden fixtures of every format version as they are;
//! then every byte of a v3 snapshot of a small store (live, finished and removed tasks) with
//! one bit flipped, as it is (the CRCs catch it) and with its CRCs
//! recomputed, so that the flip reaches the record, task and history checks behind them. The
//! comparison is `store::fuzzing::visiting_agrees_with_a_checked_read`, which the
//! `snapshot_decode` fuzz target also runs on every input.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tasklog::store::StoreOptions;
use tasklog::store::fuzzing::visiting_agrees_with_a_checked_read;
use tasklog::store::snapshot::reseal_for_fuzzing;
use tasklog::task::NewTask;
use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_golden_fixtures_read_the_same_visited_as_checked() {
    let mut read = 0;
    for version in [
        "store-v1-snapshot",
        "store-v2-snapshot",
        "store-v3-snapshot",
    ] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(version)
            .join("snapshots");
        for file in snapshot_files(&dir) {
            visiting_agrees_with_a_checked_read(&std::fs::read(&file).unwrap());
            read += 1;
        }
    }
    assert!(read >= 4, "{read} fixture snapshots");
}

/// A v3 snapshot of a small store: pending, running, completed and failed tasks, one removed,
/// histories of one to seven events (all in one compressed block).
fn small_snapshot() -> Vec<u8> {
    let sim = SimStorage::new(3);
    let store = StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap();
    for i in 0..24 {
        let id = format!("task-{i:02}");
        store
            .submit(NewTask::new(format!("title {i}")).id(&id))
            .unwrap();
        if i % 4 == 0 {
            continue;
        }
        store.start(&id).unwrap();
        for step in 0..(i % 5) {
            store
                .progress(
                    &id,
                    10 * step as u8,
                    None,
                    Some(&format!("step {step} of {id}")),
                )
                .unwrap();
        }
        match i % 4 {
            1 => drop(
                store
                    .complete(&id, Some(serde_json::json!({ "n": i })))
                    .unwrap(),
            ),
            2 => drop(store.fail(&id, "it broke").unwrap()),
            _ => {}
        }
    }
    store.remove("task-04", Some("done with it")).unwrap();
    let path = store.snapshot().unwrap().path;
    store.close().unwrap();
    let file = sim
        .open(&path, tasklog::wal::OpenMode::Read)
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(
        u32::from_le_bytes(file[8..12].try_into().unwrap()),
        3,
        "a v3 snapshot"
    );
    file
}

#[test]
fn every_flipped_bit_is_refused_by_both_reads_or_by_neither() {
    let image = small_snapshot();
    visiting_agrees_with_a_checked_read(&image);
    for at in 0..image.len() {
        let mut damaged = image.clone();
        damaged[at] ^= 1 << (at % 8);
        visiting_agrees_with_a_checked_read(&damaged);
        reseal_for_fuzzing(&mut damaged);
        visiting_agrees_with_a_checked_read(&damaged);
    }
    println!("{} bytes, each flipped as it is and resealed", image.len());
}
