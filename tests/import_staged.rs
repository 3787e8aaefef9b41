//! Goal: an import large enough to be staged (`Store::write_staged`: a staging segment made
//! live by one rename) is all or nothing after a power cut at any write or fsync, loses
//! nothing from before, gives the same store as the batch path (same events at the same LSNs),
//! publishes to subscribers in LSN order, and a rejected import or a dry run changes no byte.
//!
//! Method: the staging thresholds are lowered for this binary (staged from 10 mutations, 7 per
//! chunk), so a document of a few dozen tasks with interleaved histories spans many chunks and
//! tasks whose events lie in several chunks. On the simulated disk the n-th write or the n-th
//! fsync of the import fails (every n the import performs), then the power is cut (keeping
//! only synced bytes, or a torn prefix of unsynced ones); the reopened store's export must be
//! exactly the export from before the import or exactly the one after a clean import.

#[path = "export_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tasklog::export::{ImportMode, ImportOptions, OnConflict, import_json_bytes};
use tasklog::store::{StoreOptions, set_staging_for_tests};
use tasklog::wal::sim::SimStorage;
use tasklog::{NewTask, Store};

const TASKS: usize = 30;
const EVENTS: usize = 3;

fn staging_on() {
    // The same values in every test of this binary (tests run in parallel).
    set_staging_for_tests(10, 7);
}

/// The import document: `TASKS` tasks whose histories interleave (all created, then all
/// started, then all completed).
fn document() -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    support::bulk_store(&store, TASKS, EVENTS);
    support::export_string(&store, true)
}

fn sim_options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .preallocate(false)
        .segment_bytes_max(64 << 10)
}

const SIM_DIR: &str = "/sim/store";

/// A store on `sim` holding a few tasks of its own (one with a history).
fn target(sim: &SimStorage) -> Store {
    let store = Store::open_with(SIM_DIR, sim_options(sim)).unwrap();
    for id in ["keep-1", "keep-2", "keep-3"] {
        store
            .submit(NewTask::new(format!("before {id}")).id(id))
            .unwrap();
    }
    store.start("keep-2").unwrap();
    store.complete("keep-2", None).unwrap();
    store
}

fn export(store: &Store) -> String {
    support::blank_exported_at(&support::export_string(store, true))
}

fn import(store: &Store, doc: &str, options: &ImportOptions) -> tasklog::Result<u64> {
    import_json_bytes(store, doc.as_bytes(), "staged.json", options, |_, _| {}).map(|r| r.last_lsn)
}

/// Where two documents first differ (for messages).
fn first_difference(a: &str, b: &str) -> String {
    let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let from = at.saturating_sub(80);
    let cut = |s: &str| {
        s.get(from..(at + 120).min(s.len()))
            .unwrap_or("")
            .to_string()
    };
    format!("at byte {at}: {:?} vs {:?}", cut(a), cut(b))
}

/// Each task's history as (LSN, kind), after its state and title (times differ between runs).
fn histories(doc: &str) -> BTreeMap<String, Vec<(u64, String)>> {
    let v: serde_json::Value = serde_json::from_str(doc).unwrap();
    let tasks = v["tasks"].as_object().unwrap();
    tasks
        .iter()
        .map(|(id, t)| {
            let h = t["history"].as_array().unwrap();
            let head = (0, format!("{} {}", t["state"], t["title"]));
            let events = std::iter::once(head)
                .chain(h.iter().map(|e| {
                    (
                        e["lsn"].as_u64().unwrap(),
                        e["kind"].as_str().unwrap().to_string(),
                    )
                }))
                .collect();
            (id.clone(), events)
        })
        .collect()
}

