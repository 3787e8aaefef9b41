//! Goal: prove issue #19's "discarded" outcome. After its last allowed attempt a task is
//! `discarded`, not `failed`: a distinct state that queries, statistics, the export and a
//! reopened store all see, reached in the same batch as the last failure (so no crash leaves
//! it `failed` with no retry coming), with every failure kept in its history; a retry by hand
//! brings it back; the state machine allows discarding only a failed task.
//!
//! Method: a runtime over a temporary store with a handler that fails a set number of times;
//! the outcome is read from the store (fields, history, `list`, `stats`), after a reopen, and
//! after an export and an import into a second store. The batch's atomicity is checked on the
//! log: the last failure and the discard carry consecutive LSNs in one commit. Waits poll with
//! a generous timeout that only detects hangs; nothing is timed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tasklog::export::{ExportOptions, ImportOptions, export_json, export_tasks_csv, import_json};
use tasklog::runtime::{Kind, RetryPolicy, Runtime, RuntimeOptions, TaskContext};
use tasklog::store::{Filter, Query, StoreOptions};
use tasklog::{Error, NewTask, Store, TaskState};

const HANG: Duration = Duration::from_secs(20);

fn options() -> RuntimeOptions {
    RuntimeOptions {
        workers: 1,
        lease_ms: 5_000,
        heartbeat_ms: 1_000,
        supervise_ms: 50,
        owner: "discard-test".into(),
    }
}

fn wait_state(store: &Store, id: &str, state: TaskState) {
    let deadline = Instant::now() + HANG;
    while !store.get(id).is_ok_and(|t| t.state == state) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {id} to be {state} (it is {:?})",
            store.get(id).map(|t| t.state)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kinds(store: &Store, id: &str) -> Vec<&'static str> {
    store
        .history(id)
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .filter(|k| *k != "heartbeat")
        .collect()
}

fn discarded_only() -> Query {
    Query {
        filter: Filter {
            states: vec![TaskState::Discarded],
            ..Filter::default()
        },
        ..Query::default()
    }
}

/// A runtime whose kind `flaky` fails attempts 1 and 2 and succeeds from attempt 3 on, with
/// at most 2 attempts.
fn runtime(dir: &std::path::Path) -> Runtime {
    let rt = Runtime::open(dir, StoreOptions::new(), options()).unwrap();
    rt.register(
        "flaky",
        Kind::new(|ctx: &TaskContext, _: Value| {
            if ctx.attempt() <= 2 {
                Err(format!("attempt {} broke", ctx.attempt()).into())
            } else {
                Ok(json!("fixed"))
            }
        })
        .retry(RetryPolicy {
            max_attempts: 2,
            backoff_base_ms: 10,
            backoff_max_ms: 20,
            jitter: 0.0,
        }),
    );
    rt
}

#[test]
fn the_last_failed_attempt_discards_the_task_with_every_failure_in_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.start().unwrap();
    let id = rt.submit("flaky", json!(null), 1).unwrap().id;
    let store = rt.store().clone();
    wait_state(&store, &id, TaskState::Discarded);

    let t = store.get(&id).unwrap();
    assert_eq!(t.attempt, 2);
    assert_eq!(t.error_count, 2, "both failures counted");
    assert_eq!(t.last_error.as_deref(), Some("attempt 2 broke"));
    assert!(t.completed_at.is_some());
    assert_eq!(
        kinds(&store, &id),
        [
            "created",
            "started",
            "failed",
            "retried",
            "updated",
            "started",
            "failed",
            "discarded"
        ]
    );
    let history = store.history(&id).unwrap();
    let errors: Vec<&Value> = history
        .iter()
        .filter(|e| e.kind == "failed")
        .map(|e| &e.details["error"])
        .collect();
    assert_eq!(
        errors,
        [&json!("attempt 1 broke"), &json!("attempt 2 broke")]
    );
    // The last failure and the discard are one commit: consecutive LSNs, the same time.
    let n = history.len();
    let (failed, discarded) = (&history[n - 2], &history[n - 1]);
    assert_eq!(failed.kind, "failed");
    assert_eq!(discarded.lsn, failed.lsn + 1);
    assert_eq!(discarded.at, failed.at);
    let reason = discarded.details["reason"].as_str().unwrap();
    assert!(reason.contains("attempt 2 of 2"), "{reason}");

    // Nothing retries it on its own.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(store.get(&id).unwrap().state, TaskState::Discarded);

    // Queryable: by state, counted apart from failed.
    let found = store.list(discarded_only()).unwrap().tasks;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    let stats = store.stats(None).unwrap();
    assert_eq!(stats.by_state["discarded"], 1);
    assert_eq!(stats.by_state["failed"], 0);

    // A retry by hand brings it back, and this time it succeeds.
    store.retry(&id).unwrap();
    wait_state(&store, &id, TaskState::Completed);
    let t = store.get(&id).unwrap();
    assert_eq!(t.attempt, 3);
    assert_eq!(t.result.as_deref(), Some(&json!("fixed")));
    assert_eq!(
        kinds(&store, &id)[8..],
        ["retried", "started", "completed"],
        "the manual retry and the successful attempt follow the discard"
    );
    rt.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn only_a_failed_task_can_be_discarded_and_a_refusal_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = store.submit(NewTask::new("a")).unwrap().id;
    for state_of_a in ["pending", "running", "completed"] {
        let before = store.last_lsn();
        match store.discard(&a, None) {
            Err(Error::InvalidTransition { from, to, .. }) => {
                assert_eq!(from.as_str(), state_of_a);
                assert_eq!(to, TaskState::Discarded);
            }
            other => panic!("discarding a {state_of_a} task: {other:?}"),
        }
        assert_eq!(store.last_lsn(), before, "a refused discard wrote nothing");
        match state_of_a {
            "pending" => drop(store.start(&a).unwrap()),
            "running" => drop(store.complete(&a, None).unwrap()),
            _ => {}
        }
    }
    // A discarded task cannot be discarded again, nor started; it can be retried.
    let b = store.submit(NewTask::new("b")).unwrap().id;
    store.start(&b).unwrap();
    store.fail(&b, "no").unwrap();
    let t = store.discard(&b, Some("by hand")).unwrap();
    assert_eq!(t.state, TaskState::Discarded);
    assert!(matches!(
        store.discard(&b, None),
        Err(Error::InvalidTransition { .. })
    ));
    assert!(matches!(
        store.start(&b),
        Err(Error::InvalidTransition { .. })
    ));
    assert_eq!(store.retry(&b).unwrap().state, TaskState::Pending);
}

