//! Open from the best good copy: damage in the part of the log that the newest good snapshot
//! covers (old segments whole, or the covered start of the segment the log goes on in) is lost
//! redundancy, not lost data. Method: on the simulated disk, build a store with several
//! segments and snapshots, then flip one bit of every byte of the covered part of the log, one
//! case at a time, and open the image: read-only and as a writer. Each case must open with
//! exactly the original tasks and histories, name the damaged segment in the recovery report,
//! and (as a writer) go on taking writes that survive a reopen. Damage after the snapshot is
//! left to `corruption_sweep.rs` (recovered as a torn tail, or refused naming the file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tasklog::store::{Store, StoreOptions};
use tasklog::task::NewTask;
use tasklog::wal::Storage;
use tasklog::wal::frame;
use tasklog::wal::sim::SimStorage;

type Dump = (
    BTreeMap<String, Vec<(u64, String)>>,
    BTreeMap<String, String>,
);

const SEGMENT_HEADER_LEN: usize = 48;

fn options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(4096)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(3)
}

fn churn(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let id = format!("t{i:03}");
        store
            .submit(NewTask::new(format!("task {i}")).id(&id))
            .unwrap();
        store.start(&id).unwrap();
        store
            .progress(&id, 50, Some("half"), Some(&"input ".repeat(8)))
            .unwrap();
        store.complete(&id, Some(serde_json::json!(i))).unwrap();
    }
}

fn dump(store: &Store) -> Dump {
    let mut histories = BTreeMap::new();
    let mut tasks = BTreeMap::new();
    for t in store.all_tasks().unwrap() {
        let h = store.history(&t.id).unwrap();
        histories.insert(
            t.id.clone(),
            h.iter().map(|e| (e.lsn, e.kind.to_string())).collect(),
        );
        tasks.insert(t.id.clone(), serde_json::to_string(&t).unwrap());
    }
    (histories, tasks)
}

/// A store whose newest snapshot covers several segments; `tail` tasks are written after it.
fn build(tail: usize) -> (SimStorage, u64, Dump) {
    let sim = SimStorage::new(11);
    let store = options(&sim).open("/db").unwrap();
    churn(&store, 0, 10);
    store.snapshot().unwrap();
    churn(&store, 10, 20);
    store.snapshot().unwrap();
    churn(&store, 20, 30);
    let newest = store.snapshot().unwrap().lsn;
    churn(&store, 30, 30 + tail);
    store.close().unwrap();
    drop(store);
    let original = dump(&options(&sim).read_only(true).open("/db").unwrap());
    (sim, newest, original)
}

/// The log segments and, for each, the byte range the snapshot at `covered` holds.
fn covered_ranges(sim: &SimStorage, covered: u64) -> Vec<(PathBuf, std::ops::Range<usize>)> {
    let mut segs: Vec<PathBuf> = sim
        .list_dir(Path::new("/db/wal"))
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let count = segs.len();
    let mut out = Vec::new();
    for (i, path) in segs.into_iter().enumerate() {
        let bytes = sim.file_bytes(&path).unwrap();
        let mut pos = SEGMENT_HEADER_LEN;
        let mut end_of_covered = None;
        let mut last_lsn = 0;
        while let Ok((f, n)) = frame::decode(&bytes[pos..]) {
            if f.lsn == covered + 1 {
                end_of_covered = Some(pos);
            }
            last_lsn = f.lsn;
            pos += n;
        }
        let range = match end_of_covered {
            // The segment the log goes on in: its header is not covered.
            Some(at) => SEGMENT_HEADER_LEN..at,
            None if last_lsn <= covered && i + 1 < count => 0..bytes.len(),
            None if last_lsn <= covered => SEGMENT_HEADER_LEN..pos,
            None => continue,
        };
        out.push((path, range));
    }
    out
}

