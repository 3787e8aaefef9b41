//! Goal: prove that a delayed task (`NewTask::run_at` / `delay`) is not handed to a worker
//! before its time, also after a restart, and that a runtime's scheduler thread fires a
//! schedule whose runs its own workers then run, their outcomes counted.
//!
//! Method: a runtime over a temporary store with a handler that notes when it started each
//! task; the start time is compared with the task's `runtime.not_before`. Waits poll with a
//! generous timeout that only detects hangs; nothing is timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tasklog::runtime::schedule::{self, ScheduleSpec, SystemClock, TaskTemplate};
use tasklog::runtime::{Kind, Runtime, RuntimeOptions, TaskContext};
use tasklog::store::StoreOptions;
use tasklog::task::{META_NOT_BEFORE, Timestamp};
use tasklog::{NewTask, TaskState};

const HANG: Duration = Duration::from_secs(20);

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type Starts = Arc<Mutex<Vec<(String, i64)>>>;

fn runtime(dir: &std::path::Path, starts: &Starts) -> Runtime {
    let options = RuntimeOptions {
        workers: 2,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::open(dir, StoreOptions::new(), options).unwrap();
    let s = starts.clone();
    rt.register(
        "note",
        Kind::new(move |ctx: &TaskContext, input| {
            s.lock()
                .unwrap()
                .push((ctx.id().to_string(), Timestamp::now().as_millis()));
            if input == json!("fail") {
                return Err("asked to fail".into());
            }
            Ok(json!(null))
        }),
    );
    rt
}

#[test]
fn run_at_and_delay_set_the_not_before_key() {
    let at = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();
    let t = NewTask::new("x").run_at(at);
    assert_eq!(t.metadata[META_NOT_BEFORE], json!(at.as_millis()));
    let before = Timestamp::now().as_millis();
    let t = NewTask::new("x").delay(Duration::from_secs(60));
    let nb = t.metadata[META_NOT_BEFORE].as_i64().unwrap();
    assert!(nb >= before + 60_000 && nb <= Timestamp::now().as_millis() + 60_000);
}

#[test]
fn a_delayed_task_waits_for_its_time_and_others_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let starts: Starts = Arc::default();
    let mut rt = runtime(dir.path(), &starts);
    rt.start().unwrap();
    let due = Timestamp::now().plus_millis(400);
    let delayed = rt
        .submit_task("note", NewTask::new("later").run_at(due), json!(null), 9)
        .unwrap();
    let now = rt
        .submit_task("note", NewTask::new("now"), json!(null), 0)
        .unwrap();
    let store = rt.store().clone();
    wait_for("both to complete", || {
        [&delayed.id, &now.id]
            .iter()
            .all(|id| store.get(id).is_ok_and(|t| t.state == TaskState::Completed))
    });
    let starts = starts.lock().unwrap().clone();
    assert_eq!(
        starts[0].0, now.id,
        "the undelayed task ran first despite its lower priority"
    );
    let (_, started) = starts.iter().find(|(id, _)| *id == delayed.id).unwrap();
    assert!(
        *started >= due.as_millis(),
        "started {started} before its time {}",
        due.as_millis()
    );
    rt.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_delay_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let due = Timestamp::now().plus_millis(600);
    let id = {
        let store = StoreOptions::new().open(dir.path()).unwrap();
        let t = store
            .submit(
                NewTask::new("later")
                    .run_at(due)
                    .meta("runtime.kind", json!("note"))
                    .meta("runtime.input", json!(null)),
            )
            .unwrap();
        store.close().unwrap();
        t.id
    };
    let starts: Starts = Arc::default();
    let mut rt = runtime(dir.path(), &starts);
    rt.start().unwrap();
    let store = rt.store().clone();
    wait_for("the task to complete", || {
        store
            .get(&id)
            .is_ok_and(|t| t.state == TaskState::Completed)
    });
    let started = starts.lock().unwrap()[0].1;
    assert!(started >= due.as_millis());
    rt.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_runtime_scheduler_fires_runs_that_its_workers_run_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let starts: Starts = Arc::default();
    let mut rt = runtime(dir.path(), &starts);
    let spec = ScheduleSpec {
        name: "tick".into(),
        every_ms: Some(50),
        overlap: schedule::Overlap::Allow,
        task: TaskTemplate {
            kind: Some("note".into()),
            input: Some(json!("ok")),
            ..TaskTemplate::default()
        },
        ..ScheduleSpec::default()
    };
    schedule::add(rt.store(), &spec, Timestamp::now()).unwrap();
    rt.start().unwrap();
    rt.start_scheduler(Duration::from_millis(10), Arc::new(SystemClock))
        .unwrap();
    let store = rt.store().clone();
    let seen = AtomicUsize::new(0);
    wait_for("five runs to complete", || {
        let s = schedule::stats(&store).unwrap();
        seen.store(s.total_successes as usize, Ordering::Relaxed);
        s.total_successes >= 5
    });
    rt.shutdown(Duration::from_secs(5)).unwrap();
    let store = StoreOptions::new().open(dir.path()).unwrap();
    let stats = schedule::stats(&store).unwrap();
    assert_eq!(stats.scheduled, 1);
    assert_eq!(stats.one_time, 0);
    assert!(stats.total_runs >= 5);
    assert_eq!(stats.total_failures, 0);
    // Each run ran once: one start per run id.
    let starts = starts.lock().unwrap();
    let mut ids: Vec<&String> = starts.iter().map(|(id, _)| id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}
