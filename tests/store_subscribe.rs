//! Goal: prove subscriptions (issue #4): a subscription from LSN 1 first catches up on what is
//! already in the log and then follows live commits, without missing or repeating an event,
//! in strictly increasing LSN order, delivering exactly the events that make up every task's
//! history; many subscribers see the same sequence; a subscription from a later LSN starts
//! there.
//!
//! Method: a store with some history (including a reopen, so the log also holds a non-event
//! record) gets 8 subscribers while writer threads keep submitting, driving and removing
//! tasks. Every subscriber reads until a sentinel task appears (with a timeout that only
//! detects hangs). The sequences are compared with each other and with `history()` of every
//! task, live or removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use tasklog::store::{Committed, Mutation, StoreOptions, Subscription};
use tasklog::task::EventKind;
use tasklog::{Error, NewTask, Store};

const HANG: Duration = Duration::from_secs(20);

fn next(sub: &mut Subscription) -> Committed {
    sub.next_timeout(HANG)
        .expect("subscription error")
        .expect("no event within the hang timeout")
}

/// Reads until the `Created` event of task `sentinel`.
fn read_until(sub: &mut Subscription, sentinel: &str) -> Vec<Committed> {
    let mut out = Vec::new();
    loop {
        let c = next(sub);
        let done = c.event.task_id == sentinel && matches!(c.event.kind, EventKind::Created { .. });
        out.push(c);
        if done {
            return out;
        }
    }
}

fn lifecycle(store: &Store, id: &str, i: usize) {
    store
        .submit(NewTask::new(format!("task {id}")).id(id))
        .unwrap();
    match i % 5 {
        0 => {}
        1 => {
            store.start(id).unwrap();
            store.progress(id, 50, Some("half"), None).unwrap();
            store.complete(id, Some(json!(i))).unwrap();
        }
        2 => {
            store.start(id).unwrap();
            store.fail(id, "no").unwrap();
            store.retry(id).unwrap();
        }
        3 => {
            store.cancel(id, None).unwrap();
            store.remove(id, Some("gone")).unwrap();
        }
        _ => {
            store.claim(id, "w", 60_000).unwrap();
            store.checkpoint(id, "c", json!({"i": i})).unwrap();
        }
    }
}

fn check_against_histories(store: &Store, seq: &[Committed]) {
    // Strictly increasing.
    for w in seq.windows(2) {
        assert!(w[0].lsn < w[1].lsn, "LSNs {} then {}", w[0].lsn, w[1].lsn);
    }
    // Exactly the union of all histories.
    let mut by_task: BTreeMap<String, Vec<(u64, &'static str)>> = BTreeMap::new();
    for c in seq {
        by_task
            .entry(c.event.task_id.clone())
            .or_default()
            .push((c.lsn, c.event.kind.name()));
    }
    let mut total = 0;
    for (id, got) in &by_task {
        let h: Vec<(u64, &'static str)> = store
            .history(id)
            .unwrap()
            .iter()
            .map(|e| (e.lsn, e.kind))
            .collect();
        assert_eq!(got, &h, "events of {id}");
        total += h.len();
    }
    assert_eq!(total, seq.len());
    assert_eq!(
        store.stats(None).unwrap().events,
        seq.len() as u64,
        "every event of every task was delivered"
    );
}

#[test]
fn catch_up_then_live_with_many_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..30 {
            lifecycle(&store, &format!("old-{i}"), i);
        }
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    for i in 0..30 {
        lifecycle(&store, &format!("pre-{i}"), i);
    }
    let subscribers = 8;
    let writers = 2;
    let start = Arc::new(Barrier::new(subscribers + writers));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let store = store.clone();
        let start = start.clone();
        readers.push(std::thread::spawn(move || {
            let mut sub = store.subscribe(1).unwrap();
            start.wait();
            read_until(&mut sub, "sentinel")
        }));
    }
    let mut ws = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let start = start.clone();
        ws.push(std::thread::spawn(move || {
            start.wait();
            for i in 0..40 {
                lifecycle(&store, &format!("live-{w}-{i}"), i);
            }
        }));
    }
    for w in ws {
        w.join().unwrap();
    }
    store.submit(NewTask::new("end").id("sentinel")).unwrap();
    let seqs: Vec<Vec<Committed>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let first = &seqs[0];
    for s in &seqs[1..] {
        assert_eq!(s, first, "all subscribers see the same sequence");
    }
    assert_eq!(first[0].lsn, 1);
    assert_eq!(first.last().unwrap().lsn, store.last_lsn());
    let ids: BTreeSet<&str> = first.iter().map(|c| c.event.task_id.as_str()).collect();
    assert!(ids.contains("old-0") && ids.contains("live-1-39"));
    check_against_histories(&store, first);
}

