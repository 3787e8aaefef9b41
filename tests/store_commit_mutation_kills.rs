//! Tests aimed at the survivors cargo-mutants can leave in `src/store/commit.rs` (issue #23):
//! how a batch sees its own earlier events, fencing, idempotent submits, and every bound
//! checked before an event is written. Each test names what it holds; each check was broken on
//! purpose (the mutant applied by hand) and seen to fail (docs/durability.md, "Mutation
//! testing").

use serde_json::json;
use tasklog::store::{Change, Mutation};
use tasklog::task::{TaskState, TaskUpdate};
use tasklog::{Error, NewTask, Store};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn start(id: &str, owner: &str) -> Mutation {
    Mutation::new(
        id,
        Change::Start {
            owner: Some(owner.into()),
            lease_ms: Some(60_000),
        },
    )
}

fn complete(id: &str) -> Mutation {
    Mutation::new(id, Change::Complete { result: None })
}

fn progress(id: &str, percent: u8) -> Mutation {
    Mutation::new(
        id,
        Change::Progress {
            percent,
            step: None,
            message: None,
        },
    )
}

/// What a refused batch must leave: the same number of tasks and the same last LSN.
fn assert_unchanged(store: &Store, before: (usize, u64)) {
    assert_eq!(
        (store.len(), store.last_lsn()),
        before,
        "a refused batch wrote something"
    );
}

/// The attempt number a task's first claim gets (from a claim of a task of its own).
fn first_claim_attempt(store: &Store) -> u32 {
    store.submit(NewTask::new("probe").id("probe")).unwrap();
    store.claim("probe", "w", 60_000).unwrap().attempt
}

/// A batch whose last mutation completes `a` fenced by claim LSN `base + offset`: when `ok`
/// it went through and `a` is completed, otherwise it was refused for the fence and wrote
/// nothing.
fn assert_fenced_outcome(
    store: &Store,
    r: tasklog::Result<Vec<tasklog::Task>>,
    ok: bool,
    a: &str,
    offset: u64,
    before: (usize, u64),
) {
    if ok {
        r.unwrap();
        assert_eq!(store.get(a).unwrap().state, TaskState::Completed);
    } else {
        assert!(
            matches!(r, Err(Error::LeaseMismatch { .. })),
            "claim LSN base + {offset}: {r:?}"
        );
        assert_unchanged(store, before);
    }
}

/// An update that changes only the priority (a change that touches a task and nothing else).
fn set_priority(id: &str, priority: u8) -> Mutation {
    Mutation::new(
        id,
        Change::Update(TaskUpdate {
            priority: Some(priority),
            ..TaskUpdate::default()
        }),
    )
}

/// A later mutation of a batch is validated against the task as the batch's earlier events
/// left it: submit, start, progress and complete of one new task in one batch.
#[test]
fn a_batch_sees_its_own_earlier_events() {
    let (_dir, store) = open();
    let out = store
        .batch(vec![
            Mutation::submit(NewTask::new("t").id("a")),
            start("a", "w"),
            progress("a", 40),
            complete("a"),
        ])
        .unwrap();
    assert_eq!(out.len(), 4);
    let a = store.get("a").unwrap();
    assert_eq!(a.state, TaskState::Completed);
    assert_eq!(a.version, 4);
    assert_eq!(store.history("a").unwrap().len(), 4);
}

