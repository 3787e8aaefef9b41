//! Goal: prove that `Store::stats` (issue #4) reports exactly what the tasks say, and that
//! retention (`Store::cleanup`) removes only terminal tasks that finished before the cutoff,
//! never pending or running ones however old, while every removal stays in the audit trail.
//!
//! Method: statistics are compared with a recount from `all_tasks()` and `history()` over a
//! seeded-random store with tasks in all five states, retried, failed and removed ones. For
//! retention, old tasks are set up by importing them (`Change::Import`) with old times, and by
//! replaying their events with old times (`Change::Historical`); `cleanup` must return the
//! exact count, and each removed task's history must end with a `removed` event that is still
//! readable after `snapshot()` and after a reopen.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use tasklog::store::{Change, Mutation};
use tasklog::task::{EventKind, Progress, Task, Timestamp};
use tasklog::{Error, NewTask, Store, TaskState};

const DAY_MS: i64 = 86_400_000;

fn name(v: Option<&str>) -> String {
    v.unwrap_or("(none)").to_string()
}

fn recount_key(tasks: &[Task], key: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        let v = match t.metadata.get(key) {
            None => "(none)".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        *m.entry(v).or_default() += 1;
    }
    m
}

#[test]
fn statistics_equal_a_recount_of_the_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut removed: HashSet<String> = HashSet::new();
    for i in 0..160 {
        let mut n = NewTask::new(format!("task {i}")).id(format!("t{i:03}"));
        if rng.u8(..4) > 0 {
            n = n.role(["dev", "qa", "ops"][rng.usize(..3)]);
        }
        if rng.bool() {
            n = n.provider(["anthropic", "local"][rng.usize(..2)]);
        }
        match rng.u8(..4) {
            0 => {}
            1 => n = n.meta("team", json!(["red", "blue"][rng.usize(..2)])),
            2 => n = n.meta("team", json!(rng.u8(..3))),
            _ => n = n.meta("team", json!(true)),
        }
        let id = store.submit(n).unwrap().id;
        match i % 8 {
            0 | 1 => {}
            2 => {
                store.start(&id).unwrap();
            }
            3 => {
                store.start(&id).unwrap();
                store.complete(&id, None).unwrap();
            }
            4 => {
                store.start(&id).unwrap();
                store.fail(&id, "e1").unwrap();
                if i % 16 == 12 {
                    store.discard(&id, Some("out of attempts")).unwrap();
                }
            }
            5 => {
                // failed twice, retried, completed: attempt 3, error count 2
                for _ in 0..2 {
                    store.start(&id).unwrap();
                    store.fail(&id, "e").unwrap();
                    store.retry(&id).unwrap();
                }
                store.start(&id).unwrap();
                store.complete(&id, Some(json!(1))).unwrap();
            }
            6 => {
                store.cancel(&id, Some("no")).unwrap();
            }
            _ => {
                store.start(&id).unwrap();
                store.progress(&id, 50, None, None).unwrap();
                store.complete(&id, None).unwrap();
                store.remove(&id, None).unwrap();
                removed.insert(id.clone());
            }
        }
    }
    let all = store.all_tasks().unwrap();
    let stats = store.stats(Some("team")).unwrap();

    assert_eq!(stats.total, all.len());
    assert_eq!(stats.total, 140);
    let mut by_state: BTreeMap<String, usize> = TaskState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for t in &all {
        *by_state.get_mut(t.state.as_str()).unwrap() += 1;
    }
    assert_eq!(stats.by_state, by_state);
    assert!(
        stats.by_state.values().all(|n| *n > 0),
        "all 6 states present"
    );
    let mut by_role = BTreeMap::new();
    let mut by_provider = BTreeMap::new();
    for t in &all {
        *by_role.entry(name(t.role.as_deref())).or_insert(0) += 1;
        *by_provider.entry(name(t.provider.as_deref())).or_insert(0) += 1;
    }
    assert_eq!(stats.by_role, by_role);
    assert_eq!(stats.by_provider, by_provider);
    let kc = stats.by_key.as_ref().expect("asked for a key");
    assert_eq!(kc.key, "team");
    assert_eq!(kc.counts, recount_key(&all, "team"));
    assert!(kc.counts.contains_key("true") && kc.counts.contains_key("red"));
    assert_eq!(
        stats.attempts,
        all.iter().map(|t| u64::from(t.attempt)).sum::<u64>()
    );
    assert!(stats.attempts > all.len() as u64, "retries raise attempts");
    assert_eq!(
        stats.successes,
        all.iter()
            .filter(|t| t.state == TaskState::Completed)
            .count()
    );
    assert_eq!(
        stats.failures,
        all.iter().map(|t| u64::from(t.error_count)).sum::<u64>()
    );
    assert_eq!(stats.removed, removed.len());
    let events: usize = all
        .iter()
        .map(|t| t.id.clone())
        .chain(removed.iter().cloned())
        .map(|id| store.history(&id).unwrap().len())
        .sum();
    assert_eq!(stats.events, events as u64);
    assert_eq!(stats.health.last_lsn, store.last_lsn());

    // Without a key there are no key counts.
    assert!(store.stats(None).unwrap().by_key.is_none());

    // JSON shape.
    let v = serde_json::to_value(&stats).unwrap();
    assert_eq!(v["total"], json!(140));
    let states = v["by_state"].as_object().expect("by_state object");
    assert_eq!(states.len(), TaskState::ALL.len());
    for s in TaskState::ALL {
        assert_eq!(states[s.as_str()], json!(by_state[s.as_str()]));
    }
}

