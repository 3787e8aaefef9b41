//! Goal: pin the store-level findings of the outside durability review (issue #24), each with
//! a test that failed before its fix: an oversized event is an input error that leaves the
//! store writable; retention never removes a task that changed after it was chosen; a read
//! (including `NotFound` and a refused mutation) never reveals a change that is not durable.
//!
//! Method: stores on the simulated disk (`SimStorage`), whose fsyncs a test can hold back
//! (`hold_syncs`) to look at the store while a commit is between applying and being durable,
//! and fail (`fail_nth_sync`) so that what was revealed is then lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::sim_store;
use tasklog::store::Store;
use tasklog::wal::RECORD_BYTES_MAX;
use tasklog::wal::sim::SimStorage;
use tasklog::{Error, NewTask, TaskState};

/// Rounds of the retention race (each about 60 ms of racing).
const ROUNDS: usize = 15;

/// Finding 2: a >64 MiB event is refused before any I/O, as `TooLarge`, and the store stays
/// writable (it used to be poisoned, as if the disk had failed).
#[test]
fn an_oversized_event_is_refused_without_poisoning_the_store() {
    let sim = SimStorage::new(1);
    let store = sim_store(&sim);
    // NOTE: no single string may exceed `task::limits::TEXT_BYTES_MAX` (16 MiB, refused as
    // `InvalidInput`), so the oversized event is made of several strings under that limit.
    let piece = "x".repeat(tasklog::task::limits::TEXT_BYTES_MAX);
    let pieces = RECORD_BYTES_MAX / piece.len() + 1;
    let mut big = NewTask::new("big").id("big");
    for i in 0..pieces {
        big = big.meta(format!("k{i}"), serde_json::Value::String(piece.clone()));
    }
    let err = store.submit(big).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(matches!(store.get("big"), Err(Error::NotFound { .. })));
    let t = store.submit(NewTask::new("small").id("small")).unwrap();
    assert_eq!(t.state, TaskState::Pending);
    store.close().unwrap();
    let again = sim_store(&sim);
    assert!(again.get("small").is_ok());
    assert!(matches!(again.get("big"), Err(Error::NotFound { .. })));
}

/// Finding 3: `cleanup` chooses terminal tasks under a read lock, then removes them. A task
/// retried in between (pending again) must be skipped, never removed. One thread runs
/// retention in a loop while another keeps retrying and failing tasks; afterwards no
/// retention removal may have left from a state other than a terminal one.
#[test]
fn retention_skips_tasks_that_changed_after_they_were_chosen() {
    let sim = SimStorage::new(2);
    let store = sim_store(&sim);
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let n = 60;
        let batch: Vec<String> = (0..n).map(|i| format!("r{round}-t{i}")).collect();
        for id in &batch {
            store.submit(NewTask::new("t").id(id.clone())).unwrap();
            store.start(id).unwrap();
            store.fail(id, "boom").unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let retrier = {
            let (store, batch, stop) = (store.clone(), batch.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for id in &batch {
                        // Retry then fail again: terminal, pending, running, terminal. Any
                        // step may find the task removed meanwhile.
                        if store.retry(id).is_ok() && store.start(id).is_ok() {
                            let _ = store.fail(id, "again");
                        }
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_millis(60);
        while Instant::now() < deadline {
            store.cleanup(Duration::ZERO).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        retrier.join().unwrap();
        ids.extend(batch);
    }
    for id in &ids {
        for e in store.history(id).unwrap() {
            if e.kind == "removed" {
                let from = e.from.expect("a removal has a state before");
                assert!(
                    from.is_terminal(),
                    "{id}: retention removed a task that was {from} (LSN {})",
                    e.lsn
                );
            }
        }
    }
}

/// Finding 3, made deterministic: retention chooses a failed task, then waits (its read waits
/// for an unrelated commit whose fsync is held); meanwhile the task is retried. When the fsync
/// goes on, retention must skip the task, which is pending now.
#[test]
fn retention_skips_a_task_retried_while_it_waited() {
    let sim = SimStorage::new(4);
    let store = sim_store(&sim);
    store.submit(NewTask::new("t").id("t")).unwrap();
    store.start("t").unwrap();
    store.fail("t", "boom").unwrap();
    sim.hold_syncs();
    let other_lsn = store.last_lsn() + 1;
    let other = {
        let store = store.clone();
        std::thread::spawn(move || store.submit(NewTask::new("o").id("o")).map(|_| ()))
    };
    wait_applied_and_held(&store, &sim, other_lsn);
    let cleaner = {
        let store = store.clone();
        std::thread::spawn(move || store.cleanup(Duration::ZERO))
    };
    // Retention chose "t" (failed) and now waits for the held fsync.
    std::thread::sleep(Duration::from_millis(200));
    let retrier = {
        let store = store.clone();
        std::thread::spawn(move || store.retry("t").map(|_| ()))
    };
    wait_applied_and_held(&store, &sim, other_lsn + 1);
    sim.release_syncs();
    other.join().unwrap().unwrap();
    retrier.join().unwrap().unwrap();
    assert_eq!(
        cleaner.join().unwrap().unwrap(),
        0,
        "nothing terminal was left"
    );
    assert_eq!(store.get("t").unwrap().state, TaskState::Pending);
}

/// Waits until the store applied `lsn` and a file fsync is held at the gate.
fn wait_applied_and_held(store: &Store, sim: &SimStorage, lsn: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.last_lsn() < lsn || sim.syncs_held() == 0 {
        assert!(
            Instant::now() < deadline,
            "the commit never reached its fsync"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Finding 5: while a removal is applied but its fsync has not returned, `get` of the task,
/// and a mutation of it refused because it is gone, must wait; when that fsync then fails the
/// removal never happened, and neither reader may have been told `NotFound`.
#[test]
fn not_found_and_refusals_wait_for_the_durability_of_what_they_reveal() {
    let sim = SimStorage::new(3);
    let store = sim_store(&sim);
    store.submit(NewTask::new("t").id("t")).unwrap();
    let removal_lsn = store.last_lsn() + 1;
    sim.hold_syncs();
    sim.fail_nth_sync(1);
    let remover = {
        let store = store.clone();
        std::thread::spawn(move || store.remove("t", None))
    };
    wait_applied_and_held(&store, &sim, removal_lsn);
    let getter = {
        let store = store.clone();
        std::thread::spawn(move || store.get("t").map(|t| t.id))
    };
    let starter = {
        let store = store.clone();
        std::thread::spawn(move || store.start("t").map(|t| t.id))
    };
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        !getter.is_finished(),
        "get answered before the removal was durable"
    );
    assert!(
        !starter.is_finished(),
        "a refusal answered before the removal was durable"
    );
    sim.release_syncs();
    assert!(
        remover.join().unwrap().is_err(),
        "the removal's fsync failed"
    );
    for (what, r) in [
        ("get", getter.join().unwrap()),
        ("start", starter.join().unwrap()),
    ] {
        match r {
            Err(Error::NotFound { .. }) => panic!("{what} revealed a removal that was lost"),
            Err(_) => {}
            Ok(id) => panic!("{what} returned {id} after a failed fsync"),
        }
    }
    drop(store);
    // The removal's bytes never reached the disk: after a power cut the task is there.
    let image = sim.crash();
    let again = sim_store(&image);
    assert_eq!(again.get("t").unwrap().state, TaskState::Pending);
}
