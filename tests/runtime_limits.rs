//! Goal: prove the per-kind admission rules (issue #19): a concurrency limit per kind and per
//! key, and a rate limit per kind, hold across every worker of a store (8 runtime workers,
//! plain `Store::claim` callers racing them), measured from the durable history rather than
//! from counters the runtime keeps; a paused kind starts nothing until resumed, running work
//! finishes, and the pause and the limits survive a restart.
//!
//! Method: many short tasks under 8 workers; afterwards every task's history is merged in LSN
//! order and swept (+1 at `started`, -1 at the attempt's end), so the highest concurrency ever
//! reached is read from what the store recorded. Rate limits use a window far longer than the
//! test so the count admitted is exact; the window arithmetic itself is unit-tested with a
//! hand-driven clock (`store::kinds`). Nothing is timed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;
use tasklog::runtime::{META_KIND, Runtime, RuntimeOptions, TaskContext};
use tasklog::store::{KindSettings, StoreOptions};
use tasklog::{Error, NewTask, Store, TaskState};

const HANG: Duration = Duration::from_secs(120);

fn options(workers: usize) -> RuntimeOptions {
    RuntimeOptions {
        workers,
        lease_ms: 30_000,
        heartbeat_ms: 10_000,
        supervise_ms: 1_000,
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

/// The highest number of tasks running at once, by `group` of a task, swept over the merged
/// histories in LSN order.
fn peak_running(store: &Store, group: impl Fn(&tasklog::Task) -> String) -> HashMap<String, i64> {
    let mut events = Vec::new();
    for task in store.all_tasks().unwrap() {
        let g = group(&task);
        for e in store.history(&task.id).unwrap() {
            let delta = match (e.kind, e.from, e.to) {
                ("started", ..) => 1,
                // Any move out of running ends the attempt.
                (_, Some(TaskState::Running), Some(to)) if to != TaskState::Running => -1,
                _ => 0,
            };
            if delta != 0 {
                events.push((e.lsn, g.clone(), delta));
            }
        }
    }
    events.sort();
    let (mut now, mut peak) = (HashMap::<String, i64>::new(), HashMap::<String, i64>::new());
    for (_, g, d) in events {
        let n = now.entry(g.clone()).or_default();
        *n += d;
        assert!(*n >= 0, "history ends an attempt that never started");
        let p = peak.entry(g).or_default();
        *p = (*p).max(*n);
    }
    peak
}

fn submit_many(rt: &Runtime, kind: &str, n: usize, key: impl Fn(usize) -> String) -> Vec<String> {
    (0..n)
        .map(|i| {
            rt.submit_task(
                kind,
                NewTask::new(format!("{kind} {i}")).meta("customer", json!(key(i))),
                json!(i),
                5,
            )
            .unwrap()
            .id
        })
        .collect()
}

fn all_completed(store: &Store, ids: &[String]) -> bool {
    ids.iter()
        .all(|id| store.get(id).is_ok_and(|t| t.state == TaskState::Completed))
}

#[test]
fn eight_workers_never_exceed_a_kind_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(8)).unwrap();
    let busy = |ctx: &TaskContext, _| {
        // A little work, so that attempts overlap.
        ctx.wait_cancelled(Duration::from_micros(fastrand::u64(0..500)));
        Ok(json!(null))
    };
    rt.register("limited", tasklog::runtime::Kind::new(busy));
    rt.register("free", tasklog::runtime::Kind::new(busy));
    rt.set_kind_settings("limited", KindSettings::new().max_running(3))
        .unwrap();
    rt.start().unwrap();
    let mut ids = submit_many(&rt, "limited", 1_000, |_| String::new());
    ids.extend(submit_many(&rt, "free", 200, |_| String::new()));
    wait_for("1,200 tasks to complete", || {
        all_completed(rt.store(), &ids)
    });
    let peak = peak_running(rt.store(), |t| {
        t.metadata[META_KIND].as_str().unwrap().to_string()
    });
    eprintln!("peak running by kind: {peak:?}");
    assert!(peak["limited"] <= 3, "limit exceeded: {peak:?}");
    // The limit was reached (the workers did contend), and the other kind was not held back.
    assert!(peak["limited"] >= 2, "{peak:?}");
    assert!(peak["free"] >= 1, "{peak:?}");
    rt.shutdown(HANG).unwrap();
}

