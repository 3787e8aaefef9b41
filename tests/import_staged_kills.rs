//! The edges of the staged write (`src/store/import_staged.rs`), each test named for the
//! behaviour it holds and the cargo-mutants mutants it was written to kill (issue #23): which
//! imports are staged at all, and a staged write of a single mutation. The staging knobs are
//! process-wide, so these tests take turns.

use std::sync::Mutex;

use tasklog::export::{ImportOptions, import_json_bytes};
use tasklog::store::{Change, Mutation, set_staging_for_tests};
use tasklog::{NewTask, Store};

static KNOBS: Mutex<()> = Mutex::new(());

fn document(tasks: usize) -> String {
    let body: Vec<String> = (0..tasks)
        .map(|i| format!(r#""t{i:05}": {{"title": "t{i}", "status": "pending"}}"#))
        .collect();
    format!(r#"{{"tasks": {{{}}}}}"#, body.join(","))
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(tasklog::store::wal_dir(dir))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".seg")
        })
        .count()
}

/// Imports a document of `tasks` tasks into a new store; returns the segments it added.
fn segments_added_by_an_import_of(tasks: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = segments(dir.path());
    let doc = document(tasks);
    let r = import_json_bytes(
        &store,
        doc.as_bytes(),
        "doc",
        &ImportOptions::new(),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.imported, tasks as u64);
    assert_eq!(store.len(), tasks);
    segments(dir.path()) - before
}

/// Below the threshold (4,096 mutations) an import is one ordinary batch and makes no segment
/// of its own (a stream of small HTTP imports must not leave a sealed segment each); at the
/// threshold it is staged, which seals the active segment. Kills: `knob` → 0 and → 1 (every
/// import staged), `len < min` → `==` / `<=`, and `||` → `&&` in the fallback condition.
#[test]
fn a_small_import_is_one_ordinary_batch_and_a_large_one_a_staged_segment() {
    let _turn = KNOBS.lock().unwrap_or_else(|e| e.into_inner());
    set_staging_for_tests(0, 0);
    assert_eq!(segments_added_by_an_import_of(10), 0, "10 tasks");
    assert_eq!(segments_added_by_an_import_of(4_095), 0, "4,095 tasks");
    assert!(
        segments_added_by_an_import_of(4_096) > 0,
        "an import of 4,096 tasks was not staged"
    );
}

/// A staged write of exactly one mutation is installed and its LSN returned (the "nothing
/// staged" answer is only for an empty staging). Kills `last < base` → `==` and → `<=`.
#[test]
fn a_staged_write_of_one_mutation_installs_it() {
    let _turn = KNOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.submit(NewTask::new("t").id("solo")).unwrap();
    let base = store.last_lsn() + 1;
    set_staging_for_tests(1, 4);
    let r = store.write_staged_for_tests(vec![Mutation::new(
        "solo",
        Change::Cancel {
            reason: Some("staged".into()),
        },
    )]);
    set_staging_for_tests(0, 0);
    assert_eq!(r.unwrap(), base, "the one staged event's LSN");
    let t = store.get("solo").unwrap();
    assert_eq!(t.state, tasklog::TaskState::Cancelled);
    assert_eq!(t.last_lsn, base);
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(
        reopened.get("solo").unwrap().state,
        tasklog::TaskState::Cancelled
    );
}
