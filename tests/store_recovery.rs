//! Recovery of the task store after real crashes and damage. A child process (this test binary
//! re-run with an environment variable) builds a store and dies by `abort()` — no destructors,
//! no clean close — or closes cleanly; the parent reopens and checks what the interrupted-work
//! policy did. Also: a damaged newest snapshot falls back to an older one, and histories stay
//! complete after snapshots have removed the log segments that held them.

use std::path::Path;
use std::process::Command;

use tasklog::store::{InterruptedPolicy, Store, StoreOptions};
use tasklog::task::{NewTask, TaskState};

const CHILD_ENV: &str = "TASKLOG_TEST_CRASH_CHILD";

/// Runs in the child: builds two running tasks, then crashes or closes cleanly.
#[test]
#[ignore = "run by the parent tests as a child process"]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, mode) = spec.split_once('|').expect("dir|mode");
    let store = Store::open(dir).unwrap();
    for id in ["a", "b", "c"] {
        store
            .submit(NewTask::new(format!("task {id}")).id(id))
            .unwrap();
    }
    store.start("a").unwrap();
    store
        .checkpoint("a", "half", serde_json::json!({"row": 500}))
        .unwrap();
    store.progress("a", 50, Some("copy"), None).unwrap();
    store.start("b").unwrap();
    match mode {
        "abort" => std::process::abort(),
        _ => store.close().unwrap(),
    }
}

fn run_child(dir: &Path, mode: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{mode}", dir.display()))
        .status()
        .unwrap();
    assert_eq!(
        status.success(),
        mode != "abort",
        "child exit status {status:?}"
    );
}

/// Opens in the parent test process, waiting a little for the lock: while a sibling test
/// spawns its child, the forked process briefly shares every open file of this process
/// (until its exec closes them), so a store closed and reopened here at that instant can
/// still find its `flock` held for a few milliseconds.
fn reopen(options: StoreOptions, dir: &Path) -> Store {
    options
        .lock_timeout(std::time::Duration::from_secs(10))
        .open(dir)
        .unwrap()
}

#[test]
fn crash_marks_running_tasks_failed_by_default() {
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), "abort");
    let store = reopen(StoreOptions::new(), dir.path());
    let report = store.recovery_report();
    assert_eq!(report.tasks_interrupted, ["a", "b"]);
    for id in ["a", "b"] {
        let t = store.get(id).unwrap();
        assert_eq!(t.state, TaskState::Failed, "{id}");
        assert_eq!(t.last_error.as_deref(), Some("interrupted by restart"));
        let h = store.history(id).unwrap();
        let last = h.last().unwrap();
        assert_eq!(
            (last.kind, last.from, last.to),
            (
                "interrupted",
                Some(TaskState::Running),
                Some(TaskState::Failed)
            )
        );
    }
    assert_eq!(store.get("c").unwrap().state, TaskState::Pending);
    // Recovery is itself durable: a second open finds nothing left to do.
    store.close().unwrap();
    drop(store);
    let store = reopen(StoreOptions::new(), dir.path());
    assert!(store.recovery_report().tasks_interrupted.is_empty());
    assert_eq!(store.get("a").unwrap().state, TaskState::Failed);
}

#[test]
fn crash_with_requeue_policy_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), "abort");
    let options = StoreOptions::new().interrupted_policy(InterruptedPolicy::Requeue);
    let store = reopen(options, dir.path());
    let a = store.get("a").unwrap();
    assert_eq!(a.state, TaskState::Pending);
    let cp = a
        .checkpoint
        .expect("checkpoint kept for the resumed attempt");
    assert_eq!(
        (cp.name.as_str(), cp.data["row"].as_i64()),
        ("half", Some(500))
    );
    assert_eq!(store.get("b").unwrap().state, TaskState::Pending);
}

#[test]
fn crash_with_leave_policy_leaves_them_running() {
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), "abort");
    let options = StoreOptions::new().interrupted_policy(InterruptedPolicy::Leave);
    let store = reopen(options, dir.path());
    assert_eq!(store.recovery_report().tasks_interrupted, ["a", "b"]);
    assert_eq!(store.get("a").unwrap().state, TaskState::Running);
}

