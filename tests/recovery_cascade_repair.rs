//! `repair` never loses what a good copy holds. Method: real store directories with several
//! segments and snapshots, damaged on purpose; `store::repair` is run as a dry run (which must
//! change nothing and say what would be lost) and then for real, and the store is reopened and
//! compared with what it held before the damage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tasklog::store::{Store, StoreOptions, repair};
use tasklog::task::NewTask;

fn options() -> StoreOptions {
    StoreOptions::new()
        .segment_bytes_max(4096)
        .preallocate(false)
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
        store.complete(&id, Some(serde_json::json!(i))).unwrap();
    }
}

type Dump = BTreeMap<String, (String, usize)>;

fn dump(dir: &Path) -> Dump {
    let store = options().read_only(true).open(dir).unwrap();
    store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| {
            let h = store.history(&t.id).unwrap().len();
            (t.id.clone(), (serde_json::to_string(&t).unwrap(), h))
        })
        .collect()
}

/// A store: 30 tasks under snapshots, the newest snapshot's LSN, then `tail` tasks after it.
fn build(dir: &Path, tail: usize) -> (u64, Dump, Dump) {
    let store = options().open(dir).unwrap();
    churn(&store, 0, 15);
    store.snapshot().unwrap();
    churn(&store, 15, 30);
    let lsn = store.snapshot().unwrap().lsn;
    store.close().unwrap();
    drop(store);
    let at_snapshot = dump(dir);
    let store = options().open(dir).unwrap();
    churn(&store, 30, 30 + tail);
    store.close().unwrap();
    drop(store);
    (lsn, at_snapshot, dump(dir))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// The files of a store, for "a dry run changes nothing".
fn image(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["wal", "snapshots"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The case: a few bytes flipped in an old segment that the snapshots cover. The store
/// opens with its exact state, verify names the segment as lost redundancy, and repair moves
/// it to quarantine losing nothing; verify is clean afterwards.
#[test]
fn damage_under_the_snapshot_is_quarantined_losing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, _, full) = build(dir, 5);
    let segs = segments(dir);
    assert!(segs.len() >= 2, "{segs:?}");
    flip(&segs[0], 200);
    flip(&segs[0], 201);
    assert_eq!(dump(dir), full, "opens with the exact state");

    let v = tasklog::store::verify::verify(dir, &mut |_| {}).unwrap();
    assert!(!v.ok, "still damage: verify says so (exit 3)");
    let named: Vec<_> = v.problems.iter().filter(|p| !p.torn_tail).collect();
    assert!(!named.is_empty());
    assert!(
        named
            .iter()
            .all(|p| p.lost_redundancy && p.file.as_deref().is_some()),
        "{named:?}"
    );
    assert!(
        named
            .iter()
            .any(|p| p.file.as_deref() == Some(segs[0].as_path()))
    );

    let before = image(dir);
    let plan = repair::repair(dir, true).unwrap();
    assert_eq!(plan.action, "quarantine");
    assert_eq!(plan.events_lost, 0);
    assert!(plan.segments_quarantined.iter().any(|(f, _)| *f == segs[0]));
    assert_eq!(image(dir), before, "a dry run changes nothing");

    let done = repair::repair(dir, false).unwrap();
    assert_eq!(done.action, "quarantine");
    assert!(done.segments_quarantined.iter().any(|(f, _)| *f == segs[0]));
    assert!(done.segments_quarantined.iter().all(|(_, to)| to.exists()));
    assert_eq!(dump(dir), full, "nothing lost");
    let v = tasklog::store::verify::verify(dir, &mut |_| {}).unwrap();
    assert!(v.ok, "{:?}", v.problems);
}

/// Damage in the covered start of the segment the log goes on in: the writer seals it, repair
/// quarantines it, nothing is lost, and writes go on.
#[test]
fn damage_in_the_covered_start_of_the_last_segment_is_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, _, full) = build(dir, 1);
    let segs = segments(dir);
    let last = segs.last().unwrap();
    flip(last, 60);
    assert_eq!(dump(dir), full);
    let done = repair::repair(dir, false).unwrap();
    assert_eq!(done.action, "quarantine");
    assert!(done.segments_quarantined.iter().any(|(f, _)| f == last));
    assert_eq!(dump(dir), full);
    let store = options().open(dir).unwrap();
    store.submit(NewTask::new("more").id("more")).unwrap();
    store.close().unwrap();
    drop(store);
    assert_eq!(dump(dir).len(), full.len() + 1);
    assert!(tasklog::store::verify::verify(dir, &mut |_| {}).unwrap().ok);
}

/// Damage both under the snapshot and after it: the store is refused, and repair's cut (at the
/// first damage) would leave the snapshot ahead of the log. Repair keeps every event the
/// snapshot holds (the log goes on after it) and its dry run counts and names exactly the
/// events after the snapshot that the cut loses.
#[test]
fn a_cut_never_discards_what_the_snapshot_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (snap_lsn, at_snapshot, full) = build(dir, 4);
    let segs = segments(dir);
    flip(&segs[0], 200);
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len() as usize;
    flip(last, len - 40);
    assert!(options().read_only(true).open(dir).is_err());

    let plan = repair::repair(dir, true).unwrap();
    assert_eq!(plan.action, "cut");
    assert_eq!(plan.snapshot_lsn, snap_lsn);
    assert_eq!(plan.resumed_at, Some(snap_lsn + 1));
    // The tail after the snapshot: 4 tasks of 3 events each, all readable but the damaged one.
    assert!(plan.events_lost >= 11, "{plan:?}");
    let tail: Vec<String> = (30..34).map(|i| format!("t{i:03}")).collect();
    assert_eq!(plan.tasks_losing_events, tail, "{plan:?}");

    let done = repair::repair(dir, false).unwrap();
    assert_eq!(done.resumed_at, Some(snap_lsn + 1));
    let after = dump(dir);
    assert_eq!(
        after, at_snapshot,
        "exactly the snapshot's state, nothing it holds lost"
    );
    assert!(after.len() < full.len());
    let store = options().open(dir).unwrap();
    store.submit(NewTask::new("more").id("more")).unwrap();
    store.close().unwrap();
}
