//! Goal: prove attempt timeouts (issue #19): past its start-to-close limit, a handler is told
//! to stop through its context, the attempt fails with a timed-out error and the retry policy
//! runs it again; a handler that ignores the signal is abandoned, its attempt failed without
//! it, and every write it makes afterwards (progress, its result) is refused by the fence.
//! A task's own `runtime.timeout_ms` overrides its kind's.
//!
//! Method: limits of a few milliseconds and handlers that wait on cancellation (or on a flag
//! the test raises) with a hang timeout of many seconds, so the outcome never depends on the
//! machine's speed: only outcomes are asserted (task state, attempt, history), never durations.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tasklog::runtime::{Kind, META_TIMEOUT_MS, RetryPolicy, Runtime, RuntimeOptions, TaskContext};
use tasklog::store::StoreOptions;
use tasklog::{NewTask, Store, TaskState};

const HANG: Duration = Duration::from_secs(20);

fn options(workers: usize) -> RuntimeOptions {
    RuntimeOptions {
        workers,
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

fn wait_state(store: &Store, id: &str, state: TaskState) {
    wait_for(&format!("{id} to be {state}"), || {
        store.get(id).is_ok_and(|t| t.state == state)
    });
}

fn retry_fast(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_base_ms: 1,
        backoff_max_ms: 1,
        jitter: 0.0,
    }
}

fn failures(store: &Store, id: &str) -> Vec<String> {
    store
        .history(id)
        .unwrap()
        .iter()
        .filter(|e| e.kind == "failed")
        .map(|e| e.details.to_string())
        .collect()
}

#[test]
fn a_cooperative_handler_is_stopped_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(2)).unwrap();
    let saw_timeout = Arc::new(AtomicBool::new(false));
    let seen = saw_timeout.clone();
    rt.register(
        "slow",
        Kind::new(move |ctx: &TaskContext, _| {
            if ctx.attempt() == 1 {
                // Waits far longer than the limit: only the timeout ends this wait.
                assert!(ctx.wait_cancelled(HANG), "the timeout never fired");
                seen.store(ctx.is_timed_out(), Ordering::SeqCst);
                return Err("stopped".into());
            }
            Ok(json!("second attempt"))
        })
        .timeout(Duration::from_millis(20))
        .retry(retry_fast(3)),
    );
    rt.start().unwrap();
    let t = rt.submit("slow", json!(null), 5).unwrap();
    wait_state(rt.store(), &t.id, TaskState::Completed);
    let done = rt.store().get(&t.id).unwrap();
    assert_eq!(done.attempt, 2);
    assert_eq!(done.result.as_deref(), Some(&json!("second attempt")));
    assert!(saw_timeout.load(Ordering::SeqCst), "is_timed_out was false");
    let f = failures(rt.store(), &t.id);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("timed out after 20 ms"), "{f:?}");
    assert!(rt.health().timed_out >= 1);
    rt.shutdown(HANG).unwrap();
}

#[test]
fn the_last_timed_out_attempt_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(1)).unwrap();
    rt.register(
        "slow",
        Kind::new(|ctx: &TaskContext, _| {
            ctx.wait_cancelled(HANG);
            // Even a success returned after the limit does not complete the task.
            Ok(json!("too late"))
        })
        .timeout(Duration::from_millis(10))
        .retry(retry_fast(2)),
    );
    rt.start().unwrap();
    let t = rt.submit("slow", json!(null), 5).unwrap();
    wait_for("two attempts to fail", || {
        rt.store()
            .get(&t.id)
            .is_ok_and(|t| t.state == TaskState::Discarded && t.attempt == 2)
    });
    let f = failures(rt.store(), &t.id);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f.iter().all(|e| e.contains("timed out")), "{f:?}");
    rt.shutdown(HANG).unwrap();
}

#[test]
fn a_task_timeout_overrides_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(1)).unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let a = attempts.clone();
    // The kind has no limit; the task brings its own.
    rt.register(
        "k",
        Kind::new(move |ctx: &TaskContext, _| {
            a.fetch_add(1, Ordering::SeqCst);
            if ctx.wait_cancelled(HANG) {
                return Err("stopped".into());
            }
            Ok(json!("no limit"))
        })
        .retry(retry_fast(1)),
    );
    rt.start().unwrap();
    let t = rt
        .submit_task(
            "k",
            NewTask::new("limited").meta(META_TIMEOUT_MS, json!(15)),
            json!(null),
            5,
        )
        .unwrap();
    wait_state(rt.store(), &t.id, TaskState::Discarded);
    assert!(failures(rt.store(), &t.id)[0].contains("timed out after 15 ms"));
    rt.shutdown(HANG).unwrap();
}

/// What the abandoned handler saw when it finally wrote.
type Late = Arc<Mutex<Option<String>>>;

#[test]
fn a_handler_ignoring_its_timeout_is_abandoned_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    // One worker: the retry can only run because the abandoned worker was replaced.
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(1)).unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let late: Late = Arc::new(Mutex::new(None));
    let (r, l) = (release.clone(), late.clone());
    rt.register(
        "stubborn",
        Kind::new(move |ctx: &TaskContext, _| {
            if ctx.attempt() > 1 {
                return Ok(json!("attempt 2"));
            }
            // Ignores cancellation: waits for the test, long after it was abandoned.
            let deadline = Instant::now() + HANG;
            while !r.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            let refused = ctx.progress(99, Some("late"), None);
            *l.lock().unwrap() = Some(match refused {
                Ok(()) => "accepted".into(),
                Err(e) => format!("{e}"),
            });
            Ok(json!("attempt 1, late"))
        })
        .timeout(Duration::from_millis(10))
        .abandon_after(Duration::from_millis(10))
        .retry(retry_fast(3)),
    );
    rt.start().unwrap();
    let t = rt.submit("stubborn", json!(null), 5).unwrap();
    wait_state(rt.store(), &t.id, TaskState::Completed);
    let done = rt.store().get(&t.id).unwrap();
    assert_eq!(done.attempt, 2);
    assert_eq!(done.result.as_deref(), Some(&json!("attempt 2")));
    // Now let the abandoned handler write: its progress and its result must be refused.
    release.store(true, Ordering::SeqCst);
    wait_for("the late write", || late.lock().unwrap().is_some());
    let late = late.lock().unwrap().clone().unwrap();
    assert!(
        late.contains("stale attempt"),
        "late write was not fenced: {late}"
    );
    assert!(rt.wait_idle(HANG));
    let after = rt.store().get(&t.id).unwrap();
    assert_eq!(after.version, done.version, "a late write changed the task");
    assert_eq!(after.result.as_deref(), Some(&json!("attempt 2")));
    let f = failures(rt.store(), &t.id);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("abandoned"), "{f:?}");
    assert_eq!(rt.health().abandoned, 1);
    rt.shutdown(HANG).unwrap();
    // The outcome is durable like any other.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&t.id).unwrap().state, TaskState::Completed);
}
