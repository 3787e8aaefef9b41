//! Regressions found by the durability review, at the store level:
//! - F3: in the Interval and Buffered modes a snapshot used to cover records that were only
//!   acknowledged, not on disk; after a crash the store refused to open. A snapshot now forces
//!   an fdatasync first.
//! - F5: a subscription used to hang after `close()` (its live feed never disconnected) and a
//!   real `Closed` during catch-up was mistaken for the catch-up's own early stop.
//! - F2: a subscriber whose next events were compacted away under it used to jump over them
//!   silently; it must get every event in order, or an error, never a gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tasklog::store::{StoreOptions, Subscription};
use tasklog::task::NewTask;
use tasklog::wal::Durability;
use tasklog::wal::sim::SimStorage;

#[test]
fn snapshot_in_relaxed_modes_survives_a_crash() {
    for durability in [
        Durability::Buffered,
        Durability::Interval(Duration::from_secs(3600)),
    ] {
        let sim = SimStorage::new(3);
        let opts = |sim: &SimStorage| {
            StoreOptions::new()
                .storage(Arc::new(sim.clone()))
                .durability(durability)
                .snapshot_every_records(0)
        };
        let store = opts(&sim).open("/db").unwrap();
        for i in 0..10 {
            store
                .submit(NewTask::new(format!("t{i}")).id(format!("t{i}")))
                .unwrap();
        }
        let snap = store.snapshot().unwrap();
        let image = sim.crash();
        drop(store);
        let reopened = opts(&image)
            .open("/db")
            .unwrap_or_else(|e| panic!("{durability:?}: {e}"));
        assert_eq!(
            reopened.len(),
            10,
            "{durability:?}: the snapshot's events must be on disk"
        );
        assert_eq!(reopened.recovery_report().snapshot_lsn, snap.lsn);
    }
}

#[test]
fn close_ends_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().open(dir.path()).unwrap();
    store.submit(NewTask::new("x").id("x")).unwrap();
    let keep_alive = store.clone();
    let mut sub: Subscription = store.subscribe(1).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let first = sub.next().map(|r| r.is_ok());
        tx.send(first).unwrap();
        // After the close below this must end, not wait for events forever.
        let after_close = sub.next().map(|r| r.is_ok());
        tx.send(after_close).unwrap();
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Some(true)
    );
    store.close().unwrap();
    let started = Instant::now();
    let end = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a closed store's subscription hung");
    assert_eq!(end, None, "a closed store's subscription must end");
    assert!(started.elapsed() < Duration::from_secs(10));
    reader.join().unwrap();
    drop(keep_alive);
}

#[test]
fn compaction_under_a_subscriber_is_never_a_silent_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .segment_bytes_max(4096)
        .snapshot_every_records(0)
        .snapshots_kept(1)
        .open(dir.path())
        .unwrap();
    for i in 0..3000 {
        store
            .submit(NewTask::new(format!("task {i}")).id(format!("t{i:05}")))
            .unwrap();
    }
    let mut sub = store.subscribe(1).unwrap();
    let mut last = 0;
    for _ in 0..1100 {
        let c = sub.next().unwrap().unwrap();
        assert_eq!(c.lsn, last + 1);
        last = c.lsn;
    }
    store.snapshot().unwrap();
    assert!(
        store.log_stats().first_lsn > last + 1,
        "the test needs the next events compacted away"
    );
    loop {
        match sub.next_timeout(Duration::from_millis(100)) {
            Ok(Some(c)) => {
                assert_eq!(c.lsn, last + 1, "a subscriber skipped events");
                last = c.lsn;
            }
            Ok(None) => panic!("the catch-up ended early at LSN {last}"),
            Err(e) => {
                assert!(e.to_string().contains("compacted"), "{e}");
                break;
            }
        }
    }
}

/// Fencing: a worker that lost its claim (the task was requeued and claimed again by the same
/// owner for the same attempt) must not complete the new claim's work.
#[test]
fn a_stale_claim_by_the_same_owner_is_fenced_out() {
    use tasklog::store::{Change, Mutation};
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().open(dir.path()).unwrap();
    store.submit(NewTask::new("x").id("x")).unwrap();
    let first = store.claim("x", "w1", 60_000).unwrap();
    let old_claim = first.lease.as_ref().unwrap().claim_lsn;
    store.requeue("x", Some("handed back")).unwrap();
    let second = store.claim("x", "w1", 60_000).unwrap();
    assert_eq!(first.attempt, second.attempt);
    let new_claim = second.lease.as_ref().unwrap().claim_lsn;
    assert_ne!(old_claim, new_claim);
    let lsn = store.last_lsn();
    let stale = Mutation::new("x", Change::Complete { result: None }).fenced_claim(
        "w1",
        first.attempt,
        old_claim,
    );
    assert!(matches!(
        store.apply(stale),
        Err(tasklog::Error::LeaseMismatch { .. })
    ));
    assert_eq!(store.last_lsn(), lsn, "nothing written");
    // The claim survives a heartbeat, a snapshot and a reopen.
    store.heartbeat("x", "w1", 60_000).unwrap();
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let store = StoreOptions::new().open(dir.path()).unwrap();
    assert_eq!(store.get("x").unwrap().lease.unwrap().claim_lsn, new_claim);
    let current = Mutation::new("x", Change::Complete { result: None }).fenced_claim(
        "w1",
        first.attempt,
        new_claim,
    );
    store.apply(current).unwrap();
}
