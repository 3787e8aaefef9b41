//! A batch validates each mutation against the task as the batch's earlier mutations left it,
//! whether a task is touched once or many times. The store keeps a shadow copy only of tasks a
//! batch touches more than once (found before staging); these tests fail if a repeated task is
//! missed (its later mutations would be judged against the state before the batch).

use tasklog::Error;
use tasklog::store::{Change, Mutation, Store, StoreOptions};
use tasklog::task::{NewTask, TaskState};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .snapshot_every_records(0)
        .open(dir.path())
        .unwrap();
    (dir, store)
}

fn start(id: &str) -> Mutation {
    Mutation::new(
        id,
        Change::Start {
            owner: None,
            lease_ms: None,
        },
    )
}

fn complete(id: &str) -> Mutation {
    Mutation::new(id, Change::Complete { result: None })
}

#[test]
fn a_task_touched_several_times_in_a_batch_sees_its_earlier_events() {
    let (_d, s) = store();
    s.submit(NewTask::new("before").id("c")).unwrap();
    // "a" three times (created in the batch), "b" and "c" once each.
    s.write_batch(vec![
        Mutation::submit(NewTask::new("a").id("a")),
        Mutation::submit(NewTask::new("b").id("b")),
        start("a"),
        start("c"),
        complete("a"),
    ])
    .unwrap();
    assert_eq!(s.get("a").unwrap().state, TaskState::Completed);
    assert_eq!(s.get("b").unwrap().state, TaskState::Pending);
    assert_eq!(s.get("c").unwrap().state, TaskState::Running);
}

#[test]
fn a_later_mutation_of_a_removed_task_is_refused_and_nothing_is_written() {
    let (_d, s) = store();
    s.submit(NewTask::new("x").id("x")).unwrap();
    s.submit(NewTask::new("y").id("y")).unwrap();
    let before = s.get("y").unwrap().version;
    let err = s
        .write_batch(vec![
            start("y"),
            Mutation::new("x", Change::Remove { reason: None }),
            start("x"),
        ])
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref id } if id == "x"),
        "{err:?}"
    );
    assert!(s.get("x").is_ok(), "the refused batch removed nothing");
    assert_eq!(s.get("y").unwrap().version, before, "nor started y");
}

#[test]
fn a_second_start_in_one_batch_is_refused_as_a_start_of_a_running_task() {
    let (_d, s) = store();
    s.submit(NewTask::new("z").id("z")).unwrap();
    let err = s.write_batch(vec![start("z"), start("z")]).unwrap_err();
    assert!(!matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(s.get("z").unwrap().state, TaskState::Pending);
}
