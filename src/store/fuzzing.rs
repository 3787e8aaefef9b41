//! Fuzz-target logic for the store, kept in the library so that the cargo-fuzz targets in
//! `fuzz/` and the ordinary tests that replay their corpora (`tests/fuzz_store_corpus.rs`) run
//! the same code. Not part of the public API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::{Store, StoreOptions};
use crate::task::{NewTask, TaskState};
use crate::wal::Storage;
use crate::wal::sim::SimStorage;

/// Decodes arbitrary bytes as a snapshot file: Ok or Err, never a panic or a huge allocation.
/// The bytes are decoded as they are, then again with their CRCs recomputed (so that damage
/// reaches the section decoders), and every history of a decoded state is read (v2 histories
/// are checked only when read). Returns the live task count of the first decode.
pub fn decode_snapshot_bytes(data: &[u8]) -> Result<usize> {
    let path = Path::new("fuzz.snap");
    let first = super::snapshot::decode(path, data);
    let mut resealed = data.to_vec();
    super::snapshot::reseal_for_fuzzing(&mut resealed);
    for state in [&first, &super::snapshot::decode(path, &resealed)]
        .into_iter()
        .flatten()
    {
        // What a decode accepted is one consistent state: each id in one slot that the id
        // table finds, indexes equal to a recount (a damaged section listing an id twice must
        // be refused, not loaded into two slots).
        if let Err(e) = state.check_indexes() {
            panic!("a decoded snapshot's state is inconsistent: {e}");
        }
        for (id, entry) in state.entries() {
            let _ = entry.history.check();
            let _ = entry.history.events();
            // A finished task is kept as the record read and decoded only when asked for:
            // what the decode accepted must read back (a failure here panics).
            if let Some(task) = entry.get() {
                assert_eq!(task.id, id, "a task reads back under its own id");
            }
        }
    }
    visiting_agrees_with_a_checked_read(data);
    visiting_agrees_with_a_checked_read(&resealed);
    first.map(|s| s.len())
}

/// The tasks' ids and states of a snapshot file read by `snapshot::read_visiting` (what
/// `verify` reads) and by `snapshot::read_checked` (a whole state, every history checked) must
/// be the same verdict: both refused, or both read with the same ids and states. Panics
/// otherwise. (Where a file has two faults the two may name different ones: a task is
/// visited before a damaged history found beside the read is reported.)
pub fn visiting_agrees_with_a_checked_read(data: &[u8]) {
    let sim = SimStorage::new(1);
    let path = Path::new("/snapshots/fuzz.snap");
    sim.create_dir_all(Path::new("/snapshots"))
        .and_then(|()| sim.open(path, crate::wal::OpenMode::CreateNew))
        .and_then(|f| f.write_all_at(data, 0))
        .expect("the simulated disk takes the file");
    let checked = super::snapshot::read_checked(&sim, path).map(|state| {
        let pairs: Vec<(String, Option<TaskState>)> = state
            .entries()
            .map(|(id, e)| {
                (
                    id.to_string(),
                    e.task.as_ref().map(super::state::Held::state),
                )
            })
            .collect();
        (state.applied_lsn, pairs)
    });
    let mut pairs = Vec::new();
    let visited = super::snapshot::read_visiting(&sim, path, &mut |id, state| {
        pairs.push((id.to_string(), state));
        Ok(())
    });
    match (checked, visited) {
        (Ok((lsn, want)), Ok(got_lsn)) => {
            assert_eq!(lsn, got_lsn, "the visiting read names the snapshot's LSN");
            assert_eq!(
                want, pairs,
                "the visiting read hands over every task, in order"
            );
        }
        (Err(_), Err(_)) => {}
        (checked, visited) => panic!(
            "the visiting read and the checked read disagree: {:?} / {:?}",
            checked.map(|(lsn, p)| (lsn, p.len())),
            visited
        ),
    }
}

/// Decodes arbitrary bytes as a store record and as a bare event payload.
pub fn decode_record_bytes(data: &[u8]) -> Result<()> {
    let record = super::record::decode(1, data).map(|_| ());
    let event = crate::task::wire::decode_event(data).map(|_| ());
    record.and(event)
}

/// The model's view of one task: state, attempt, number of history events.
type Model = BTreeMap<String, (TaskState, u32, usize)>;

fn options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(4096)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(2)
}