/// Flips one bit of every covered byte; `every` thins the writer opens (each case opens
/// read-only; every `every`-th case also opens as a writer, writes, and reopens).
fn sweep(tail: usize, every: usize) -> usize {
    let (sim, covered, original) = build(tail);
    let ranges = covered_ranges(&sim, covered);
    assert!(ranges.len() >= 2, "{ranges:?}");
    let mut cases = 0;
    for (file, range) in &ranges {
        let bytes = sim.file_bytes(file).unwrap();
        for offset in range.clone() {
            let image = sim.crash();
            let mut damaged = bytes.clone();
            damaged[offset] ^= 1 << (offset % 8);
            image.put_file(file, damaged);
            let what = format!("{} byte {offset}", file.display());
            let store = options(&image)
                .read_only(true)
                .open("/db")
                .unwrap_or_else(|e| panic!("{what}: read-only open refused: {e}"));
            assert!(dump(&store) == original, "{what}: read-only state differs");
            drop(store);
            if cases % every == 0 {
                writer_case(&image, file, &what, &original);
            }
            cases += 1;
        }
    }
    println!("covered bit flips (tail of {tail} tasks): {cases} cases, all exact");
    cases
}

fn writer_case(image: &SimStorage, file: &Path, what: &str, original: &Dump) {
    let store = options(image)
        .open("/db")
        .unwrap_or_else(|e| panic!("{what}: writer open refused: {e}"));
    assert!(dump(&store) == *original, "{what}: writer state differs");
    let report = store.recovery_report();
    // A flip in a wholly covered segment's body is never read at open: only what open reads
    // can be reported. Whatever it names must be the damaged file.
    for (named, _) in &report.lost_redundancy {
        assert_eq!(named, file, "{what}: names another file");
    }
    store.submit(NewTask::new("after").id("after")).unwrap();
    store.close().unwrap();
    drop(store);
    let again = options(&image.crash()).open("/db").unwrap_or_else(|e| {
        panic!("{what}: reopen after writing refused: {e}");
    });
    let (histories, tasks) = dump(&again);
    assert_eq!(histories.len(), original.0.len() + 1, "{what}");
    assert!(tasks.contains_key("after"), "{what}");
    for (id, h) in &original.0 {
        assert_eq!(histories.get(id), Some(h), "{what}: history of {id}");
    }
}

#[test]
fn every_flip_in_the_covered_log_opens_exactly_with_a_tail_after_the_snapshot() {
    assert!(sweep(4, 10) > 1000);
}

#[test]
fn every_flip_in_the_covered_log_opens_exactly_when_the_snapshot_covers_it_all() {
    assert!(sweep(0, 10) > 1000);
}

/// The damaged segment is named in the recovery report, and a writer never appends behind the
/// damage: it seals that segment and goes on in a new one.
#[test]
fn covered_damage_is_reported_and_sealed() {
    let (sim, covered, original) = build(3);
    let ranges = covered_ranges(&sim, covered);
    // The segment the log goes on in: its covered start is read at open.
    let (file, range) = ranges
        .iter()
        .find(|(_, r)| r.start == SEGMENT_HEADER_LEN)
        .unwrap()
        .clone();
    let last = sim
        .list_dir(Path::new("/db/wal"))
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        == Some(file.clone());
    let image = sim.crash();
    let mut bytes = image.file_bytes(&file).unwrap();
    bytes[range.start + 10] ^= 0xff;
    image.put_file(&file, bytes);
    let store = options(&image).open("/db").unwrap();
    assert!(dump(&store) == original);
    let report = store.recovery_report().clone();
    assert_eq!(report.lost_redundancy.len(), 1, "{report:?}");
    assert_eq!(report.lost_redundancy[0].0, file);
    assert_eq!(report.sealed_after_damage.as_ref() == Some(&file), last);
    assert_eq!(report.snapshot_lsn, covered);
    store.close().unwrap();
}

/// Damage after the newest snapshot is still refused (or cut as a torn tail) as before: the
/// cascade passes over only what a good snapshot holds.
#[test]
fn damage_after_the_snapshot_is_still_refused() {
    let (sim, covered, _) = build(4);
    let ranges = covered_ranges(&sim, covered);
    let (file, range) = ranges.last().unwrap().clone();
    let image = sim.crash();
    let mut bytes = image.file_bytes(&file).unwrap();
    // The first frame after the covered part, in its payload: followed by valid frames.
    bytes[range.end + 30] ^= 0x01;
    image.put_file(&file, bytes);
    let e = options(&image).read_only(true).open("/db").err().unwrap();
    assert!(e.is_corruption(), "{e}");
    assert!(e.to_string().contains(file.to_str().unwrap()), "{e}");
}