#[test]
fn a_power_cut_at_every_write_and_sync_of_a_staged_import_leaves_none_or_all() {
    staging_on();
    let doc = document();
    // The outcome of a clean import, and how many writes and syncs it performs.
    let sim = SimStorage::new(0);
    let store = target(&sim);
    let (w0, s0) = sim.op_counts();
    import(&store, &doc, &ImportOptions::new()).unwrap();
    let (w1, s1) = sim.op_counts();
    let after = histories(&export(&store));
    drop(store);
    let (writes, syncs) = (w1 - w0, s1 - s0);
    assert!(writes >= 3 && syncs >= 3, "{writes} writes, {syncs} syncs");
    let mut outcomes = [0u32; 2];
    for (kind, total) in [("write", writes), ("sync", syncs)] {
        for n in 1..=total + 1 {
            for torn in [None, Some(512), Some(4096)] {
                let sim = SimStorage::new(n * 31 + torn.unwrap_or(3) as u64);
                let store = target(&sim);
                let before = export(&store);
                sim.set_torn_crash(torn);
                // n = total + 1: nothing fails; the cut comes right after the import returned.
                if kind == "write" {
                    sim.fail_nth_write(n);
                } else {
                    sim.fail_nth_sync(n);
                }
                let done = import(&store, &doc, &ImportOptions::new()).is_ok();
                let image = sim.power_cut();
                drop(store);
                let what = format!("{kind} {n} of {total} failing, torn {torn:?}");
                let store = Store::open_with(SIM_DIR, sim_options(&image))
                    .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
                let got = export(&store);
                let as_before = got == before;
                assert!(
                    as_before || histories(&got) == after,
                    "{what}: the store is neither as before nor as after the import: {}",
                    first_difference(&got, &before)
                );
                if done {
                    assert!(!as_before, "{what}: an acknowledged import was lost");
                }
                outcomes[usize::from(!as_before)] += 1;
                // The store goes on: it takes writes after whatever came back.
                store
                    .submit(NewTask::new("after the cut").id("later"))
                    .unwrap();
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn a_staged_import_into_an_empty_store_exports_the_same_document() {
    staging_on();
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let report = import_json_bytes(
        &store,
        doc.as_bytes(),
        "d",
        &ImportOptions::new(),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(report.imported as usize, TASKS);
    assert_eq!(report.events_replayed as usize, TASKS * EVENTS);
    // Same tasks, same histories at the same LSNs: the staged path writes the batch path's
    // events in the batch path's order (an `imported` event may follow, as on that path).
    let source = histories(&doc);
    let got = histories(&export(&store));
    assert_eq!(source.len(), got.len());
    for (id, events) in &source {
        assert_eq!(got[id].get(..events.len()), Some(&events[..]), "task {id}");
    }
    // The staged segment is an ordinary segment now; no staging file is left.
    let wal = tasklog::store::wal_dir(dir.path());
    let names: Vec<String> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".staging")), "{names:?}");
    assert!(names.contains(&format!("{:020}.seg", 1)), "{names:?}");
    let after = histories(&export(&store));
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(histories(&export(&store)), after);
}

#[test]
fn merge_and_replace_through_staging() {
    staging_on();
    let doc = document();
    // Merge: an id already there is skipped; everything else arrives with its history.
    let sim = SimStorage::new(1);
    let store = target(&sim);
    store.submit(NewTask::new("mine").id("t000004")).unwrap();
    let report = import_json_bytes(
        &store,
        doc.as_bytes(),
        "d",
        &ImportOptions::new(),
        |_, _| {},
    )
    .unwrap();
    assert_eq!((report.imported, report.skipped), (TASKS as u64 - 1, 1));
    assert_eq!(store.get("t000004").unwrap().title, "mine");
    assert_eq!(store.history("t000007").unwrap().len(), EVENTS);
    assert_eq!(
        store.get("keep-2").unwrap().state,
        tasklog::TaskState::Completed
    );
    // Replace: tasks not in the document are removed (their history stays), the one in both
    // is overwritten.
    let options = ImportOptions::new()
        .mode(ImportMode::Replace)
        .on_conflict(OnConflict::Overwrite);
    let report = import_json_bytes(&store, doc.as_bytes(), "d", &options, |_, _| {}).unwrap();
    assert_eq!(report.removed, 3);
    assert_eq!(report.overwritten as usize, TASKS);
    assert_eq!(store.len(), TASKS);
    assert!(store.get("keep-1").is_err());
    assert_eq!(store.get("t000004").unwrap().title, "task t000004");
    let kept = store.history("keep-2").unwrap();
    assert_eq!(kept.len(), 4, "created, started, completed, removed");
    // The same after a reopen (the state was rebuilt from the staged segments).
    let before = histories(&export(&store));
    drop(store);
    let store = Store::open_with(SIM_DIR, sim_options(&sim)).unwrap();
    assert_eq!(histories(&export(&store)), before);
}

#[test]
fn subscribers_get_a_staged_import_in_lsn_order() {
    staging_on();
    let doc = document();
    let sim = SimStorage::new(2);
    let store = target(&sim);
    let from = store.last_lsn() + 1;
    let mut sub = store.subscribe(from).unwrap();
    let last = import(&store, &doc, &ImportOptions::new()).unwrap();
    assert_eq!(last - from + 1, (TASKS * EVENTS) as u64);
    for lsn in from..=last {
        let c = sub
            .next_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("every imported event should be delivered");
        assert_eq!(c.lsn, lsn);
    }
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_rejected_import_and_a_dry_run_change_no_byte() {
    staging_on();
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.submit(NewTask::new("mine").id("t000004")).unwrap();
    store.sync().unwrap();
    let before = tree(dir.path());
    let fail = ImportOptions::new().on_conflict(OnConflict::Fail);
    let err = import_json_bytes(&store, doc.as_bytes(), "d", &fail, |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("t000004"), "{err}");
    let dry = ImportOptions::new().dry_run(true);
    let report = import_json_bytes(&store, doc.as_bytes(), "d", &dry, |_, _| {}).unwrap();
    assert_eq!(report.imported as usize, TASKS - 1);
    assert_eq!(tree(dir.path()), before);
    // And the store is still writable.
    store.submit(NewTask::new("later").id("later")).unwrap();
}

/// A failure after the rename (the import is in the log) poisons the store, so memory never
/// lags behind the log unnoticed; a failed write of the staging file (before the rename)
/// leaves the store as it was and writable.
#[test]
fn a_failure_after_the_rename_poisons_and_one_before_it_does_not() {
    staging_on();
    let doc = document();
    // A write error while staging: nothing changed, still writable.
    let sim = SimStorage::new(7);
    let store = target(&sim);
    let before = export(&store);
    sim.fail_nth_write(1);
    assert!(import(&store, &doc, &ImportOptions::new()).is_err());
    assert!(store.poisoned().is_none());
    assert_eq!(export(&store), before);
    store
        .submit(NewTask::new("still writable").id("w"))
        .unwrap();
    // Every fsync of the commit in turn: whenever the import failed but is in the log after a
    // reopen, the store that failed must have refused every later write.
    let mut poisoned_seen = 0;
    for n in 1..=6 {
        let sim = SimStorage::new(n);
        let store = target(&sim);
        sim.fail_nth_sync(n);
        let result = import(&store, &doc, &ImportOptions::new());
        let poisoned = store.poisoned().is_some();
        let refused = store.submit(NewTask::new("x").id("probe")).is_err();
        drop(store);
        let reopened = Store::open_with(SIM_DIR, sim_options(&sim)).unwrap();
        let in_log = reopened.get("t000000").is_ok();
        if result.is_err() && in_log {
            assert!(
                poisoned && refused,
                "sync {n}: failed after the rename, not poisoned"
            );
            poisoned_seen += 1;
        }
    }
    assert!(poisoned_seen > 0);
}
