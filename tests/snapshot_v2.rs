//! Snapshot formats v2 and v3 beyond the golden fixtures. Method: build stores through the public API,
//! snapshot and reopen them, and compare every task and history with what the store held
//! before. Covers: a store of 12,000 tasks (some removed); histories that were
//! loaded from a snapshot, grew, and were snapshotted again (twice); a v1 store upgraded to v3
//! by its first snapshot; and a snapshot (v3, and the same state as v2) whose CRCs are valid
//! but whose history bytes are wrong (as a buggy writer could produce): open still succeeds since loading checks no history entry,
//! but reading the damaged history fails naming the snapshot file, `read_checked` (used by
//! `tasklog verify`) refuses the file, and no other task or history is affected. Damaged
//! records with valid CRCs are errors, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tasklog::store::{Store, StoreOptions, snapshot};
use tasklog::task::NewTask;
use tasklog::wal::{Durability, StdStorage};

mod snapshot_images;

type Dump = BTreeMap<String, (Option<String>, String)>;

/// Every id (live or removed) with its task and its history as JSON.
fn dump(store: &Store, ids: &[String]) -> Dump {
    ids.iter()
        .map(|id| {
            let task = store
                .get(id)
                .ok()
                .map(|t| serde_json::to_string(&t).unwrap());
            let history = serde_json::to_string(&store.history(id).unwrap()).unwrap();
            (id.clone(), (task, history))
        })
        .collect()
}

fn options() -> StoreOptions {
    StoreOptions::new()
        .durability(Durability::Buffered)
        .preallocate(false)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
}

fn newest_snapshot(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// `n` tasks in assorted states; every seventh is removed.
fn populate(store: &Store, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("t{i:05}")).collect();
    for (i, id) in ids.iter().enumerate() {
        store
            .submit(NewTask::new(format!("task {i}")).id(id))
            .unwrap();
        if i % 3 != 0 {
            store.start(id).unwrap();
            store
                .progress(id, 50, Some("half"), Some("working"))
                .unwrap();
        }
        if i % 3 == 1 {
            store
                .complete(id, Some(serde_json::json!({"i": i})))
                .unwrap();
        }
        if i % 7 == 0 {
            store.remove(id, Some("gone")).unwrap();
        }
    }
    ids
}

#[test]
fn a_large_snapshot_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let ids = populate(&store, 12_000);
    let before = dump(&store, &ids);
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let store = options().read_only(true).open(dir.path()).unwrap();
    assert!(store.recovery_report().snapshot_used.is_some());
    assert_eq!(
        store.recovery_report().events_replayed,
        1,
        "the session close"
    );
    assert_eq!(dump(&store, &ids), before);
}

#[test]
fn histories_grown_after_a_load_survive_further_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let ids = populate(&store, 40);
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    for round in 0..2 {
        let store = options().open(dir.path()).unwrap();
        for (i, id) in ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == 2 && i % 7 != 0)
        {
            store
                .progress(id, 60 + round, None, Some(&format!("round {round} {i}")))
                .unwrap();
        }
        store
            .submit(NewTask::new("new").id(format!("new-{round}")))
            .unwrap();
        let mut all = ids.clone();
        all.extend((0..=round).map(|r| format!("new-{r}")));
        let before = dump(&store, &all);
        store.snapshot().unwrap();
        store.close().unwrap();
        drop(store);
        let store = options().read_only(true).open(dir.path()).unwrap();
        assert_eq!(dump(&store, &all), before, "round {round}");
        let path = newest_snapshot(dir.path());
        snapshot::read_checked(&StdStorage, &path).unwrap();
    }
}

#[test]
fn a_v1_store_is_upgraded_by_its_first_snapshot() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1-snapshot");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["snapshots", "wal"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(fixture.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    let store = options().open(dir.path()).unwrap();
    let mut ids: Vec<String> = store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.push("removed-1".into());
    let before = dump(&store, &ids);
    let info = store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    assert_eq!(
        std::fs::read(&info.path).unwrap()[8..12],
        snapshot::SNAPSHOT_VERSION.to_le_bytes(),
        "written as this build's version"
    );
    assert_eq!(snapshot::SNAPSHOT_VERSION, 3);
    let store = options().read_only(true).open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().snapshot_used, Some(info.path));
    assert_eq!(dump(&store, &ids), before);
}

/// Offset of the history section and the file's bytes.
fn history_section(path: &Path) -> (usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let tasks_len = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    (64 + tasks_len as usize, bytes)
}

