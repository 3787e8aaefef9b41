//! Goal: prove the store's leases (issue #4): a claim records the owner and expiry, a heartbeat
//! from the owner extends it and one from anybody else is refused, an expired lease is treated
//! as an interrupted attempt (by the store's policy) both while open and at open, and fencing
//! rejects a stale attempt's late writes without writing anything.
//!
//! Method: drive single tasks through the store API with short leases (sleeping past expiry
//! where needed), and check each outcome in the task, in its history, in the error variant,
//! and in the store's last LSN (to see that a refused change wrote nothing).

use std::time::Duration;

use serde_json::json;
use tasklog::store::{Change, InterruptedPolicy, Mutation, StoreOptions};
use tasklog::task::Timestamp;
use tasklog::{Error, NewTask, Store, TaskState};

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn kinds(store: &Store, id: &str) -> Vec<&'static str> {
    store.history(id).unwrap().iter().map(|e| e.kind).collect()
}

#[test]
fn claim_sets_the_lease_and_heartbeats_extend_it_only_for_the_owner() {
    let (_d, store) = new_store();
    store.submit(NewTask::new("t").id("t")).unwrap();
    let before = Timestamp::now().0;
    let t = store.claim("t", "w1", 10_000).unwrap();
    let after = Timestamp::now().0;
    assert_eq!(t.state, TaskState::Running);
    let lease = t.lease.clone().expect("a lease");
    assert_eq!(lease.owner, "w1");
    assert!(
        lease.expires_at.0 >= before + 10_000 && lease.expires_at.0 <= after + 10_000,
        "expiry {} not in [{}, {}]",
        lease.expires_at.0,
        before + 10_000,
        after + 10_000
    );

    std::thread::sleep(Duration::from_millis(5));
    let h = store.heartbeat("t", "w1", 20_000).unwrap();
    let extended = h.lease.clone().unwrap();
    assert_eq!(extended.owner, "w1");
    assert!(extended.expires_at.0 >= lease.expires_at.0 + 10_000);
    assert_eq!(store.get("t").unwrap().lease, Some(extended.clone()));

    // Another owner's heartbeat is refused and changes nothing.
    let lsn = store.last_lsn();
    let version = store.get("t").unwrap().version;
    match store.heartbeat("t", "w2", 60_000) {
        Err(Error::LeaseMismatch { id, .. }) => assert_eq!(id, "t"),
        other => panic!("expected LeaseMismatch, got {other:?}"),
    }
    assert_eq!(store.last_lsn(), lsn);
    let now = store.get("t").unwrap();
    assert_eq!(now.version, version);
    assert_eq!(now.lease, Some(extended));

    // Nobody else can claim a running task.
    assert!(matches!(
        store.claim("t", "w2", 1000),
        Err(Error::InvalidTransition { .. })
    ));
    // A heartbeat for a task that is not running is refused.
    store.complete("t", None).unwrap();
    assert!(store.heartbeat("t", "w1", 1000).is_err());
    assert_eq!(store.get("t").unwrap().lease, None);
}

#[test]
fn an_expired_lease_is_interrupted_as_failed_by_default() {
    let (_d, store) = new_store();
    store.submit(NewTask::new("short").id("short")).unwrap();
    store.submit(NewTask::new("long").id("long")).unwrap();
    store.submit(NewTask::new("free").id("free")).unwrap();
    store.claim("long", "w1", 60_000).unwrap();
    store.start("free").unwrap(); // running without a lease: never expires
    // Claimed last, with a lease long enough that a slow fdatasync or a paused thread on a
    // loaded machine does not expire it before the first check (30 ms once did not suffice).
    store.claim("short", "w1", 1000).unwrap();
    assert_eq!(
        store.recover_expired_leases().unwrap(),
        Vec::<String>::new()
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(store.recover_expired_leases().unwrap(), ["short"]);
    let t = store.get("short").unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.last_error.as_deref(), Some("lease expired"));
    assert_eq!(t.lease, None);
    assert_eq!(t.error_count, 1);
    let h = store.history("short").unwrap();
    let last = h.last().unwrap();
    assert_eq!(last.kind, "interrupted");
    assert_eq!(last.to, Some(TaskState::Failed));
    // Once only.
    assert_eq!(
        store.recover_expired_leases().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        kinds(&store, "short")
            .iter()
            .filter(|k| **k == "interrupted")
            .count(),
        1
    );
    assert_eq!(store.get("long").unwrap().state, TaskState::Running);
    assert_eq!(store.get("free").unwrap().state, TaskState::Running);
}

#[test]
fn an_expired_lease_is_requeued_with_its_checkpoint_under_the_requeue_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .interrupted_policy(InterruptedPolicy::Requeue)
        .open(dir.path())
        .unwrap();
    store.submit(NewTask::new("t").id("t")).unwrap();
    store.claim("t", "w1", 40).unwrap();
    store.checkpoint("t", "step", json!({"step": 7})).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(store.recover_expired_leases().unwrap(), ["t"]);
    let t = store.get("t").unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(t.lease, None);
    let cp = t.checkpoint.expect("the checkpoint is kept");
    assert_eq!(cp.name, "step");
    assert_eq!(cp.data, json!({"step": 7}));
    assert_eq!(
        store.history("t").unwrap().last().unwrap().kind,
        "interrupted"
    );
    // It can be claimed again by someone else.
    let again = store.claim("t", "w2", 10_000).unwrap();
    assert_eq!(again.lease.unwrap().owner, "w2");
}