/// Runs the operations encoded in `data` (two bytes each: operation, task) against a store on
/// the simulated disk and a plain model: submit, start, progress, complete, fail, retry,
/// cancel, snapshot, reboot (power cut, then reopen) and byte flip (damage one byte of one file
/// in a crash image: the reopen must be refused as corruption, or show histories that are
/// prefixes of the model's). Panics only when the store and the model disagree.
pub fn run_model_ops(data: &[u8]) {
    let sim = SimStorage::new(data.len() as u64);
    let Ok(mut store) = options(&sim).open("/db") else {
        return;
    };
    let mut disk = sim;
    let mut model = Model::new();
    for op in data.chunks_exact(2).take(300) {
        let (code, arg) = (
            op.first().copied().unwrap_or(0),
            op.get(1).copied().unwrap_or(0),
        );
        let id = format!("t{}", arg % 8);
        match code % 10 {
            7 => {
                let _ = store.snapshot();
            }
            8 => {
                let image = disk.crash();
                drop(store);
                store = options(&image)
                    .open("/db")
                    .expect("a power cut in Sync mode must reopen");
                disk = image;
                // Work cut off by the crash is marked failed (the default policy): one more event.
                for (state, _, events) in model.values_mut() {
                    if *state == TaskState::Running {
                        *state = TaskState::Failed;
                        *events += 1;
                    }
                }
                compare(&store, &model);
            }
            9 => flip_and_check(&disk, arg, &model),
            c => step(&store, &mut model, c, &id),
        }
    }
    compare(&store, &model);
}

fn step(store: &Store, model: &mut Model, code: u8, id: &str) {
    use TaskState::*;
    let current = model.get(id).copied();
    let (result, target): (Result<_>, Option<TaskState>) = match code {
        0 => (store.submit(NewTask::new("fuzz").id(id)), Some(Pending)),
        1 => (store.start(id), Some(Running)),
        2 => (store.progress(id, 50, None, None), None),
        3 => (store.complete(id, None), Some(Completed)),
        4 => (store.fail(id, "boom"), Some(Failed)),
        5 => (store.retry(id), Some(Pending)),
        _ => (store.cancel(id, None), Some(Cancelled)),
    };
    let allowed = match (code, current) {
        (0, None) => true,
        (0, Some(_)) | (_, None) => false,
        (2, Some((s, _, _))) => s == Running,
        (5, Some((s, _, _))) => matches!(s, Failed | Cancelled),
        (_, Some((s, _, _))) => target.is_some_and(|t| s.can_move_to(t)),
    };
    assert_eq!(
        result.is_ok(),
        allowed,
        "op {code} on {id} from {current:?}: {:?}",
        result.err()
    );
    if let Ok(t) = result {
        let (_, _, n) = current.unwrap_or((Pending, 1, 0));
        model.insert(id.to_string(), (t.state, t.attempt, n + 1));
        if let Some(want) = target {
            assert_eq!(t.state, want, "op {code} on {id}");
        }
    }
}

fn compare(store: &Store, model: &Model) {
    for (id, (state, attempt, events)) in model {
        let t = store
            .get(id)
            .expect("a task in the model must be in the store");
        assert_eq!((t.state, t.attempt), (*state, *attempt), "task {id}");
        let h = store.history(id).expect("history");
        assert_eq!(h.len(), *events, "history of {id}");
    }
    assert_eq!(store.len(), model.len(), "task count");
}

fn flip_and_check(disk: &SimStorage, arg: u8, model: &Model) {
    let image = disk.crash();
    let mut files: Vec<std::path::PathBuf> = ["/db/wal", "/db/snapshots"]
        .iter()
        .flat_map(|d| image.list_dir(Path::new(d)).unwrap_or_default())
        .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "snap"))
        .collect();
    files.sort();
    let Some(file) = files.get(usize::from(arg) % files.len().max(1)) else {
        return;
    };
    let Some(mut bytes) = image.file_bytes(file) else {
        return;
    };
    if bytes.is_empty() {
        return;
    }
    let at = (usize::from(arg) * 7919) % bytes.len();
    if let Some(b) = bytes.get_mut(at) {
        *b ^= 1 << (arg % 8);
    }
    image.put_file(file, bytes);
    match options(&image).read_only(true).open("/db") {
        Err(e) => assert!(
            e.is_corruption() || matches!(e, Error::Codec { .. }),
            "a flip gave a non-corruption error: {e}"
        ),
        Ok(s) => {
            for (id, (_, _, events)) in model {
                let n = s.history(id).map(|h| h.len()).unwrap_or(0);
                assert!(
                    n <= *events,
                    "{id}: more history after a flip than was written"
                );
            }
        }
    }
}