#[test]
fn statistics_of_an_empty_store_list_every_state_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.stats(Some("k")).unwrap();
    assert_eq!(s.total, 0);
    assert_eq!(s.by_state.len(), 6);
    assert!(s.by_state.values().all(|n| *n == 0));
    assert_eq!(s.events, 0);
}

fn old_task(id: &str, state: TaskState, at: i64, completed: Option<i64>) -> Task {
    Task {
        id: id.into(),
        title: format!("old {id}"),
        description: String::new(),
        role: None,
        state,
        progress: Progress::default(),
        created_at: Timestamp(at - 1000),
        updated_at: Timestamp(at),
        started_at: None,
        completed_at: completed.map(Timestamp),
        provider: None,
        model: None,
        tags: vec![],
        metadata: BTreeMap::new(),
        result: None,
        last_error: None,
        error_count: 0,
        attempt: 1,
        priority: 0,
        checkpoint: None,
        outputs: vec![],
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
    }
}

fn import(store: &Store, t: Task) {
    store
        .apply(Mutation::new(t.id.clone(), Change::Import(Box::new(t))))
        .unwrap();
}

fn historical(store: &Store, id: &str, kind: EventKind, at: i64) {
    store
        .apply(Mutation::new(
            id,
            Change::Historical {
                kind: Box::new(kind),
                at: Timestamp(at),
            },
        ))
        .unwrap();
}

fn created(title: &str) -> EventKind {
    EventKind::Created {
        title: title.into(),
        description: String::new(),
        role: None,
        provider: None,
        model: None,
        tags: vec![],
        metadata: BTreeMap::new(),
        priority: 0,
        request_id: None,
    }
}

fn started() -> EventKind {
    EventKind::Started {
        owner: None,
        lease_expires_at: None,
        session: 0,
    }
}

/// Sets up old and recent tasks in every state; returns the ids a 1-day retention must remove.
fn setup_retention(store: &Store) -> Vec<String> {
    let now = Timestamp::now().0;
    let old = now - 10 * DAY_MS;
    let mut expect = Vec::new();
    // Imported, old, terminal: removed.
    for (id, st) in [
        ("imp-completed", TaskState::Completed),
        ("imp-failed", TaskState::Failed),
        ("imp-cancelled", TaskState::Cancelled),
    ] {
        import(store, old_task(id, st, old, Some(old)));
        expect.push(id.to_string());
    }
    // Terminal without completed_at: judged by updated_at.
    import(
        store,
        old_task("imp-no-completed-at", TaskState::Completed, old, None),
    );
    expect.push("imp-no-completed-at".into());
    // Just past the cutoff (1 day + 1 minute): removed. Just inside (1 day - 1 minute): kept.
    import(
        store,
        old_task(
            "imp-just-old",
            TaskState::Completed,
            now - DAY_MS - 60_000,
            Some(now - DAY_MS - 60_000),
        ),
    );
    expect.push("imp-just-old".into());
    import(
        store,
        old_task(
            "imp-just-young",
            TaskState::Completed,
            now - DAY_MS + 60_000,
            Some(now - DAY_MS + 60_000),
        ),
    );
    // Old but not terminal: never removed.
    import(
        store,
        old_task("imp-pending", TaskState::Pending, old - DAY_MS, None),
    );
    import(
        store,
        old_task("imp-running", TaskState::Running, old - DAY_MS, None),
    );
    // Historical events with old times.
    historical(store, "hist-completed", created("h1"), old);
    historical(store, "hist-completed", started(), old + 1);
    historical(
        store,
        "hist-completed",
        EventKind::Completed { result: None },
        old + 2,
    );
    expect.push("hist-completed".into());
    historical(store, "hist-cancelled", created("h2"), old);
    historical(
        store,
        "hist-cancelled",
        EventKind::Cancelled { reason: None },
        old + 1,
    );
    expect.push("hist-cancelled".into());
    historical(store, "hist-running", created("h3"), old);
    historical(store, "hist-running", started(), old + 1);
    historical(store, "hist-pending", created("h4"), old);
    // Failed long ago, then retried: pending now, kept.
    historical(store, "hist-retried", created("h5"), old);
    historical(store, "hist-retried", started(), old + 1);
    historical(
        store,
        "hist-retried",
        EventKind::Failed { error: "x".into() },
        old + 2,
    );
    historical(store, "hist-retried", EventKind::Retried, old + 3);
    // Recent tasks in every state: kept.
    for (i, st) in TaskState::ALL.iter().enumerate() {
        let id = format!("new-{i}");
        store.submit(NewTask::new("recent").id(&id)).unwrap();
        match st {
            TaskState::Pending => {}
            TaskState::Running => {
                store.start(&id).unwrap();
            }
            TaskState::Completed => {
                store.start(&id).unwrap();
                store.complete(&id, None).unwrap();
            }
            TaskState::Failed => {
                store.start(&id).unwrap();
                store.fail(&id, "f").unwrap();
            }
            _ => {
                store.cancel(&id, None).unwrap();
            }
        }
    }
    expect.sort();
    expect
}