/// Optimistic concurrency inside one batch: the second mutation's expected version is the
/// version after the first; the version before it is a conflict and nothing is written.
#[test]
fn expected_versions_inside_a_batch_follow_its_events() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.start("a").unwrap();
    store
        .batch(vec![
            progress("a", 10).expect_version(2),
            progress("a", 20).expect_version(3),
        ])
        .unwrap();
    assert_eq!(store.get("a").unwrap().version, 4);

    let before = (store.len(), store.last_lsn());
    let e = store
        .batch(vec![
            progress("a", 30).expect_version(4),
            progress("a", 40).expect_version(4),
        ])
        .unwrap_err();
    match e {
        Error::Conflict {
            id,
            expected,
            actual,
        } => assert_eq!((id.as_str(), expected, actual), ("a", 4, 5)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_unchanged(&store, before);
    // A task that does not exist is at version 0.
    store
        .batch(vec![
            Mutation::submit(NewTask::new("t").id("new")).expect_version(0),
        ])
        .unwrap();
}

/// A claim made earlier in the same batch is fenced by the LSN of its own start event: a
/// fence naming that LSN passes, one naming the LSN next to it is refused, and the refusal
/// leaves nothing written.
#[test]
fn a_claim_in_a_batch_is_fenced_by_its_own_lsn() {
    let (_dir, store) = open();
    let attempt = first_claim_attempt(&store);
    for (offset, ok) in [(3u64, true), (2, false), (4, false)] {
        let (a, b) = (format!("a{offset}"), format!("b{offset}"));
        let base = store.last_lsn();
        let before = (store.len(), base);
        let r = store.batch(vec![
            Mutation::submit(NewTask::new("t").id(&a)), // base + 1
            Mutation::submit(NewTask::new("t").id(&b)), // base + 2
            start(&a, "w"),                             // base + 3: the claim
            complete(&a).fenced_claim("w", attempt, base + offset),
        ]);
        assert_fenced_outcome(&store, r, ok, &a, offset, before);
    }
}

/// A claim made earlier in the same batch is seen at its own LSN by a heartbeat later in the
/// batch, and a fenced completion after the heartbeat still names the start's LSN.
#[test]
fn a_heartbeat_in_a_batch_keeps_the_claim_of_the_start_before_it() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.submit(NewTask::new("t").id("b")).unwrap();
    let base = store.last_lsn();
    let heartbeat = Mutation::new(
        "a",
        Change::Heartbeat {
            owner: "w".into(),
            lease_ms: 60_000,
        },
    );
    store
        .batch(vec![set_priority("b", 1), start("a", "w"), heartbeat])
        .unwrap();
    let a = store.get("a").unwrap();
    assert_eq!(a.lease.as_ref().map(|l| l.claim_lsn), Some(base + 2));
    store
        .apply(complete("a").fenced_claim("w", a.attempt, base + 2))
        .unwrap();
}

/// The same, when the start is the task's first event in the batch but not the batch's
/// first event: the batch computes the task after its first touch at that event's LSN.
#[test]
fn a_first_touch_claim_in_a_batch_is_fenced_by_its_own_lsn() {
    let (_dir, store) = open();
    let attempt = first_claim_attempt(&store);
    for (offset, ok) in [(2u64, true), (1, false), (3, false)] {
        let a = format!("a{offset}");
        store.submit(NewTask::new("t").id(&a)).unwrap();
        let base = store.last_lsn();
        let before = (store.len(), base);
        let r = store.batch(vec![
            Mutation::submit(NewTask::new("t")), // base + 1
            start(&a, "w"),                      // base + 2: the claim, a's first touch
            complete(&a).fenced_claim("w", attempt, base + offset),
        ]);
        assert_fenced_outcome(&store, r, ok, &a, offset, before);
    }
}

/// A task removed earlier in a batch is gone for the rest of it: a later change to it is
/// refused and the whole batch with it.
#[test]
fn a_task_removed_in_a_batch_is_gone_for_the_rest_of_it() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.start("a").unwrap();
    let before = (store.len(), store.last_lsn());
    let r = store.batch(vec![
        progress("a", 1),
        Mutation::new("a", Change::Remove { reason: None }),
        progress("a", 2),
    ]);
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    assert_unchanged(&store, before);
    // Removed and submitted again in one batch: the new task starts afresh.
    let out = store
        .batch(vec![
            Mutation::new("a", Change::Remove { reason: None }),
            Mutation::submit(NewTask::new("again").id("a")),
            set_priority("a", 3).expect_version(1),
        ])
        .unwrap();
    assert_eq!(out[2].title, "again");
    assert_eq!(store.get("a").unwrap().state, TaskState::Pending);
}

/// Every event is held to the task limits (`task::limits`) at commit, whatever entry it came
/// through: a metadata value nested deeper than allowed, or a text over the size limit.
#[test]
fn events_over_the_task_limits_are_refused_at_commit() {
    use tasklog::task::limits::{JSON_DEPTH_MAX, TEXT_BYTES_MAX};
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.start("a").unwrap();
    let before = (store.len(), store.last_lsn());
    let mut deep = json!(1);
    for _ in 0..JSON_DEPTH_MAX {
        deep = json!([deep]);
    }
    let r = store.submit(NewTask::new("t").meta("k", deep));
    assert!(matches!(r, Err(Error::InvalidInput { .. })), "{r:?}");
    let long = "x".repeat(TEXT_BYTES_MAX + 1);
    let r = store.fail("a", &long);
    assert!(matches!(r, Err(Error::InvalidInput { .. })), "{r:?}");
    assert_unchanged(&store, before);
}