#[test]
fn a_stale_attempt_cannot_complete_after_the_task_was_reclaimed() {
    let (_d, store) = new_store();
    store.submit(NewTask::new("t").id("t")).unwrap();
    let first = store.claim("t", "w1", 10_000).unwrap();
    // w1 goes quiet; the task is requeued and w2 claims it.
    store.requeue("t", Some("w1 is slow")).unwrap();
    let second = store.claim("t", "w2", 10_000).unwrap();

    let lsn = store.last_lsn();
    let events = store.history("t").unwrap().len();
    let late = Mutation::new(
        "t",
        Change::Complete {
            result: Some(json!("stale")),
        },
    )
    .fenced("w1", first.attempt);
    match store.apply(late) {
        Err(Error::LeaseMismatch { id, .. }) => assert_eq!(id, "t"),
        other => panic!("expected LeaseMismatch, got {other:?}"),
    }
    // Nothing written.
    assert_eq!(store.last_lsn(), lsn);
    assert_eq!(store.history("t").unwrap().len(), events);
    assert_eq!(store.get("t").unwrap().state, TaskState::Running);

    // Also refused inside a batch, which then writes nothing at all.
    let batch = vec![
        Mutation::new(
            "t",
            Change::Progress {
                percent: 10,
                step: None,
                message: None,
            },
        )
        .fenced("w2", second.attempt),
        Mutation::new("t", Change::Complete { result: None }).fenced("w1", first.attempt),
    ];
    assert!(matches!(
        store.batch(batch),
        Err(Error::LeaseMismatch { .. })
    ));
    assert_eq!(store.last_lsn(), lsn);

    // The current holder's fenced completion goes through.
    let done = store
        .apply(
            Mutation::new(
                "t",
                Change::Complete {
                    result: Some(json!("fresh")),
                },
            )
            .fenced("w2", second.attempt),
        )
        .unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.result.as_deref(), Some(&json!("fresh")));
}

#[test]
fn a_stale_attempt_number_is_fenced_out_even_for_the_same_owner() {
    let (_d, store) = new_store();
    store.submit(NewTask::new("t").id("t")).unwrap();
    let a1 = store.claim("t", "w1", 10_000).unwrap().attempt;
    store.fail("t", "first try").unwrap();
    store.retry("t").unwrap();
    let a2 = store.claim("t", "w1", 10_000).unwrap().attempt;
    assert_eq!(a2, a1 + 1);
    let lsn = store.last_lsn();
    let r = store.apply(Mutation::new("t", Change::Complete { result: None }).fenced("w1", a1));
    assert!(matches!(r, Err(Error::LeaseMismatch { .. })), "{r:?}");
    assert_eq!(store.last_lsn(), lsn);
    // A fenced write to an expired-and-recovered task is refused too.
    let r = store.apply(Mutation::new("t", Change::Complete { result: None }).fenced("w9", a2));
    assert!(matches!(r, Err(Error::LeaseMismatch { .. })), "{r:?}");
}

#[test]
fn a_stale_worker_is_fenced_out_after_lease_expiry_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .interrupted_policy(InterruptedPolicy::Requeue)
        .open(dir.path())
        .unwrap();
    store.submit(NewTask::new("t").id("t")).unwrap();
    let a = store.claim("t", "w1", 30).unwrap().attempt;
    std::thread::sleep(Duration::from_millis(70));
    assert_eq!(store.recover_expired_leases().unwrap(), ["t"]);
    // Before anyone reclaims it the old worker is already fenced out (no lease).
    let r = store.apply(
        Mutation::new(
            "t",
            Change::Checkpoint {
                name: "late".into(),
                data: json!(1),
                progress: None,
            },
        )
        .fenced("w1", a),
    );
    assert!(matches!(r, Err(Error::LeaseMismatch { .. })), "{r:?}");
    store.claim("t", "w2", 10_000).unwrap();
    let lsn = store.last_lsn();
    let r = store.apply(Mutation::new("t", Change::Complete { result: None }).fenced("w1", a));
    assert!(matches!(r, Err(Error::LeaseMismatch { .. })), "{r:?}");
    assert_eq!(store.last_lsn(), lsn);
}

#[test]
fn a_lease_that_expired_while_the_store_was_closed_is_interrupted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.submit(NewTask::new("short").id("short")).unwrap();
        store.submit(NewTask::new("long").id("long")).unwrap();
        store.claim("short", "w1", 150).unwrap();
        store.claim("long", "w1", 600_000).unwrap();
        store.close().unwrap();
    }
    std::thread::sleep(Duration::from_millis(250));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().tasks_interrupted, ["short"]);
    let t = store.get("short").unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.last_error.is_some());
    assert_eq!(
        store.history("short").unwrap().last().unwrap().kind,
        "interrupted"
    );
    // A clean close leaves a task with a live lease running.
    let l = store.get("long").unwrap();
    assert_eq!(l.state, TaskState::Running);
    assert_eq!(l.lease.unwrap().owner, "w1");
    store.close().unwrap();

    // With the requeue policy the same situation ends pending.
    {
        let store = Store::open(dir.path()).unwrap();
        store.submit(NewTask::new("r").id("r")).unwrap();
        store.claim("r", "w1", 150).unwrap();
        store.checkpoint("r", "cp", json!(3)).unwrap();
        store.close().unwrap();
    }
    std::thread::sleep(Duration::from_millis(250));
    let store = StoreOptions::new()
        .interrupted_policy(InterruptedPolicy::Requeue)
        .open(dir.path())
        .unwrap();
    assert_eq!(store.recovery_report().tasks_interrupted, ["r"]);
    let r = store.get("r").unwrap();
    assert_eq!(r.state, TaskState::Pending);
    assert_eq!(r.checkpoint.unwrap().data, json!(3));
}