#[test]
fn discarded_survives_reopen_snapshot_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let mut rt = runtime(dir.path());
        rt.start().unwrap();
        let id = rt.submit("flaky", json!(null), 1).unwrap().id;
        wait_state(rt.store(), &id, TaskState::Discarded);
        rt.shutdown(Duration::from_secs(5)).unwrap();
        id
    };
    // Replayed from the log.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&id).unwrap().state, TaskState::Discarded);
    // Read back from a snapshot.
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&id).unwrap().state, TaskState::Discarded);
    assert_eq!(store.list(discarded_only()).unwrap().tasks.len(), 1);

    // JSON export names the state and the event; an import rebuilds the same task.
    let mut doc = Vec::new();
    export_json(&store, &ExportOptions::new(), &mut doc, |_, _| {}).unwrap();
    let parsed: Value = serde_json::from_slice(&doc).unwrap();
    let task = &parsed["tasks"][id.as_str()];
    assert_eq!(task["state"], json!("discarded"));
    let last = task["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], json!("discarded"));

    let other = tempfile::tempdir().unwrap();
    let copy = Store::open(other.path()).unwrap();
    import_json(&copy, &doc[..], "export", &ImportOptions::new(), |_, _| {}).unwrap();
    let (a, b) = (store.get(&id).unwrap(), copy.get(&id).unwrap());
    assert_eq!(b.state, TaskState::Discarded);
    assert_eq!((b.attempt, b.error_count), (a.attempt, a.error_count));
    assert_eq!(store.history(&id).unwrap(), copy.history(&id).unwrap());
    // ... and a retry by hand works on the imported copy too.
    assert_eq!(copy.retry(&id).unwrap().state, TaskState::Pending);

    // The CSV export writes the state's name.
    let mut csv = Vec::new();
    export_tasks_csv(&store, &ExportOptions::new(), &mut csv, |_, _| {}).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains(",discarded,"), "{csv}");
}

#[test]
fn state_names_parse_and_print_discarded() {
    assert_eq!(
        "discarded".parse::<TaskState>().unwrap(),
        TaskState::Discarded
    );
    assert_eq!(TaskState::Discarded.to_string(), "discarded");
    assert!(TaskState::Discarded.is_terminal());
    assert!(TaskState::ALL.contains(&TaskState::Discarded));
    assert_eq!(
        serde_json::to_value(TaskState::Discarded).unwrap(),
        json!("discarded")
    );
    let err = "dead-ish".parse::<TaskState>().unwrap_err();
    assert!(err.contains("discarded"), "{err}");
}

/// The on-disk form of the new event and state code, byte by byte as docs/format.md gives
/// them: a build that renumbered them would misread every log written since.
#[test]
fn discarded_event_and_state_code_are_pinned() {
    use tasklog::task::wire;
    use tasklog::task::{Event, EventKind, Timestamp};
    let event = Event {
        task_id: "t".into(),
        at: Timestamp(1000),
        actor: None,
        kind: EventKind::Discarded {
            reason: Some("x".into()),
        },
    };
    let bytes = wire::encode_event(&event).unwrap();
    assert_eq!(
        bytes,
        [0x01, 0x01, 0x74, 0xd0, 0x0f, 0x00, 0x0f, 0x01, 0x01, 0x78]
    );
    assert_eq!(wire::decode_event(&bytes).unwrap(), event);
    // The state code itself (5) is pinned by a unit test in src/task/wire/v1.rs, which is
    // crate-private.
}
