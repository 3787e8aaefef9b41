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
    let attempt = {
        store.submit(NewTask::new("probe").id("probe")).unwrap();
        store.claim("probe", "w", 60_000).unwrap().attempt
    };
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
        if ok {
            r.unwrap();
            assert_eq!(store.get(&a).unwrap().state, TaskState::Completed);
        } else {
            assert!(
                matches!(r, Err(Error::LeaseMismatch { .. })),
                "claim LSN base + {offset}: {r:?}"
            );
            assert_unchanged(&store, before);
        }
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
        .batch(vec![
            Mutation::new(
                "b",
                Change::Update(TaskUpdate {
                    priority: Some(1),
                    ..TaskUpdate::default()
                }),
            ),
            start("a", "w"),
            heartbeat,
        ])
        .unwrap();
    let a = store.get("a").unwrap();
    assert_eq!(a.lease.as_ref().map(|l| l.claim_lsn), Some(base + 2));
    store
        .apply(complete("a").fenced_claim("w", a.attempt, base + 2))
        .unwrap();
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
