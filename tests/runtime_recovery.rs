//! Goal: prove the runtime's recovery of interrupted work (issue #9): each kind's strategy
//! (Resume, Restart, ValidateOnly above and below its threshold, MarkFailed, StoreDefault) is
//! applied to tasks whose worker went away, and a graceful shutdown hands unfinished work to
//! the next start with its checkpoint instead of failing it.
//!
//! Method: tasks are claimed with a short lease by a store session that then closes; after the
//! lease lapsed, `Runtime::open` finds them interrupted. Handlers record whether they ran and
//! which checkpoint they were handed; the store's task fields, histories and `health()` must
//! show exactly the strategy's outcome. Waits poll with a hang timeout; nothing is timed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tasklog::runtime::{
    Kind, META_INPUT, META_KIND, Recovery, RetryPolicy, Runtime, RuntimeOptions, TaskContext,
};
use tasklog::store::{InterruptedPolicy, StoreOptions};
use tasklog::{NewTask, Store, TaskState};

const HANG: Duration = Duration::from_secs(20);

fn options() -> RuntimeOptions {
    RuntimeOptions {
        workers: 2,
        lease_ms: 5_000,
        heartbeat_ms: 1_000,
        supervise_ms: 50,
        owner: format!("test-{}", fastrand::u32(..)),
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type Seen = Arc<Mutex<Vec<(String, Option<Value>)>>>;

/// A handler that records the checkpoint it was handed and completes.
fn recording(seen: &Seen) -> Kind {
    let s = seen.clone();
    Kind::new(move |ctx: &TaskContext, _| {
        s.lock().unwrap().push((
            ctx.task().title.clone(),
            ctx.resume_from().map(|c| c.data.clone()),
        ));
        Ok(json!("ran"))
    })
}

#[test]
fn each_kind_is_recovered_by_its_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("resume", 50),
        ("restart", 50),
        ("validated", 90),
        ("not_validated", 10),
        ("mark_failed", 50),
        ("default", 50),
    ];
    {
        let store = Store::open(dir.path()).unwrap();
        for (kind, progress) in cases {
            store
                .submit(
                    NewTask::new(kind)
                        .id(kind)
                        .meta(META_KIND, json!(kind))
                        .meta(META_INPUT, json!(null)),
                )
                .unwrap();
            store.claim(kind, "dead-worker", 100).unwrap();
            store.progress(kind, progress, None, None).unwrap();
            store.checkpoint(kind, "cp", json!({"step": 3})).unwrap();
        }
        store.close().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));

    let seen: Seen = Arc::default();
    let validated: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rt = Runtime::open(
        dir.path(),
        StoreOptions::new().interrupted_policy(InterruptedPolicy::Requeue),
        options(),
    )
    .unwrap();
    let mut interrupted = rt.store().recovery_report().tasks_interrupted.clone();
    interrupted.sort();
    let mut all: Vec<String> = cases.iter().map(|(k, _)| k.to_string()).collect();
    all.sort();
    assert_eq!(interrupted, all);
    // The store itself leaves them to the runtime.
    for id in &all {
        assert_eq!(rt.store().get(id).unwrap().state, TaskState::Running);
    }
    rt.register("resume", recording(&seen).recovery(Recovery::Resume));
    rt.register("restart", recording(&seen).recovery(Recovery::Restart));
    for k in ["validated", "not_validated"] {
        let v = validated.clone();
        rt.register(
            k,
            recording(&seen).recovery(Recovery::ValidateOnly {
                threshold: 80,
                validate: Arc::new(move |t| {
                    v.lock().unwrap().push(t.id.clone());
                    Some(json!("validated"))
                }),
            }),
        );
    }
    rt.register(
        "mark_failed",
        recording(&seen).recovery(Recovery::MarkFailed),
    );
    rt.register("default", recording(&seen));
    rt.start().unwrap();
    let store = rt.store().clone();
    wait_for("every task to finish", || {
        all.iter()
            .all(|id| store.get(id).is_ok_and(|t| t.state.is_terminal()))
    });
    assert!(rt.wait_idle(HANG));

    let state = |id: &str| store.get(id).unwrap();
    let cp = Some(json!({"step": 3}));
    let mut ran: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for (title, from) in seen.lock().unwrap().iter() {
        assert!(
            ran.insert(title.clone(), from.clone()).is_none(),
            "{title} ran twice"
        );
    }
    assert_eq!(ran.get("resume"), Some(&cp));
    assert_eq!(
        ran.get("restart"),
        Some(&None),
        "Restart hands no checkpoint"
    );
    assert_eq!(ran.get("not_validated"), Some(&cp));
    assert_eq!(ran.get("default"), Some(&cp));
    assert!(
        !ran.contains_key("validated"),
        "validated work is not run again"
    );
    assert!(!ran.contains_key("mark_failed"));
    for id in ["resume", "restart", "not_validated", "default"] {
        assert_eq!(state(id).state, TaskState::Completed, "{id}");
        assert_eq!(state(id).result.as_deref(), Some(&json!("ran")));
    }
    let v = state("validated");
    assert_eq!(v.state, TaskState::Completed);
    assert_eq!(v.result.as_deref(), Some(&json!("validated")));
    // The validator is consulted only above the threshold.
    assert_eq!(*validated.lock().unwrap(), ["validated"]);
    let m = state("mark_failed");
    assert_eq!(m.state, TaskState::Failed);
    assert!(m.last_error.is_some());

    let h = rt.health();
    let want: BTreeMap<String, u64> = [
        ("resume", 2),
        ("restart", 1),
        ("validated", 1),
        ("mark_failed", 1),
        ("requeue", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(h.recovered, want);
    // One recovery event per task, none for the validated one (it was completed directly).
    for id in &all {
        let kinds: Vec<&str> = store.history(id).unwrap().iter().map(|e| e.kind).collect();
        let n = kinds.iter().filter(|k| **k == "interrupted").count();
        let expected = usize::from(id != "validated");
        assert_eq!(n, expected, "{id}: {kinds:?}");
    }
    rt.shutdown(Duration::from_secs(5)).unwrap();
}

/// Steps the handler did, in order (`u64::MAX` marks a completed run with its first step).
type StepLog = Arc<Mutex<Vec<(u64, Option<u64>)>>>;

/// Steps 0..20, a checkpoint after each; stops early (with an error) when shutting down.
fn stepper(log: StepLog) -> Kind {
    Kind::new(move |ctx: &TaskContext, _| {
        let first = ctx
            .resume_from()
            .map_or(0, |c| c.data["step"].as_u64().unwrap() + 1);
        let mut last_done = None;
        for step in first..20 {
            if ctx.is_shutting_down() {
                return Err(format!("stopping at step {step}").into());
            }
            ctx.checkpoint("step", json!({ "step": step }))
                .map_err(|e| e.to_string())?;
            last_done = Some(step);
            log.lock().unwrap().push((step, None));
            std::thread::sleep(Duration::from_millis(10));
        }
        log.lock().unwrap().push((u64::MAX, Some(first)));
        Ok(json!({"resumed_at": first, "last": last_done}))
    })
    .retry(RetryPolicy::never())
    .recovery(Recovery::Resume)
}

#[test]
fn a_graceful_shutdown_hands_unfinished_work_to_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let log: StepLog = Arc::default();
    let id = {
        let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options()).unwrap();
        rt.register("steps", stepper(log.clone()));
        rt.start().unwrap();
        let id = rt.submit("steps", json!(null), 1).unwrap().id;
        wait_for("a few steps", || log.lock().unwrap().len() >= 3);
        rt.shutdown(Duration::from_secs(10)).unwrap();
        id
    };
    let steps_before = log.lock().unwrap().len() as u64;
    assert!(steps_before < 20, "the task must have been cut short");
    {
        let store = Store::open(dir.path()).unwrap();
        let t = store.get(&id).unwrap();
        assert_eq!(
            t.state,
            TaskState::Pending,
            "obeying the shutdown signal must not fail the task (last error {:?})",
            t.last_error
        );
        assert_eq!(t.error_count, 0);
        let cp = t.checkpoint.expect("checkpoint kept");
        assert_eq!(cp.data["step"], json!(steps_before - 1));
        store.close().unwrap();
    }
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options()).unwrap();
    rt.register("steps", stepper(log.clone()));
    rt.start().unwrap();
    let store = rt.store().clone();
    wait_for("completion", || {
        store
            .get(&id)
            .is_ok_and(|t| t.state == TaskState::Completed)
    });
    let t = store.get(&id).unwrap();
    assert_eq!(
        t.result.as_deref(),
        Some(&json!({"resumed_at": steps_before, "last": 19}))
    );
    // Every step ran exactly once across both runs.
    let steps: Vec<u64> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s != u64::MAX)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(steps, (0..20).collect::<Vec<u64>>());
    rt.shutdown(Duration::from_secs(5)).unwrap();
}
