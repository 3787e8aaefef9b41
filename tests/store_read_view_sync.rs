//! Goal: prove the store-level API of issue #21: `Store::sync` puts what `Buffered` durability
//! acknowledged on disk (a power cut right after it loses nothing), a `ReadView` sees one LSN
//! across its reads while writers run, a write on the thread holding a view is refused instead
//! of hanging, dropping the last clone closes the store (its lock is free again), and the
//! `Query` builders and `count`/`list` take the same things.
//!
//! Method: the simulated disk (`wal::sim`) and its durable-only crash image for `sync`; a
//! writer thread racing a view for consistency; plain temporary directories otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tasklog::store::StoreOptions;
use tasklog::wal::sim::SimStorage;
use tasklog::{Durability, Error, Filter, NewTask, Query, Store, TaskState};

#[test]
fn sync_makes_buffered_acknowledgements_survive_a_power_cut() {
    let sim = SimStorage::new(21);
    let options = || {
        StoreOptions::new()
            .storage(Arc::new(sim.clone()))
            .durability(Durability::Buffered)
            .snapshot_every_records(0)
            .snapshot_every_bytes(0)
    };
    let store = options().open("/db").unwrap();
    for n in 0..50 {
        store
            .submit(NewTask::new(format!("row {n}")).id(format!("t{n}")))
            .unwrap();
    }
    store.sync().unwrap();
    let image = sim.crash();
    drop(store);
    let reopened = StoreOptions::new()
        .storage(Arc::new(image))
        .open("/db")
        .unwrap();
    for n in 0..50 {
        reopened.get(&format!("t{n}")).unwrap();
    }
}

#[test]
fn a_read_view_sees_one_lsn_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.submit(NewTask::new("seed").tag("x")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                store
                    .submit(NewTask::new(format!("w{n}")).tag("x"))
                    .unwrap();
                n += 1;
            }
        })
    };
    for _ in 0..20 {
        let view = store.read().unwrap();
        let lsn = view.lsn();
        let q = Query::new().state(TaskState::Pending).tag("x");
        let count = view.count(&q).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(view.list(&q).unwrap().tasks.len(), count);
        assert_eq!(view.stats(None).unwrap().total, count);
        assert_eq!(view.len(), count);
        assert_eq!(view.lsn(), lsn);
        // Reads through the store on the same thread still work while the view is held.
        assert!(store.count(Filter::new().tag("x")).unwrap() >= count);
        // A write here would wait for this very view: refused, not hung.
        assert!(matches!(
            store.submit(NewTask::new("deadlock?")),
            Err(Error::InvalidInput { .. })
        ));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // Once the view is gone, writes on this thread work again.
    store.submit(NewTask::new("after")).unwrap();
}

#[test]
fn dropping_the_last_clone_closes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clone = store.clone();
    store.submit(NewTask::new("a").id("a")).unwrap();
    drop(store);
    // One clone still holds the store: a second writer is refused.
    assert!(matches!(Store::open(dir.path()), Err(Error::Locked { .. })));
    drop(clone);
    let again = Store::open(dir.path()).unwrap();
    again.get("a").unwrap();
    // An explicit close closes every clone.
    let other = again.clone();
    again.close().unwrap();
    assert!(matches!(
        other.submit(NewTask::new("b")),
        Err(Error::Closed)
    ));
}

#[test]
fn count_and_list_take_the_same_query_or_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 0..5 {
        let t = store
            .submit(NewTask::new(format!("t{n}")).tag(if n % 2 == 0 { "even" } else { "odd" }))
            .unwrap();
        if n == 0 {
            store.start(&t.id).unwrap();
        }
    }
    let even = Filter::new().tag("even").state(TaskState::Pending);
    assert_eq!(store.count(&even).unwrap(), 2);
    assert_eq!(store.list(&even).unwrap().tasks.len(), 2);
    let q = Query::new().tag("even").state(TaskState::Pending).limit(1);
    assert_eq!(store.count(&q).unwrap(), 2, "count ignores the page");
    assert_eq!(store.list(q).unwrap().tasks.len(), 1);
    assert_eq!(store.count(Query::new().descending()).unwrap(), 5);
}
