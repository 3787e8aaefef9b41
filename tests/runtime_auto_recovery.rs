//! Goal: prove the automatic recovery strategy (issue #19, seed 003): after a crash, a task
//! at 10 % restarts cleanly (its checkpoint is not handed over), one at 50 % resumes from its
//! checkpoint, one at 97 % is validated only (completed without running again when the
//! validator finds the work done, resumed when it does not); thresholds are configurable; the
//! choice and its reason are in each task's history; `checkpoint_every_percent(n)` asks the
//! handler for a checkpoint at each n % crossed.
//!
//! Method: tasks claimed with a short lease by a store session that closes (a dead worker),
//! then `Runtime::open` recovers them; handlers record the checkpoint they were handed. The
//! recorded `runtime.recovery` metadata and history events are read back. Nothing is timed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tasklog::runtime::{
    AutoRecovery, Kind, META_INPUT, META_KIND, META_RECOVERY, Recovery, Runtime, RuntimeOptions,
    TaskContext,
};
use tasklog::store::StoreOptions;
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

/// Leaves tasks `(id, kind, progress)` running under a dead worker's lapsed lease, each with
/// a checkpoint taken at its progress.
fn interrupted(dir: &std::path::Path, tasks: &[(&str, &str, u8)]) {
    let store = Store::open(dir).unwrap();
    for (id, kind, p) in tasks {
        store
            .submit(
                NewTask::new(*id)
                    .id(*id)
                    .meta(META_KIND, json!(kind))
                    .meta(META_INPUT, json!(null)),
            )
            .unwrap();
        store.claim(id, "dead-worker", 50).unwrap();
        store.progress(id, *p, None, None).unwrap();
        store.checkpoint(id, "cp", json!({"at": p})).unwrap();
    }
    store.close().unwrap();
    std::thread::sleep(Duration::from_millis(100));
}

type Seen = Arc<Mutex<BTreeMap<String, Option<Value>>>>;

fn recording(seen: &Seen) -> Kind {
    let s = seen.clone();
    Kind::new(move |ctx: &TaskContext, _| {
        s.lock().unwrap().insert(
            ctx.id().to_string(),
            ctx.resume_from().map(|c| c.data.clone()),
        );
        Ok(json!("ran"))
    })
}

fn recovery_of(store: &Store, id: &str) -> Value {
    store.get(id).unwrap().metadata[META_RECOVERY].clone()
}