#[test]
fn a_wrong_history_with_valid_crcs_fails_when_read_naming_the_file() {
    for version in [3, 2] {
        wrong_history_with_valid_crcs(version);
    }
}

fn wrong_history_with_valid_crcs(version: u32) {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let ids = populate(&store, 10);
    let before = dump(&store, &ids);
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let path = newest_snapshot(dir.path());
    let (start, bytes) = history_section(&path);
    // The first history is t00000's: give its first entry a length past the arena's end.
    let mut histories = snapshot_images::histories(&bytes);
    histories[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    let bytes = snapshot_images::with_histories(&bytes, &histories);
    // Where the damage is named: the entry itself in v2, the block holding it in v3.
    let (bytes, start) = match version {
        2 => (snapshot_images::to_v2(&bytes), start),
        _ => {
            let blocks = snapshot_images::section(&bytes).blocks;
            (bytes, start + blocks[0].0)
        }
    };
    assert_eq!(snapshot_images::version(&bytes), version);
    std::fs::write(&path, &bytes).unwrap();

    let err = snapshot::read_checked(&StdStorage, &path).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let store = options().read_only(true).open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().snapshot_used.as_ref(), Some(&path));
    let err = store.history("t00000").unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(err.to_string().contains(name), "{err}");
    assert!(err.to_string().contains(&format!("{}", start)), "{err}");
    let after = dump(&store, &ids[1..]);
    let expected: Dump = before
        .into_iter()
        .filter(|(id, _)| id != "t00000")
        .collect();
    assert_eq!(after, expected);
}

#[test]
fn damaged_records_with_valid_crcs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, start, bytes) = snapshot_of(dir.path(), 9_000);
    for at in [64 + 1, 64 + (start - 64) / 2, start - 3] {
        for flip in [0x01u8, 0x80] {
            // Either the damage is refused, or it changed only a value inside a field that
            // still decodes (a title byte); it must never panic or hang.
            match decode_flipped(&path, &bytes, at, flip) {
                Err(e) => assert!(e.is_corruption(), "byte {at}: {e}"),
                Ok(state) => read_every_task(&state, at),
            }
        }
    }
    let mut cut = bytes.clone();
    cut.truncate(start - 1);
    assert!(snapshot::decode(&path, &cut).is_err());
}

/// A store of `tasks` tasks (`populate`), snapshotted: the snapshot's path, where its history
/// section starts, and its bytes.
fn snapshot_of(dir: &Path, tasks: usize) -> (PathBuf, usize, Vec<u8>) {
    let store = options().open(dir).unwrap();
    populate(&store, tasks);
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let path = newest_snapshot(dir);
    let (start, bytes) = history_section(&path);
    (path, start, bytes)
}

/// Decodes `bytes` with byte `at` XORed by `flip` and the CRCs recomputed (so that the damage
/// reaches the section decoders).
fn decode_flipped(
    path: &Path,
    bytes: &[u8],
    at: usize,
    flip: u8,
) -> tasklog::Result<tasklog::store::state::State> {
    let mut damaged = bytes.to_vec();
    damaged[at] ^= flip;
    snapshot::reseal_for_fuzzing(&mut damaged);
    snapshot::decode(path, &damaged)
}

/// Reads back every task of a decoded state, finished ones (held as their encoded records)
/// included, and recounts its indexes: what an open accepted must never fail or panic later.
fn read_every_task(state: &tasklog::store::state::State, at: usize) {
    for (id, entry) in state.entries() {
        if let Some(task) = entry.get() {
            assert_eq!(task.id, id, "byte {at}");
        }
    }
    if let Err(e) = state.check_indexes() {
        panic!("byte {at}: {e}");
    }
}

/// Every byte of a small snapshot's tasks section flipped, CRCs recomputed: each damaged file
/// is refused as corrupt, or every task it yields (finished ones are kept as the records read,
/// and decoded only when asked for) reads back. A record that decodes at open and not later
/// would panic here.
#[test]
fn every_task_a_damaged_snapshot_yields_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, start, bytes) = snapshot_of(dir.path(), 12);
    let mut accepted = 0;
    for at in 64..start {
        for flip in [0x01u8, 0x10, 0x80] {
            match decode_flipped(&path, &bytes, at, flip) {
                Err(e) => assert!(e.is_corruption(), "byte {at}: {e}"),
                Ok(state) => {
                    accepted += 1;
                    read_every_task(&state, at);
                }
            }
        }
    }
    // Flips inside titles, results and numbers still decode: the read-back above ran.
    assert!(accepted > 50, "only {accepted} damaged files decoded");
}
