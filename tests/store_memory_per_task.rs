//! Goal (issue #20): what a finished task costs in memory once a store is open, measured and
//! held. The shape is the W4 workload's (`examples/bulk_store`): a 100-byte title, started,
//! two progress steps with a 100-byte message, then completed, failed (100-byte error) or
//! cancelled; no result, checkpoint or lease remains.
//!
//! Method: a counting global allocator gives the live heap bytes the open adds, divided by the
//! number of tasks; opened from the log alone and from a snapshot. The bounds sit a little
//! above what the store needs now (525 and 441 bytes a task at 20,000 tasks, 2026-12-07), so a
//! change that makes every finished task bigger fails here: a boxed locator per history loaded
//! from a snapshot, as before session 25, costs 48 bytes a task more (489) and fails the
//! snapshot's bound; holding terminal tasks as `Task` values again (`store::state::Held`)
//! costs about 450 bytes a task more (1,148 and 1,028 when measured, 2026-12-05) and fails
//! both, and so did inline `result`, `checkpoint` and `lease` fields in `Task` before that
//! (1,348, 1,228).

use std::sync::atomic::Ordering;

use tasklog::store::mutation::{Change, Mutation};
use tasklog::{NewTask, Store, StoreOptions};

mod counting_alloc;
use counting_alloc::{LIVE, alone};

const TASKS: usize = 20_000;

fn mutation(step: u32, i: usize, id: &str, text: &str) -> Mutation {
    let change = match step {
        0 => return Mutation::submit(NewTask::new(text).id(id)),
        1 => Change::Start {
            owner: None,
            lease_ms: None,
        },
        2 | 3 => Change::Progress {
            percent: (step as u8 - 1) * 40,
            step: None,
            message: Some(text.to_string()),
        },
        _ => match i % 10 {
            0 => Change::Cancel {
                reason: Some(text.to_string()),
            },
            1 | 2 => Change::Fail {
                error: text.to_string(),
            },
            _ => Change::Complete { result: None },
        },
    };
    Mutation::new(id, change)
}

fn write_workload(dir: &std::path::Path) {
    let store = StoreOptions::new()
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(dir)
        .unwrap();
    let ids: Vec<String> = (0..TASKS).map(|i| format!("{i:07}")).collect();
    let text = "x".repeat(100);
    for block in ids.chunks(1000) {
        for step in 0..5 {
            let ops = block
                .iter()
                .enumerate()
                .map(|(i, id)| mutation(step, i, id, &text))
                .collect();
            store.write_batch(ops).unwrap();
        }
    }
    store.close().unwrap();
}

/// Live heap bytes a fresh open of `dir` holds, per task.
fn bytes_per_task_after_open(dir: &std::path::Path) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    let store: Store = StoreOptions::new()
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(dir)
        .unwrap();
    let grown = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    assert_eq!(store.len(), TASKS);
    drop(store);
    grown / TASKS
}

#[test]
fn a_finished_task_costs_a_bounded_number_of_bytes_after_an_open() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    write_workload(dir.path());
    let from_log = bytes_per_task_after_open(dir.path());

    let store = Store::open(dir.path()).unwrap();
    store.snapshot().unwrap();
    store.close().unwrap();
    let from_snapshot = bytes_per_task_after_open(dir.path());
    println!(
        "bytes per task after an open: from the log {from_log}, from a snapshot {from_snapshot}"
    );
    assert!(
        from_log <= 580,
        "an open from the log holds {from_log} bytes per finished task (bound 580)"
    );
    assert!(
        from_snapshot <= 470,
        "an open from a snapshot holds {from_snapshot} bytes per finished task (bound 470)"
    );
}
