//! Goal: prove seed 002's interrupted-work rules as store options (issue #19): a chosen
//! message is recorded on work interrupted by a crash, and `PendingAtOpen::Cancel` cancels
//! the tasks that were pending at open with that message (running ones follow the
//! interrupted-work policy); the default keeps pending tasks queued.
//!
//! Method: a store session that "crashes" (dropped without close, leaving a running task), then
//! reopened with the options; states and recorded errors are read back.

use tasklog::store::{InterruptedPolicy, PendingAtOpen, StoreOptions};
use tasklog::{NewTask, Store, TaskState};

const SEED_002: &str = "Task failed due to system restart";

fn crashed_store(dir: &std::path::Path) -> (String, String) {
    let store = Store::open(dir).unwrap();
    let pending = store.submit(NewTask::new("queued")).unwrap().id;
    let running = store.submit(NewTask::new("working")).unwrap().id;
    store.start(&running).unwrap();
    // No close: the session never ends cleanly, as in a crash.
    std::mem::forget(store);
    (pending, running)
}

#[test]
fn seed_002_fails_running_and_cancels_pending_work_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let (pending, running) = crashed_store(dir.path());
    // NOTE: the forgotten store still holds the lock in this process; a fresh process would
    // not. Open a copy of the directory instead.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let store = StoreOptions::new()
        .interrupted_message(SEED_002)
        .pending_at_open(PendingAtOpen::Cancel)
        .open(copy.path())
        .unwrap();
    let r = store.get(&running).unwrap();
    assert_eq!(r.state, TaskState::Failed);
    assert_eq!(r.last_error.as_deref(), Some(SEED_002));
    let p = store.get(&pending).unwrap();
    assert_eq!(p.state, TaskState::Cancelled);
    let h = store.history(&pending).unwrap();
    assert_eq!(h.last().unwrap().details["reason"], SEED_002);
    assert_eq!(h.last().unwrap().actor.as_deref(), Some("tasklog-recovery"));
    // Retryable by hand.
    assert_eq!(store.retry(&pending).unwrap().state, TaskState::Pending);
}

#[test]
fn by_default_pending_work_stays_queued_and_requeued_work_is_not_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (pending, running) = crashed_store(dir.path());
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let store = Store::open(copy.path()).unwrap();
    assert_eq!(store.get(&pending).unwrap().state, TaskState::Pending);
    assert_eq!(
        store.get(&running).unwrap().last_error.as_deref(),
        Some("interrupted by restart")
    );
    store.close().unwrap();
    drop(store);
    let copy2 = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy2.path());
    let store = StoreOptions::new()
        .interrupted_policy(InterruptedPolicy::Requeue)
        .pending_at_open(PendingAtOpen::Cancel)
        .open(copy2.path())
        .unwrap();
    // The running task was requeued by its policy, not cancelled as pending.
    assert_eq!(store.get(&running).unwrap().state, TaskState::Pending);
    assert_eq!(store.get(&pending).unwrap().state, TaskState::Cancelled);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
