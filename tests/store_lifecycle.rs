//! The store's contract for single tasks: the lifecycle and its history, the state machine
//! (invalid moves are refused with the task and both states named, and write nothing), atomic
//! batches, optimistic concurrency, idempotent submits, retry semantics, and reads of removed
//! tasks' histories.

use serde_json::json;
use tasklog::Error;
use tasklog::store::{Change, Mutation, Store, StoreOptions};
use tasklog::task::{NewTask, OutputKind, TaskState};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .snapshot_every_records(0)
        .open(dir.path())
        .unwrap();
    (dir, store)
}

#[test]
fn full_lifecycle_is_recorded_in_order() {
    let (_d, s) = store();
    let t = s
        .submit(
            NewTask::new("Build")
                .description("compile it")
                .role("ci")
                .provider("gh")
                .model("m1")
                .tag("x")
                .meta("cost", json!(5)),
        )
        .unwrap();
    assert_eq!((t.state, t.attempt, t.version), (TaskState::Pending, 1, 1));
    s.start(&t.id).unwrap();
    s.progress(&t.id, 30, Some("fetch"), Some("cloning"))
        .unwrap();
    s.checkpoint(&t.id, "fetched", json!({"commit": "abc"}))
        .unwrap();
    s.output(&t.id, OutputKind::Stdout, "hello").unwrap();
    let done = s.complete(&t.id, Some(json!({"ok": true}))).unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.progress.percent, 100);
    assert_eq!(done.result.as_deref(), Some(&json!({"ok": true})));
    assert_eq!(done.checkpoint.as_ref().map(|c| c.progress), Some(30));
    assert_eq!(done.outputs.len(), 1);
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert_eq!(done.version, 6);

    let h = s.history(&t.id).unwrap();
    let kinds: Vec<&str> = h.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "started",
            "progress",
            "checkpoint",
            "output",
            "completed"
        ]
    );
    assert!(h.windows(2).all(|w| w[0].lsn < w[1].lsn));
    assert_eq!(h[1].from, Some(TaskState::Pending));
    assert_eq!(h[1].to, Some(TaskState::Running));
    assert_eq!(h[2].details["percent"], json!(30));
    assert_eq!(h[2].details["step"], json!("fetch"));
    assert_eq!(h[0].details["title"], json!("Build"));
}