fn assert_removed_trail(store: &Store, ids: &[String]) {
    for id in ids {
        assert!(
            matches!(store.get(id), Err(Error::NotFound { .. })),
            "{id} must be gone"
        );
        let h = store.history(id).unwrap();
        let last = h.last().unwrap();
        assert_eq!(last.kind, "removed", "{id}");
        assert_eq!(last.to, None);
        assert!(
            h.iter().filter(|e| e.kind == "removed").count() == 1,
            "{id}: one removal"
        );
        assert!(h.len() >= 2, "{id}: the earlier events are kept too");
    }
}

#[test]
fn retention_removes_only_old_terminal_tasks_and_keeps_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let expect = {
        let store = Store::open(dir.path()).unwrap();
        let expect = setup_retention(&store);
        let before: HashSet<String> = store
            .all_tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        let n = store.cleanup(Duration::from_secs(86_400)).unwrap();
        assert_eq!(n, expect.len());
        let after: HashSet<String> = store
            .all_tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        let mut gone: Vec<String> = before.difference(&after).cloned().collect();
        gone.sort();
        assert_eq!(gone, expect);
        for keep in [
            "imp-pending",
            "imp-running",
            "hist-running",
            "hist-pending",
            "hist-retried",
            "imp-just-young",
            "new-0",
            "new-1",
            "new-2",
            "new-3",
            "new-4",
        ] {
            assert!(after.contains(keep), "{keep} must be kept");
        }
        assert_removed_trail(&store, &expect);
        assert_eq!(store.stats(None).unwrap().removed, expect.len());
        // Nothing more to do.
        assert_eq!(store.cleanup(Duration::from_secs(86_400)).unwrap(), 0);
        store.snapshot().unwrap();
        assert_removed_trail(&store, &expect);
        // Pending and running tasks are never removed, however old and whatever the cutoff.
        // (The cutoff is exclusive: let the clock move past the last completion.)
        std::thread::sleep(Duration::from_millis(5));
        let n0 = store.cleanup(Duration::ZERO).unwrap();
        let left = store.all_tasks().unwrap();
        assert!(n0 >= 4, "the recent terminal tasks go with a zero cutoff");
        assert!(
            left.iter().all(|t| !t.state.is_terminal()),
            "{:?}",
            left.iter().map(|t| (&t.id, t.state)).collect::<Vec<_>>()
        );
        let mut kept: Vec<&str> = left.iter().map(|t| t.id.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            [
                "hist-pending",
                "hist-retried",
                "hist-running",
                "imp-pending",
                "imp-running",
                "new-0",
                "new-1"
            ]
        );
        store.close().unwrap();
        expect
    };
    let store = Store::open(dir.path()).unwrap();
    assert_removed_trail(&store, &expect);
    assert!(store.get("imp-running").is_ok());
}

#[test]
fn retention_removals_survive_reopen_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let expect = {
        let store = Store::open(dir.path()).unwrap();
        let expect = setup_retention(&store);
        assert_eq!(
            store.cleanup(Duration::from_secs(86_400)).unwrap(),
            expect.len()
        );
        store.close().unwrap();
        expect
    };
    let store = Store::open(dir.path()).unwrap();
    assert_removed_trail(&store, &expect);
    assert_eq!(store.stats(None).unwrap().removed, expect.len());
    assert_eq!(store.cleanup(Duration::from_secs(86_400)).unwrap(), 0);
}