#[test]
fn a_per_key_limit_holds_for_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(8)).unwrap();
    rt.register(
        "sync",
        tasklog::runtime::Kind::new(|ctx: &TaskContext, _| {
            ctx.wait_cancelled(Duration::from_micros(fastrand::u64(0..500)));
            Ok(json!(null))
        }),
    );
    rt.set_kind_settings(
        "sync",
        KindSettings::new().max_running_per_key("customer", 1),
    )
    .unwrap();
    rt.start().unwrap();
    let ids = submit_many(&rt, "sync", 300, |i| format!("c{}", i % 4));
    wait_for("300 tasks to complete", || all_completed(rt.store(), &ids));
    let peak = peak_running(rt.store(), |t| {
        t.metadata["customer"].as_str().unwrap().to_string()
    });
    eprintln!("peak running by customer: {peak:?}");
    assert_eq!(peak.len(), 4);
    assert!(peak.values().all(|&p| p == 1), "{peak:?}");
    let overall = peak_running(rt.store(), |_| String::new());
    assert!(
        overall[""] >= 2,
        "keys did not run side by side: {overall:?}"
    );
    rt.shutdown(HANG).unwrap();
}

/// Claims from 16 threads at once, outside any runtime: the store's check is atomic.
#[test]
fn racing_claims_are_admitted_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .set_kind_settings("k", KindSettings::new().max_running(2))
        .unwrap();
    let ids: Vec<String> = (0..16)
        .map(|i| {
            store
                .submit(NewTask::new(format!("t{i}")).meta(META_KIND, json!("k")))
                .unwrap()
                .id
        })
        .collect();
    let barrier = Arc::new(Barrier::new(16));
    let won = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id, barrier, won) =
                (store.clone(), id.clone(), barrier.clone(), won.clone());
            std::thread::spawn(move || {
                barrier.wait();
                match store.claim(&id, "w", 60_000) {
                    Ok(_) => {
                        won.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Error::Throttled { kind, .. }) => assert_eq!(kind, "k"),
                    Err(e) => panic!("unexpected error: {e}"),
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(won.load(Ordering::SeqCst), 2);
    // A refused claim wrote nothing.
    let started: usize = ids.iter().map(|id| store.history(id).unwrap().len()).sum();
    assert_eq!(started, 16 + 2);
}

#[test]
fn a_rate_limit_admits_n_starts_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A window far longer than the test: exactly 5 starts fit.
    store
        .set_kind_settings("mail", KindSettings::new().rate(5, 3_600_000))
        .unwrap();
    let mut admitted = 0;
    for i in 0..8 {
        let t = store
            .submit(NewTask::new(format!("m{i}")).meta(META_KIND, json!("mail")))
            .unwrap();
        match store.claim(&t.id, "w", 60_000) {
            Ok(_) => admitted += 1,
            Err(Error::Throttled { retry_after_ms, .. }) => {
                let wait = retry_after_ms.expect("a rate limit says when to come back");
                assert!(wait > 0 && wait <= 3_600_000, "{wait}");
            }
            Err(e) => panic!("{e}"),
        }
        // Completing frees no rate slot (unlike a concurrency slot).
        let _ = store.complete(&t.id, None);
    }
    assert_eq!(admitted, 5);
    // Tasks of other kinds, or of no kind, are not held back.
    let other = store.submit(NewTask::new("other")).unwrap();
    store.claim(&other.id, "w", 60_000).unwrap();
}

#[test]
fn a_paused_kind_starts_nothing_until_resumed_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let kind = |ran: &Arc<AtomicUsize>| {
        let ran = ran.clone();
        tasklog::runtime::Kind::new(move |_: &TaskContext, _| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(json!(null))
        })
    };
    let ids = {
        let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(2)).unwrap();
        rt.register("report", kind(&ran));
        rt.register("other", kind(&ran));
        rt.start().unwrap();
        rt.pause("report").unwrap();
        let ids = submit_many(&rt, "report", 5, |_| String::new());
        let other = submit_many(&rt, "other", 3, |_| String::new());
        wait_for("the other kind to run", || {
            all_completed(rt.store(), &other)
        });
        // The paused kind's tasks stayed pending while another kind ran.
        for id in &ids {
            assert_eq!(rt.store().get(id).unwrap().state, TaskState::Pending);
        }
        // A direct claim is refused too.
        assert!(matches!(
            rt.store().claim(&ids[0], "w", 1_000),
            Err(Error::Throttled { .. })
        ));
        rt.shutdown(HANG).unwrap();
        ids
    };
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    // Reopened: still paused.
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), options(2)).unwrap();
    assert!(rt.store().kind_settings()["report"].paused);
    rt.register("report", kind(&ran));
    rt.start().unwrap();
    assert!(
        !rt.wait_idle(Duration::from_millis(300)),
        "paused tasks vanished"
    );
    for id in &ids {
        assert_eq!(rt.store().get(id).unwrap().state, TaskState::Pending);
    }
    rt.resume("report").unwrap();
    wait_for("the resumed kind to run", || {
        all_completed(rt.store(), &ids)
    });
    assert!(!rt.store().kind_settings().contains_key("report"));
    rt.shutdown(HANG).unwrap();
}

