//! Exhaustive corruption sweeps over a small store: several log segments, two snapshots (the
//! log below the older one compacted away). On the simulated disk, every bit of every byte of
//! every file is flipped, one at a time, and every file is cut at every offset. Each case must
//! either recover (a consistent prefix of the acknowledged history: a torn tail of the last
//! segment, or a damaged snapshot with an older one to fall back to) or be refused with a
//! corruption error naming the damaged file. Never a wrong task, a wrong history, or a panic.
//! The counts (cases, recovered exactly, recovered a prefix, refused) are printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tasklog::store::{Store, StoreOptions};
use tasklog::task::NewTask;
use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;

type Histories = BTreeMap<String, Vec<(u64, String)>>;

fn options(sim: &SimStorage) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(4096)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(2)
}

fn churn(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let id = format!("t{i:03}");
        store
            .submit(NewTask::new(format!("task {i}")).id(&id))
            .unwrap();
        store.start(&id).unwrap();
        store
            .progress(
                &id,
                50,
                Some("half"),
                Some(&"working through the input set ".repeat(3)),
            )
            .unwrap();
        if i % 4 == 0 {
            store.fail(&id, "boom").unwrap();
        } else {
            store.complete(&id, Some(serde_json::json!(i))).unwrap();
        }
    }
}

/// Builds the store and returns its disk, its files and its histories.
fn build() -> (
    SimStorage,
    Vec<PathBuf>,
    Histories,
    BTreeMap<String, String>,
) {
    let sim = SimStorage::new(7);
    let store = options(&sim).open("/db").unwrap();
    churn(&store, 0, 12);
    store.snapshot().unwrap();
    churn(&store, 12, 24);
    store.snapshot().unwrap();
    churn(&store, 24, 40);
    store.close().unwrap();
    drop(store);
    let (histories, tasks) = dump(&options(&sim).read_only(true).open("/db").unwrap());
    let mut files = Vec::new();
    for dir in ["/db/wal", "/db/snapshots"] {
        let mut in_dir: Vec<PathBuf> = sim
            .list_dir(Path::new(dir))
            .unwrap()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "snap"))
            .collect();
        in_dir.sort();
        files.extend(in_dir);
    }
    assert!(
        files
            .iter()
            .filter(|f| f.extension().unwrap() == "seg")
            .count()
            >= 3,
        "{files:?}"
    );
    assert_eq!(
        files
            .iter()
            .filter(|f| f.extension().unwrap() == "snap")
            .count(),
        2,
        "{files:?}"
    );
    (sim, files, histories, tasks)
}

fn dump(store: &Store) -> (Histories, BTreeMap<String, String>) {
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

#[derive(Default, Debug)]
struct Counts {
    cases: u64,
    exact: u64,
    prefix: u64,
    refused: u64,
}

/// Opens the damaged image and judges the outcome.
fn judge(
    image: &SimStorage,
    damaged: &Path,
    what: &str,
    original: &(Histories, BTreeMap<String, String>),
    counts: &mut Counts,
) {
    counts.cases += 1;
    let store = match options(image).read_only(true).open("/db") {
        Ok(s) => s,
        Err(e) => {
            assert!(
                e.is_corruption(),
                "{what}: refused, but not as corruption: {e}"
            );
            let name = damaged.file_name().unwrap().to_str().unwrap();
            let text = e.to_string();
            assert!(
                text.contains(name) || text.contains("/db/wal"),
                "{what}: error does not name the file: {text}"
            );
            counts.refused += 1;
            return;
        }
    };
    let (histories, tasks) = dump(&store);
    if (&histories, &tasks) == (&original.0, &original.1) {
        counts.exact += 1;
        return;
    }
    // Otherwise it must be the acknowledged history cut at one LSN: nothing wrong, nothing
    // missing below the cut, every task consistent with its own history.
    let cut = histories
        .values()
        .flat_map(|h| h.iter().map(|e| e.0))
        .max()
        .unwrap_or(0);
    for (id, full) in &original.0 {
        let expected: Vec<(u64, String)> = full.iter().filter(|e| e.0 <= cut).cloned().collect();
        let got = histories.get(id).cloned().unwrap_or_default();
        assert_eq!(
            got, expected,
            "{what}: history of {id} is not the prefix up to LSN {cut}"
        );
        if got.len() == full.len() {
            assert_eq!(
                tasks.get(id),
                original.1.get(id),
                "{what}: task {id} differs"
            );
        }
    }
    assert!(
        histories.keys().all(|id| original.0.contains_key(id)),
        "{what}: a task appeared from nowhere"
    );
    counts.prefix += 1;
}

#[test]
fn every_bit_flip_is_recovered_or_refused() {
    let (sim, files, histories, tasks) = build();
    let original = (histories, tasks);
    let mut counts = Counts::default();
    for file in &files {
        let bytes = sim.file_bytes(file).unwrap();
        for offset in 0..bytes.len() {
            for bit in 0..8 {
                let image = sim.crash();
                let mut damaged = bytes.clone();
                damaged[offset] ^= 1 << bit;
                image.put_file(file, damaged);
                let what = format!("{} byte {offset} bit {bit}", file.display());
                judge(&image, file, &what, &original, &mut counts);
            }
        }
    }
    println!("bit flips: {counts:?}");
    assert_eq!(counts.cases, counts.exact + counts.prefix + counts.refused);
}

#[test]
fn every_truncation_is_recovered_or_refused() {
    let (sim, files, histories, tasks) = build();
    let original = (histories, tasks);
    let mut counts = Counts::default();
    for file in &files {
        let bytes = sim.file_bytes(file).unwrap();
        for len in 0..bytes.len() {
            let image = sim.crash();
            image.put_file(file, bytes[..len].to_vec());
            let what = format!("{} cut at {len}", file.display());
            judge(&image, file, &what, &original, &mut counts);
        }
    }
    println!("truncations: {counts:?}");
    assert_eq!(counts.cases, counts.exact + counts.prefix + counts.refused);
}