#[test]
fn clean_close_leaves_running_tasks_running() {
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), "close");
    let store = reopen(StoreOptions::new(), dir.path());
    assert!(store.recovery_report().tasks_interrupted.is_empty());
    assert_eq!(store.get("a").unwrap().state, TaskState::Running);
    assert_eq!(store.get("b").unwrap().state, TaskState::Running);
    // And they can still finish normally.
    store.complete("a", None).unwrap();
}

fn busy_store(dir: &Path) -> Store {
    StoreOptions::new()
        .snapshot_every_records(0)
        .segment_bytes_max(4096)
        .open(dir)
        .unwrap()
}

fn churn(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let id = format!("t{i}");
        store
            .submit(NewTask::new(format!("task number {i}")).id(&id))
            .unwrap();
        store.start(&id).unwrap();
        store
            .progress(&id, 40, Some("work"), Some("going"))
            .unwrap();
        if i % 3 == 0 {
            store.fail(&id, "boom").unwrap();
            store.retry(&id).unwrap();
        } else {
            store
                .complete(&id, Some(serde_json::json!({"n": i})))
                .unwrap();
        }
    }
}

fn dump(store: &Store) -> Vec<(String, String, usize)> {
    let mut out: Vec<(String, String, usize)> = store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| {
            let h = store.history(&t.id).unwrap();
            (t.id.clone(), serde_json::to_string(&t).unwrap(), h.len())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn damaged_newest_snapshot_falls_back_to_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    churn(&store, 0, 20);
    store.snapshot().unwrap();
    churn(&store, 20, 40);
    let newest = store.snapshot().unwrap();
    churn(&store, 40, 45);
    let before = dump(&store);
    store.close().unwrap();
    drop(store);

    let mut bytes = std::fs::read(&newest.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&newest.path, bytes).unwrap();

    let store = busy_store(dir.path());
    let report = store.recovery_report();
    assert_eq!(report.snapshots_skipped.len(), 1, "{report:?}");
    assert_eq!(report.snapshots_skipped[0].0, newest.path);
    assert!(report.snapshot_used.is_some());
    assert!(report.snapshot_lsn < newest.lsn);
    assert_eq!(dump(&store), before);
}

#[test]
fn history_survives_snapshots_that_remove_log_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    for round in 0..4 {
        churn(&store, round * 30, round * 30 + 30);
        store.snapshot().unwrap();
    }
    store.remove("t0", Some("gone")).unwrap();
    let before = dump(&store);
    let removed_history = store.history("t0").unwrap();
    assert_eq!(removed_history.last().unwrap().kind, "removed");
    assert!(
        store.log_stats().first_lsn > 1,
        "compaction should have removed early segments"
    );
    store.close().unwrap();
    drop(store);
    let store = busy_store(dir.path());
    assert_eq!(dump(&store), before);
    assert_eq!(store.history("t0").unwrap(), removed_history);
    // Every task's history starts with its creation: nothing was cut off.
    for t in store.all_tasks().unwrap() {
        assert_eq!(store.history(&t.id).unwrap()[0].kind, "created", "{}", t.id);
    }
}

/// A log whose event breaks the state machine (here a pending task completed, which a store
/// never writes: only a damaged or forged log holds it) is refused at open as corruption
/// naming the record's LSN and the task's id (the replay's in-place path, which borrows the id
/// from the log).
#[test]
fn a_replayed_event_that_breaks_the_state_machine_names_its_lsn_and_task() {
    use tasklog::task::{Event, EventKind, Timestamp, wire};
    use tasklog::wal::{Wal, WalOptions};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .submit(NewTask::new("waits").id("task-in-place"))
        .unwrap();
    store.close().unwrap();
    drop(store);
    let (wal, _) = Wal::open(tasklog::store::wal_dir(dir.path()), WalOptions::default()).unwrap();
    let forged = Event {
        task_id: "task-in-place".into(),
        at: Timestamp(1_000),
        actor: None,
        kind: EventKind::Completed { result: None },
    };
    // The store's record: its tag for an event (docs/format.md), then the event.
    let mut record = vec![1u8];
    record.extend(wire::encode_event(&forged).unwrap());
    let lsn = wal.append(&record).unwrap();
    wal.close().unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("the forged event is refused");
    let text = err.to_string();
    assert!(matches!(err, tasklog::Error::Corrupt { .. }), "{err:?}");
    assert!(text.contains("\"task-in-place\""), "{text}");
    assert!(text.contains("breaks the state machine"), "{text}");
    assert!(text.contains(&lsn.to_string()), "{text}");
}