/// A task whose lease ran out is interrupted to the policy's state (pending or failed), and
/// an interruption to any other state is refused.
#[test]
fn an_interruption_goes_to_pending_or_failed_only() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.claim("a", "w", 1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        store.recover_expired_leases().unwrap(),
        vec!["a".to_string()]
    );
    let a = store.get("a").unwrap();
    assert!(
        matches!(a.state, TaskState::Pending | TaskState::Failed),
        "{:?}",
        a.state
    );
    store.submit(NewTask::new("t").id("b")).unwrap();
    store.start("b").unwrap();
    let before = (store.len(), store.last_lsn());
    for to in [
        TaskState::Running,
        TaskState::Completed,
        TaskState::Cancelled,
    ] {
        let r = store.apply(Mutation::new(
            "b",
            Change::Interrupt {
                reason: "test".into(),
                to,
            },
        ));
        assert!(
            matches!(r, Err(Error::InvalidInput { .. })),
            "{to:?}: {r:?}"
        );
    }
    assert_unchanged(&store, before);
    for to in [TaskState::Pending, TaskState::Failed] {
        store
            .submit(NewTask::new("t").id(format!("c{to:?}")))
            .unwrap();
        store.start(&format!("c{to:?}")).unwrap();
        let t = store
            .apply(Mutation::new(
                format!("c{to:?}"),
                Change::Interrupt {
                    reason: "test".into(),
                    to,
                },
            ))
            .unwrap();
        assert_eq!(t.state, to);
    }
}

/// Fences outside a batch: the owner, the attempt and the claim LSN each have to match.
#[test]
fn a_fence_checks_owner_attempt_and_claim() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    let claimed = store.claim("a", "w", 60_000).unwrap();
    let claim = claimed.lease.as_ref().unwrap().claim_lsn;
    let attempt = claimed.attempt;
    let before = (store.len(), store.last_lsn());
    for m in [
        progress("a", 1).fenced("v", attempt),
        progress("a", 1).fenced("w", attempt + 1),
        progress("a", 1).fenced_claim("w", attempt, claim + 1),
        progress("a", 1).fenced_claim("v", attempt, claim),
        progress("nope", 1).fenced("w", attempt),
    ] {
        let e = store.apply(m).unwrap_err();
        assert!(
            matches!(e, Error::LeaseMismatch { .. } | Error::NotFound { .. }),
            "{e:?}"
        );
    }
    assert_unchanged(&store, before);
    store.apply(progress("a", 1).fenced("w", attempt)).unwrap();
    store
        .apply(progress("a", 2).fenced_claim("w", attempt, claim))
        .unwrap();
}

/// A heartbeat from anyone but the lease holder of a running task is refused; on a task that
/// is not running there is no holder to protect.
#[test]
fn a_heartbeat_from_another_owner_of_a_running_task_is_refused() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.claim("a", "w", 60_000).unwrap();
    let before = (store.len(), store.last_lsn());
    assert!(matches!(
        store.heartbeat("a", "intruder", 60_000),
        Err(Error::LeaseMismatch { .. })
    ));
    assert_unchanged(&store, before);
    let t = store.heartbeat("a", "w", 60_000).unwrap();
    assert_eq!(t.lease.unwrap().owner, "w");
}

/// Idempotent submits: a request id seen earlier in the same batch or in the store returns the
/// task it created and writes nothing; if that task was removed since, the repeat is refused.
#[test]
fn a_repeated_request_id_returns_the_first_task_and_writes_nothing() {
    let (_dir, store) = open();
    let out = store
        .batch(vec![
            Mutation::submit(NewTask::new("t").request_id("r1")),
            Mutation::submit(NewTask::new("other title").request_id("r1")),
        ])
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].id, out[1].id);
    assert_eq!(out[1].title, "t");
    assert_eq!(store.len(), 1);
    let lsn = store.last_lsn();

    let again = store.submit(NewTask::new("t2").request_id("r1")).unwrap();
    assert_eq!(again.id, out[0].id);
    assert_eq!((store.len(), store.last_lsn()), (1, lsn));
    assert_eq!(
        store
            .write_batch(vec![Mutation::submit(NewTask::new("t3").request_id("r1"))])
            .unwrap(),
        0
    );

    store.remove(&out[0].id, None).unwrap();
    assert!(matches!(
        store.submit(NewTask::new("t").request_id("r1")),
        Err(Error::NotFound { .. })
    ));
}

/// Removing returns the task as it stood before the removal.
#[test]
fn a_removed_task_is_handed_back_as_it_was() {
    let (_dir, store) = open();
    store.submit(NewTask::new("kept title").id("a")).unwrap();
    store.start("a").unwrap();
    let out = store
        .batch(vec![
            progress("a", 7),
            Mutation::new("a", Change::Remove { reason: None }),
        ])
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].id, "a");
    assert_eq!(out[1].title, "kept title");
    assert_eq!(out[1].progress.percent, 7);
    assert!(store.get("a").is_err());
}