#[test]
fn the_strategy_follows_progress_at_10_50_and_97_percent() {
    let dir = tempfile::tempdir().unwrap();
    interrupted(
        dir.path(),
        &[
            ("at10", "job", 10),
            ("at50", "job", 50),
            ("at97", "job", 97),
            ("at97-not-done", "job", 97),
        ],
    );
    let seen: Seen = Arc::default();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options()).unwrap();
    let auto = AutoRecovery::default().validate(|t| (t.id == "at97").then(|| json!("was done")));
    rt.register("job", recording(&seen).recovery(Recovery::Auto(auto)));
    rt.start().unwrap();
    let store = rt.store().clone();
    let ids = ["at10", "at50", "at97", "at97-not-done"];
    wait_for("all to complete", || {
        ids.iter()
            .all(|id| store.get(id).is_ok_and(|t| t.state == TaskState::Completed))
    });
    assert!(rt.wait_idle(HANG));
    let seen = seen.lock().unwrap().clone();
    // 10 %: clean restart, the checkpoint withheld.
    assert_eq!(seen.get("at10"), Some(&None));
    assert_eq!(recovery_of(&store, "at10")["strategy"], "restart");
    // 50 %: resumed from its checkpoint.
    assert_eq!(seen.get("at50"), Some(&Some(json!({"at": 50}))));
    assert_eq!(recovery_of(&store, "at50")["strategy"], "resume");
    // 97 %: validated only, never run again.
    assert!(!seen.contains_key("at97"));
    assert_eq!(
        store.get("at97").unwrap().result.as_deref(),
        Some(&json!("was done"))
    );
    assert_eq!(recovery_of(&store, "at97")["strategy"], "validated");
    // 97 % that the validator does not confirm: resumed.
    assert_eq!(seen.get("at97-not-done"), Some(&Some(json!({"at": 97}))));
    assert_eq!(recovery_of(&store, "at97-not-done")["strategy"], "resume");
    // Each choice and its reason are in the history, by the recovery actor.
    for id in ids {
        let r = recovery_of(&store, id);
        assert!(
            r["reason"].as_str().unwrap().contains("progress"),
            "{id}: {r}"
        );
        assert_eq!(r["cause"], "interrupted by restart", "{id}");
        let h = store.history(id).unwrap();
        let update = h
            .iter()
            .find(|e| e.kind == "updated" && e.details.to_string().contains(META_RECOVERY))
            .unwrap_or_else(|| panic!("{id}: no recovery in the history"));
        assert_eq!(update.actor.as_deref(), Some("tasklog-runtime"));
    }
    assert_eq!(
        rt.health().recovered,
        [("restart", 1), ("resume", 2), ("validated", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    );
    rt.shutdown(HANG).unwrap();
}

#[test]
fn thresholds_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    interrupted(dir.path(), &[("at50", "job", 50), ("at10", "job", 10)]);
    let seen: Seen = Arc::default();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options()).unwrap();
    // Resume from 5 %, validate from 40 % (with a validator that never confirms).
    let auto = AutoRecovery::default()
        .resume_above(5)
        .validate_above(40)
        .validate(|_| None);
    rt.register("job", recording(&seen).recovery(Recovery::Auto(auto)));
    rt.start().unwrap();
    let store = rt.store().clone();
    wait_for("both to complete", || {
        ["at10", "at50"]
            .iter()
            .all(|id| store.get(id).is_ok_and(|t| t.state == TaskState::Completed))
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.get("at10"), Some(&Some(json!({"at": 10}))));
    assert_eq!(recovery_of(&store, "at10")["strategy"], "resume");
    assert_eq!(recovery_of(&store, "at50")["strategy"], "resume");
    rt.shutdown(HANG).unwrap();
}

#[test]
fn checkpoint_every_percent_asks_at_each_multiple() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options()).unwrap();
    rt.register(
        "steps",
        Kind::new(|ctx: &TaskContext, _| {
            for p in (5..=100).step_by(5) {
                ctx.progress(p, None, None).map_err(|e| e.to_string())?;
                if ctx.checkpoint_due() {
                    ctx.checkpoint(&format!("p{p}"), json!(p))
                        .map_err(|e| e.to_string())?;
                    assert!(!ctx.checkpoint_due());
                }
            }
            Ok(json!(null))
        })
        .checkpoint_every_percent(25),
    );
    rt.start().unwrap();
    let t = rt.submit("steps", json!(null), 0).unwrap();
    wait_for("completion", || {
        rt.store()
            .get(&t.id)
            .is_ok_and(|t| t.state == TaskState::Completed)
    });
    let names: Vec<String> = rt
        .store()
        .history(&t.id)
        .unwrap()
        .iter()
        .filter(|e| e.kind == "checkpoint")
        .map(|e| e.details["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["p25", "p50", "p75", "p100"]);
    rt.shutdown(HANG).unwrap();
}

#[test]
fn the_store_options_message_is_the_recorded_cause() {
    let dir = tempfile::tempdir().unwrap();
    interrupted(dir.path(), &[("t", "job", 50)]);
    let seen: Seen = Arc::default();
    let mut rt = Runtime::open(
        dir.path(),
        StoreOptions::new().interrupted_message("Task failed due to system restart"),
        options(),
    )
    .unwrap();
    rt.register("job", recording(&seen).recovery(Recovery::auto()));
    rt.start().unwrap();
    let store = rt.store().clone();
    wait_for("completion", || {
        store
            .get("t")
            .is_ok_and(|t| t.state == TaskState::Completed)
    });
    assert_eq!(
        recovery_of(&store, "t")["cause"],
        "Task failed due to system restart"
    );
    let h = store.history("t").unwrap();
    let i = h.iter().find(|e| e.kind == "interrupted").unwrap();
    assert_eq!(i.details["reason"], "Task failed due to system restart");
    rt.shutdown(HANG).unwrap();
}
