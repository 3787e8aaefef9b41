//! `recovery_figures` reads only the histories that may hold a recovery attempt (issue #20:
//! reading all of them took `GET /v1/stats` 20–28 s at 1,000,000 tasks). Which ones, it judges
//! from two traces: the recovery record in the task's metadata, and a move from running to
//! pending or failed in the history's entry headers (`Store::history_steps`, which
//! decodes no event). Each kind of attempt below is found by exactly one of them, so dropping
//! either makes the figures miss attempts; and the figures are the same whether the histories
//! are in memory, in the log, or in a snapshot file.

use std::collections::BTreeMap;

use serde_json::json;
use tasklog::runtime::{META_RECOVERY, health_from_store, recovery_figures};
use tasklog::store::{Change, HistoryStep, Mutation, StoreOptions};
use tasklog::task::{TaskUpdate, Timestamp};
use tasklog::{NewTask, Store, TaskState};

fn record(store: &Store, id: &str, strategy: &str) {
    let mut update = TaskUpdate::default();
    update
        .set_metadata
        .insert(META_RECOVERY.into(), json!({ "strategy": strategy }));
    store.update(id, update).unwrap();
}

fn interrupt(store: &Store, id: &str, to: TaskState) {
    let change = Change::Interrupt {
        reason: "owner died".into(),
        to,
    };
    store.batch(vec![Mutation::new(id, change)]).unwrap();
}

/// Writes one task per kind of attempt, plus tasks with none, and returns the figures'
/// expected attempts by strategy.
fn write_tasks(store: &Store) -> BTreeMap<String, u64> {
    for id in [
        "record-resume",
        "bare-pending",
        "bare-failed",
        "record-complete",
        "requeued",
    ] {
        store.submit(NewTask::new("work").id(id)).unwrap();
        store.start(id).unwrap();
    }
    // The runtime's recovery: the record, then the interruption (one attempt, "resume").
    record(store, "record-resume", "resume");
    interrupt(store, "record-resume", TaskState::Pending);
    store.start("record-resume").unwrap();
    store.complete("record-resume", None).unwrap();
    // Interruptions without a record (a lease expired under the server): found by the steps.
    interrupt(store, "bare-pending", TaskState::Pending);
    store.start("bare-pending").unwrap();
    store.complete("bare-pending", None).unwrap();
    interrupt(store, "bare-failed", TaskState::Failed);
    // A recovery that completed the task: running to completed, as a plain completion, so
    // only the record in the metadata tells.
    record(store, "record-complete", "complete");
    store.complete("record-complete", None).unwrap();
    // A requeue moves out of running like an interruption: read, and no attempt in it.
    store
        .batch(vec![Mutation::new(
            "requeued",
            Change::Requeue { reason: None },
        )])
        .unwrap();
    for i in 0..50 {
        let id = format!("plain-{i}");
        store.submit(NewTask::new("work").id(&id)).unwrap();
        store.start(&id).unwrap();
        store.complete(&id, None).unwrap();
    }
    [
        ("complete", 1),
        ("interrupted_to_failed", 1),
        ("interrupted_to_pending", 1),
        ("resume", 1),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect()
}

fn check(store: &Store, want: &BTreeMap<String, u64>, case: &str) {
    let f = recovery_figures(store, Timestamp::now()).unwrap();
    assert_eq!(&f.recovered_by_strategy, want, "{case}");
    assert_eq!(f.total_recovery_attempts_24h, 4, "{case}");
    // record-resume, bare-pending and record-complete completed after their attempt.
    assert_eq!(f.successful_recoveries_24h, 3, "{case}");
    // `tasklog stats` counts them in its own walk, for tasks without a kind too (these have
    // none).
    let health = health_from_store(store).unwrap();
    assert_eq!(&health.recovered, want, "{case}: health_from_store");
}

#[test]
fn figures_find_every_attempt_from_memory_the_log_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        StoreOptions::new()
            .snapshot_every_records(0)
            .snapshot_every_bytes(0)
            .open(dir.path())
            .unwrap()
    };
    let store = open();
    let want = write_tasks(&store);
    check(&store, &want, "the store that wrote them");
    store.close().unwrap();
    drop(store);

    let store = open();
    check(&store, &want, "reopened from the log");
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);

    let store = open();
    check(&store, &want, "reopened from a snapshot");
    store.close().unwrap();
}

/// `history_steps` says, without decoding, what `history` says of each event's states, also
/// for a removed task (its history outlives it), and refuses an id never seen.
#[test]
fn history_steps_match_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    write_tasks(&store);
    store
        .batch(vec![Mutation::new(
            "plain-3",
            Change::Remove { reason: None },
        )])
        .unwrap();
    for id in ["record-resume", "bare-failed", "requeued", "plain-3"] {
        let from_history: Vec<HistoryStep> = store
            .history(id)
            .unwrap()
            .iter()
            .map(|e| HistoryStep {
                lsn: e.lsn,
                from: e.from,
                to: e.to,
            })
            .collect();
        assert_eq!(store.history_steps(id).unwrap(), from_history, "{id}");
    }
    assert!(matches!(
        store.history_steps("never-seen"),
        Err(tasklog::Error::NotFound { .. })
    ));
    store.close().unwrap();
}