#[test]
fn invalid_transition_names_task_and_states_and_writes_nothing() {
    let (_d, s) = store();
    let t = s.submit(NewTask::new("x").id("job-1")).unwrap();
    let lsn = s.last_lsn();
    let err = s.complete("job-1", None).unwrap_err();
    match &err {
        Error::InvalidTransition { id, from, to, .. } => {
            assert_eq!(
                (id.as_str(), *from, *to),
                ("job-1", TaskState::Pending, TaskState::Completed)
            );
        }
        other => panic!("wrong error {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("job-1") && text.contains("pending") && text.contains("completed"),
        "{text}"
    );
    assert_eq!(s.last_lsn(), lsn, "nothing written");
    assert_eq!(s.history(&t.id).unwrap().len(), 1);

    // Completed is final.
    s.start("job-1").unwrap();
    s.complete("job-1", None).unwrap();
    for r in [
        s.retry("job-1"),
        s.cancel("job-1", None),
        s.start("job-1"),
        s.fail("job-1", "x"),
    ] {
        assert!(matches!(r, Err(Error::InvalidTransition { .. })), "{r:?}");
    }
    assert!(matches!(s.start("nope"), Err(Error::NotFound { .. })));
}

#[test]
fn retry_keeps_error_and_bumps_attempt() {
    let (_d, s) = store();
    let t = s.submit(NewTask::new("flaky")).unwrap();
    s.start(&t.id).unwrap();
    s.fail(&t.id, "disk full").unwrap();
    let r = s.retry(&t.id).unwrap();
    assert_eq!(
        (r.state, r.attempt, r.error_count),
        (TaskState::Pending, 2, 1)
    );
    assert_eq!(r.last_error.as_deref(), Some("disk full"));
    s.start(&t.id).unwrap();
    s.cancel(&t.id, Some("operator")).unwrap();
    let r = s.retry(&t.id).unwrap();
    assert_eq!(r.attempt, 3);
    // running -> pending (requeue) does not count as an attempt.
    s.start(&t.id).unwrap();
    let r = s.requeue(&t.id, Some("worker gave up")).unwrap();
    assert_eq!((r.state, r.attempt), (TaskState::Pending, 3));
}

#[test]
fn batch_is_all_or_nothing() {
    let (_d, s) = store();
    s.submit(NewTask::new("a").id("a")).unwrap();
    let lsn = s.last_lsn();
    let bad = vec![
        Mutation::submit(NewTask::new("b").id("b")),
        Mutation::new(
            "a",
            Change::Start {
                owner: None,
                lease_ms: None,
            },
        ),
        Mutation::new("b", Change::Complete { result: None }), // b is pending: invalid
    ];
    assert!(matches!(s.batch(bad), Err(Error::InvalidTransition { .. })));
    assert_eq!(s.last_lsn(), lsn);
    assert!(matches!(s.get("b"), Err(Error::NotFound { .. })));
    assert_eq!(s.get("a").unwrap().state, TaskState::Pending);

    // Later mutations of a batch see the earlier ones.
    let good = vec![
        Mutation::submit(NewTask::new("b").id("b")),
        Mutation::new(
            "b",
            Change::Start {
                owner: None,
                lease_ms: None,
            },
        ),
        Mutation::new("b", Change::Complete { result: None }),
    ];
    let out = s.batch(good).unwrap();
    assert_eq!(
        out.iter().map(|t| t.state).collect::<Vec<_>>(),
        [TaskState::Completed; 3]
    );
    let h = s.history("b").unwrap();
    assert_eq!(
        h.iter().map(|e| e.lsn).collect::<Vec<_>>(),
        [lsn + 1, lsn + 2, lsn + 3]
    );
}

#[test]
fn optimistic_concurrency_conflict() {
    let (_d, s) = store();
    let t = s.submit(NewTask::new("x")).unwrap();
    let ok = s
        .apply(
            Mutation::new(
                &t.id,
                Change::Start {
                    owner: None,
                    lease_ms: None,
                },
            )
            .expect_version(1),
        )
        .unwrap();
    assert_eq!(ok.version, 2);
    let err = s
        .apply(Mutation::new(&t.id, Change::Complete { result: None }).expect_version(1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get(&t.id).unwrap().state, TaskState::Running);
}

#[test]
fn request_id_makes_a_retried_submit_a_no_op() {
    let (dir, s) = store();
    let a = s.submit(NewTask::new("once").request_id("req-1")).unwrap();
    let b = s.submit(NewTask::new("once").request_id("req-1")).unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(s.len(), 1);
    s.close().unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    let c = s.submit(NewTask::new("once").request_id("req-1")).unwrap();
    assert_eq!(c.id, a.id, "idempotency survives a reopen");
    assert_eq!(s.history(&a.id).unwrap().len(), 1);
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let (_d, s) = store();
    let e = s.submit(NewTask::new("  ")).unwrap_err();
    assert!(e.to_string().contains("title"), "{e}");
    let e = s.submit(NewTask::new("x").id("")).unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }));
    let t = s.submit(NewTask::new("x")).unwrap();
    s.start(&t.id).unwrap();
    let e = s.progress(&t.id, 101, None, None).unwrap_err();
    assert!(e.to_string().contains("101"), "{e}");
    assert_eq!(s.history(&t.id).unwrap().len(), 2);
}

#[test]
fn removed_task_keeps_its_history_and_can_be_recreated() {
    let (_d, s) = store();
    s.submit(NewTask::new("x").id("r")).unwrap();
    s.remove("r", Some("cleanup")).unwrap();
    assert!(matches!(s.get("r"), Err(Error::NotFound { .. })));
    let h = s.history("r").unwrap();
    assert_eq!(
        h.iter().map(|e| e.kind).collect::<Vec<_>>(),
        ["created", "removed"]
    );
    assert_eq!(h[1].to, None);
    s.submit(NewTask::new("again").id("r")).unwrap();
    assert_eq!(
        s.history("r").unwrap().len(),
        3,
        "the audit trail continues"
    );
}

#[test]
fn read_only_open_sees_everything_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.submit(NewTask::new("x").id("ro")).unwrap();
    let ro = StoreOptions::new()
        .read_only(true)
        .open(dir.path())
        .unwrap();
    assert_eq!(ro.get("ro").unwrap().title, "x");
    assert!(matches!(ro.submit(NewTask::new("y")), Err(Error::ReadOnly)));
    // A second writer is refused while the first holds the lock.
    assert!(matches!(Store::open(dir.path()), Err(Error::Locked { .. })));
}
