//! `Store::recover_abandoned`, the only public way to write an `interrupted` event (issue #21:
//! no public way to forge history). Goal: it takes back a running task whose owner is really
//! gone (lease expired, or a session that is over) as the interrupted-work policy says, and
//! refuses live or non-running work without writing anything. Method: real stores in
//! temporary directories; a 1 ms lease left to expire; a task left running across a reopen
//! with `InterruptedPolicy::Leave` to make an orphan of an ended session.

use std::time::Duration;

use tasklog::store::{InterruptedPolicy, StoreOptions};
use tasklog::{Error, NewTask, Store, TaskState};

#[test]
fn a_task_that_is_not_running_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = store.submit(NewTask::new("idle")).unwrap();
    let e = store.recover_abandoned(&t.id, "why", None).unwrap_err();
    assert!(matches!(e, Error::InvalidTransition { .. }), "{e}");
    assert_eq!(store.history(&t.id).unwrap().len(), 1);
}

#[test]
fn live_work_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let leased = store.submit(NewTask::new("leased")).unwrap();
    store.claim(&leased.id, "w1", 60_000).unwrap();
    let mine = store.submit(NewTask::new("this session")).unwrap();
    store.start(&mine.id).unwrap();
    for id in [&leased.id, &mine.id] {
        let before = store.get(id).unwrap();
        let e = store.recover_abandoned(id, "why", None).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains(id.as_str()), "{e}");
        let after = store.get(id).unwrap();
        assert_eq!(
            (after.state, after.version),
            (TaskState::Running, before.version)
        );
    }
}

#[test]
fn an_expired_lease_is_taken_back_as_the_policy_says_with_reason_and_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = store.submit(NewTask::new("stuck")).unwrap();
    store.claim(&t.id, "w1", 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let back = store
        .recover_abandoned(&t.id, "lease expired", Some("ops"))
        .unwrap();
    // The default policy is MarkFailed.
    assert_eq!(back.state, TaskState::Failed);
    let last = store.history(&t.id).unwrap().pop().unwrap();
    assert_eq!(last.kind, "interrupted");
    assert_eq!(last.actor.as_deref(), Some("ops"));
    assert_eq!(last.details["reason"], "lease expired");
}

#[test]
fn a_task_orphaned_by_an_ended_session_is_requeued_under_a_non_failing_policy() {
    let dir = tempfile::tempdir().unwrap();
    let leave = || StoreOptions::new().interrupted_policy(InterruptedPolicy::Leave);
    let id = {
        let store = Store::open_with(dir.path(), leave()).unwrap();
        let t = store.submit(NewTask::new("orphan")).unwrap();
        store.start(&t.id).unwrap();
        // Dropped without a clean session end being relevant: the next open is a new session.
        t.id
    };
    let store = Store::open_with(dir.path(), leave()).unwrap();
    assert_eq!(store.get(&id).unwrap().state, TaskState::Running);
    let back = store.recover_abandoned(&id, "owner gone", None).unwrap();
    assert_eq!(back.state, TaskState::Pending);
}