/// Task ids: 1 to 256 bytes, no control characters.
#[test]
fn task_ids_are_checked_at_their_bounds() {
    let (_dir, store) = open();
    let max = "é".repeat(128);
    assert_eq!(max.len(), 256);
    store.submit(NewTask::new("t").id(&max)).unwrap();
    let before = (store.len(), store.last_lsn());
    for bad in [String::new(), format!("{max}x"), "a\u{7}b".to_string()] {
        let e = store.submit(NewTask::new("t").id(&bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{bad:?}: {e:?}");
    }
    assert_unchanged(&store, before);
}

/// Priority at most 10, on submit and update; percent at most 100, on progress and checkpoint;
/// a title never empty, on submit and update.
#[test]
fn numbers_and_titles_are_checked_at_their_bounds() {
    let (_dir, store) = open();
    store
        .submit(NewTask::new("t").id("a").priority(10))
        .unwrap();
    store.start("a").unwrap();
    let before = (store.len(), store.last_lsn());
    let invalid = |r: tasklog::Result<tasklog::Task>| {
        assert!(matches!(r, Err(Error::InvalidInput { .. })), "{r:?}");
    };
    invalid(store.submit(NewTask::new("t").id("b").priority(11)));
    invalid(store.submit(NewTask::new("  ").id("b")));
    let update = |priority: Option<u8>, title: Option<&str>| TaskUpdate {
        priority,
        title: title.map(str::to_string),
        ..TaskUpdate::default()
    };
    invalid(store.update("a", update(Some(11), None)));
    invalid(store.update("a", update(None, Some(" "))));
    invalid(store.apply(progress("a", 101)));
    let checkpoint = |progress: Option<u8>| {
        Mutation::new(
            "a",
            Change::Checkpoint {
                name: "c".into(),
                data: json!({}),
                progress,
            },
        )
    };
    invalid(store.apply(checkpoint(Some(101))));
    assert_unchanged(&store, before);

    store.update("a", update(Some(10), Some("u"))).unwrap();
    store.update("a", update(Some(0), None)).unwrap();
    store.apply(progress("a", 100)).unwrap();
    assert_eq!(store.get("a").unwrap().progress.percent, 100);
    store.apply(progress("a", 30)).unwrap();
    // A checkpoint without a percent keeps the task's own.
    let t = store.apply(checkpoint(None)).unwrap();
    assert_eq!(t.checkpoint.map(|c| c.progress), Some(30));
    let t = store.apply(checkpoint(Some(0))).unwrap();
    assert_eq!(t.checkpoint.map(|c| c.progress), Some(0));
    let t = store.apply(checkpoint(Some(100))).unwrap();
    assert_eq!(t.checkpoint.map(|c| c.progress), Some(100));
}

/// Tags given twice are kept once, in their first order.
#[test]
fn repeated_tags_are_kept_once() {
    let (_dir, store) = open();
    let t = store
        .submit(
            NewTask::new("t")
                .tag("b")
                .tag("a")
                .tag("b")
                .tag("c")
                .tag("a"),
        )
        .unwrap();
    assert_eq!(t.tags, vec!["b", "a", "c"]);
}

/// A start with an owner and a lease gets a lease expiring that far from now; one without an
/// owner gets none.
#[test]
fn a_start_leases_only_with_an_owner() {
    let (_dir, store) = open();
    store.submit(NewTask::new("t").id("a")).unwrap();
    store.submit(NewTask::new("t").id("b")).unwrap();
    let a = store.claim("a", "w", 60_000).unwrap();
    let lease = a.lease.unwrap();
    let started = a.started_at.unwrap();
    assert_eq!(lease.expires_at, started.plus_millis(60_000));
    let b = store.start("b").unwrap();
    assert!(b.lease.is_none());
}

/// A staged write (an import's path: validated and written a chunk at a time) keeps the LSNs
/// of the whole batch: a claim in its second chunk is fenced by its own LSN in the third.
#[test]
fn a_staged_write_fences_by_the_lsn_of_the_whole_batch() {
    use tasklog::store::set_staging_for_tests;
    let (_dir, store) = open();
    let attempt = first_claim_attempt(&store);
    for id in ["x", "y", "z", "a"] {
        store.submit(NewTask::new("t").id(id)).unwrap();
    }
    let touch = |id: &str| set_priority(id, 2);
    let base = store.last_lsn() + 1;
    // Chunks of two mutations: [x, y], [start a, z], [complete a].
    set_staging_for_tests(1, 2);
    let r = store.write_staged_for_tests(vec![
        touch("x"),
        touch("y"),
        start("a", "w"), // base + 2
        touch("z"),
        complete("a").fenced_claim("w", attempt, base + 2),
    ]);
    set_staging_for_tests(0, 0);
    assert_eq!(r.unwrap(), base + 4);
    let a = store.get("a").unwrap();
    assert_eq!(a.state, TaskState::Completed);
}