#[test]
fn a_damaged_settings_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path())
        .unwrap()
        .set_kind_settings("k", KindSettings::new().max_running(1))
        .unwrap();
    let path = dir.path().join("kinds.json");
    std::fs::write(
        &path,
        b"{\"version\": 1, \"kinds\": {\"k\": {\"max_running\": \"x\"}}}",
    )
    .unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("a bad file must be refused");
    let text = err.to_string();
    assert!(text.contains("kinds.json"), "{text}");
    std::fs::write(&path, b"{\"version\": 9, \"kinds\": {}}").unwrap();
    let err = Store::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("unsupported format version 9"), "{err}");
}

/// Starts in one batch count against the limits together with the tasks already running (the
/// running counts are taken once per batch, then each admitted start adds to them): a batch
/// that would pass a limit is refused whole and writes nothing.
#[test]
fn starts_in_one_batch_count_together_against_the_limits() {
    use tasklog::store::{Change, Mutation};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .set_kind_settings(
            "k",
            KindSettings::new()
                .max_running(3)
                .max_running_per_key("customer", 2),
        )
        .unwrap();
    for (id, customer) in [
        ("a", "c1"),
        ("b", "c1"),
        ("c", "c1"),
        ("d", "c2"),
        ("e", "c2"),
    ] {
        store
            .submit(
                NewTask::new(id)
                    .id(id)
                    .meta(META_KIND, json!("k"))
                    .meta("customer", json!(customer)),
            )
            .unwrap();
    }
    store.start("a").unwrap();
    let starts = |ids: &[&str]| -> Vec<Mutation> {
        ids.iter()
            .map(|id| {
                Mutation::new(
                    *id,
                    Change::Start {
                        owner: None,
                        lease_ms: None,
                    },
                )
            })
            .collect()
    };
    let before = store.last_lsn();
    // c1 would have 3 running, above its 2.
    assert!(matches!(
        store.batch(starts(&["b", "c"])),
        Err(Error::Throttled { .. })
    ));
    // 4 running in all, above 3.
    assert!(matches!(
        store.batch(starts(&["b", "d", "e"])),
        Err(Error::Throttled { .. })
    ));
    assert_eq!(store.last_lsn(), before, "a refused batch writes nothing");
    store.batch(starts(&["b", "d"])).unwrap();
    assert!(matches!(store.start("e"), Err(Error::Throttled { .. })));
    let running = |id: &str| store.get(id).unwrap().state == TaskState::Running;
    assert!(running("a") && running("b") && running("d"));
    assert!(!running("c") && !running("e"));
}