#[test]
fn a_subscription_from_the_middle_starts_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..40 {
        lifecycle(&store, &format!("t{i}"), i);
    }
    store.submit(NewTask::new("s").id("sentinel")).unwrap();
    let full = read_until(&mut store.subscribe(1).unwrap(), "sentinel");
    let mid = full[full.len() / 2].lsn;
    let mut sub = store.subscribe(mid).unwrap();
    let tail = read_until(&mut sub, "sentinel");
    assert_eq!(tail[0].lsn, mid);
    assert_eq!(tail.as_slice(), &full[full.len() / 2..]);
    // And then it goes on live.
    store.submit(NewTask::new("later").id("later")).unwrap();
    let c = next(&mut sub);
    assert_eq!(c.event.task_id, "later");
    assert_eq!(c.lsn, store.last_lsn());
    assert!(
        sub.next_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_subscription_from_beyond_the_end_skips_earlier_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        store.submit(NewTask::new("x").id(format!("a{i}"))).unwrap();
    }
    let from = store.last_lsn() + 3;
    let mut sub = store.subscribe(from).unwrap();
    for i in 0..5 {
        store.submit(NewTask::new("x").id(format!("b{i}"))).unwrap();
    }
    let got: Vec<u64> = (0..3).map(|_| next(&mut sub).lsn).collect();
    assert_eq!(got, [from, from + 1, from + 2]);
    assert!(
        sub.next_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_subscription_below_the_compacted_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .segment_bytes_max(16 << 10)
        .snapshots_kept(1)
        .open(dir.path())
        .unwrap();
    for i in 0..400 {
        store
            .submit(
                NewTask::new(format!("a task with a longish title number {i}"))
                    .id(format!("t{i}"))
                    .description("x".repeat(100)),
            )
            .unwrap();
    }
    let info = store.snapshot().unwrap();
    assert!(info.segments_removed > 0, "{info:?}");
    let first = store.log_stats().first_lsn;
    assert!(first > 1);
    assert!(matches!(
        store.subscribe(1),
        Err(Error::InvalidInput { .. })
    ));
    // From the first LSN still held it works, and histories are complete anyway.
    let mut sub = store.subscribe(first).unwrap();
    assert_eq!(next(&mut sub).lsn, first);
    assert_eq!(store.history("t0").unwrap().len(), 1);
}

#[test]
fn a_subscriber_overtaken_by_compaction_gets_an_error_not_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .segment_bytes_max(16 << 10)
        .snapshots_kept(1)
        .open(dir.path())
        .unwrap();
    let write = |from: usize, to: usize| {
        let ids: Vec<usize> = (from..to).collect();
        for part in ids.chunks(100) {
            let muts = part
                .iter()
                .map(|i| {
                    Mutation::submit(
                        NewTask::new(format!("a task with a longish title number {i}"))
                            .id(format!("t{i}"))
                            .description("x".repeat(100)),
                    )
                })
                .collect();
            store.batch(muts).unwrap();
        }
    };
    // More than one catch-up chunk (1024 events), so that the rest is read after compaction.
    write(0, 3000);
    // Subscribed from the start, has read a little, then falls behind a compaction.
    let mut sub = store.subscribe(1).unwrap();
    let mut got = vec![next(&mut sub).lsn, next(&mut sub).lsn];
    let info = store.snapshot().unwrap();
    assert!(info.segments_removed > 0, "{info:?}");
    write(3000, 3010);
    let outcome = loop {
        match sub.next_timeout(Duration::from_millis(200)) {
            Ok(Some(c)) => got.push(c.lsn),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Whatever it delivered has no hole; if it could not, it says so.
    for w in got.windows(2) {
        assert_eq!(w[1], w[0] + 1, "silent gap in the subscription");
    }
    if outcome.is_ok() {
        assert_eq!(*got.last().unwrap(), store.last_lsn());
    } else {
        assert!(
            matches!(outcome, Err(Error::InvalidInput { .. })),
            "{outcome:?}"
        );
    }
}

#[test]
fn closing_the_store_ends_its_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.submit(NewTask::new("t").id("t")).unwrap();
    let sub = store.subscribe(1).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        // Iterating ends (rather than waiting forever) once the store is closed.
        let n = sub.filter(|r| r.is_ok()).count();
        tx.send(n).unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    store.close().unwrap();
    let n = rx.recv_timeout(HANG).expect("the subscription did not end");
    assert_eq!(n, 1);
    reader.join().unwrap();
}
