//! Goal: prove unique tasks (issue #19): a submit whose unique key is held within its scope
//! returns the holder and writes nothing; 16 threads racing on one key create exactly one
//! task; the key is durable (a reopened store still enforces it); the default scope ends when
//! the holder ends, a period scope does not; a removed holder frees its key; bad keys are
//! refused with the field named.
//!
//! Method: submits through `Store` and `Runtime` from many threads behind a barrier; counts
//! of tasks and history events are read back from the store.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use tasklog::runtime::{META_UNIQUE_FOR_MS, META_UNIQUE_KEY, UniqueScope, unique};
use tasklog::store::{Change, Mutation};
use tasklog::{Error, NewTask, Store};

fn submit(store: &Store, title: &str, key: &str, scope: UniqueScope) -> tasklog::Task {
    store
        .submit(unique(NewTask::new(title), key, scope))
        .unwrap()
}

#[test]
fn sixteen_racing_submits_create_one_task_and_the_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                submit(
                    &store,
                    &format!("racer {i}"),
                    "invoice-42",
                    UniqueScope::Active,
                )
                .id
            })
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(store.len(), 1);
    assert_eq!(
        store.history(&ids[0]).unwrap().len(),
        1,
        "a repeat wrote an event"
    );
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let again = submit(&store, "after restart", "invoice-42", UniqueScope::Active);
    assert_eq!(again.id, ids[0]);
    assert_eq!(store.len(), 1);
    // Another key is another task.
    assert_ne!(
        submit(&store, "x", "invoice-43", UniqueScope::Active).id,
        ids[0]
    );
}

#[test]
fn the_active_scope_ends_with_the_holder_and_a_period_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = submit(&store, "a", "k", UniqueScope::Active);
    store.start(&a.id).unwrap();
    // Running still holds the key.
    assert_eq!(submit(&store, "a2", "k", UniqueScope::Active).id, a.id);
    store.complete(&a.id, None).unwrap();
    let b = submit(&store, "b", "k", UniqueScope::Active);
    assert_ne!(b.id, a.id, "a completed holder kept the key");
    // With a period, the completed holder still counts within it.
    let hour = UniqueScope::For(Duration::from_secs(3_600));
    let p = submit(&store, "p", "daily", hour);
    store.start(&p.id).unwrap();
    store.complete(&p.id, None).unwrap();
    assert_eq!(submit(&store, "p2", "daily", hour).id, p.id);
    // A removed holder frees the key.
    store.remove(&p.id, None).unwrap();
    assert_ne!(submit(&store, "p3", "daily", hour).id, p.id);
}

#[test]
fn a_batch_with_the_key_twice_creates_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m = |t: &str| Mutation::submit(unique(NewTask::new(t), "same", UniqueScope::Active));
    let out = store.batch(vec![m("one"), m("two")]).unwrap();
    assert_eq!(out[0].id, out[1].id);
    assert_eq!(out[0].title, "one");
    assert_eq!(store.len(), 1);
    // A key given by an update counts as well.
    let plain = store.submit(NewTask::new("plain")).unwrap();
    let mut u = tasklog::task::TaskUpdate::default();
    u.set_metadata
        .insert(META_UNIQUE_KEY.into(), json!("given-later"));
    store
        .apply(Mutation::new(plain.id.clone(), Change::Update(u)))
        .unwrap();
    assert_eq!(
        submit(&store, "x", "given-later", UniqueScope::Active).id,
        plain.id
    );
}

#[test]
fn bad_keys_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (k, v) in [
        (META_UNIQUE_KEY, json!(7)),
        (META_UNIQUE_KEY, json!("")),
        (META_UNIQUE_KEY, json!("x".repeat(257))),
    ] {
        let err = store.submit(NewTask::new("t").meta(k, v)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { at: Some(at), .. } if at.contains(k)),
            "{err}"
        );
    }
    let err = store
        .submit(
            NewTask::new("t")
                .meta(META_UNIQUE_KEY, json!("k"))
                .meta(META_UNIQUE_FOR_MS, json!(-1)),
        )
        .unwrap_err();
    assert!(err.to_string().contains(META_UNIQUE_FOR_MS), "{err}");
    assert!(store.is_empty(), "a refused submit wrote something");
}
