//! Goal: prove that the counters and creation-ordered indexes the store keeps as events apply
//! (counts by state, role and provider, sums of attempts and failures, removed ids, history
//! events; per-state `(created, id)` sets) always equal a recount from scratch, and that the
//! listings, counts and statistics built on them answer exactly as a brute-force pass would.
//!
//! Method: proptest drives a store through random operations — submits and imports (with chosen
//! creation times, roles and providers, onto new, live and removed ids), updates that rename a
//! role or provider, every state move, removals, lease expiry, retention, batches, snapshots and
//! reopens (replaying the log, or loading a snapshot) — and after every step calls the hidden
//! `Store::check_indexes` (which recounts everything from the tasks) and compares `stats`,
//! state-only `count`s and creation-ordered listings with a recount over `all_tasks()`. A
//! second test compares pages (tasks and `next_cursor`) with a reference for cursors that do
//! and do not name a task, creation ranges, offsets and limits, both directions.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tasklog::store::{Change, Cursor, Filter, Mutation, Query, SortKey, StoreOptions};
use tasklog::task::{Progress, Task, TaskUpdate, Timestamp};
use tasklog::{NewTask, Store, TaskState};

const ROLES: [Option<&str>; 3] = [None, Some("dev"), Some("qa")];
const PROVIDERS: [Option<&str>; 3] = [None, Some("(none)"), Some("local")];

#[derive(Clone, Debug)]
enum Op {
    Submit {
        id: u8,
        role: u8,
        provider: u8,
    },
    Import {
        id: u8,
        state: u8,
        role: u8,
        provider: u8,
        created: u8,
        attempt: u8,
        errors: u8,
    },
    Rename {
        id: u8,
        role: Option<u8>,
        provider: Option<u8>,
    },
    Start {
        id: u8,
        lease: bool,
    },
    Complete(u8),
    Fail(u8),
    Cancel(u8),
    Requeue(u8),
    Retry(u8),
    Progress(u8),
    Remove(u8),
    ExpireLeases,
    Retention,
    Batch(Vec<Op>),
    Snapshot,
    Reopen,
}

fn single_op() -> impl Strategy<Value = Op> {
    let id = 0u8..8;
    let name = 0u8..3;
    prop_oneof![
        4 => (id.clone(), name.clone(), name.clone())
            .prop_map(|(id, role, provider)| Op::Submit { id, role, provider }),
        2 => (id.clone(), 0u8..5, name.clone(), name.clone(), 0u8..4, 1u8..4, 0u8..3).prop_map(
            |(id, state, role, provider, created, attempt, errors)| Op::Import {
                id, state, role, provider, created, attempt, errors
            }
        ),
        2 => (id.clone(), proptest::option::of(name.clone()), proptest::option::of(name))
            .prop_map(|(id, role, provider)| Op::Rename { id, role, provider }),
        4 => (id.clone(), any::<bool>()).prop_map(|(id, lease)| Op::Start { id, lease }),
        2 => id.clone().prop_map(Op::Complete),
        2 => id.clone().prop_map(Op::Fail),
        1 => id.clone().prop_map(Op::Cancel),
        1 => id.clone().prop_map(Op::Requeue),
        2 => id.clone().prop_map(Op::Retry),
        1 => id.clone().prop_map(Op::Progress),
        1 => id.prop_map(Op::Remove),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => single_op(),
        2 => proptest::collection::vec(single_op(), 1..5).prop_map(Op::Batch),
        1 => Just(Op::ExpireLeases),
        1 => Just(Op::Retention),
        1 => Just(Op::Snapshot),
        2 => Just(Op::Reopen),
    ]
}

fn tid(i: u8) -> String {
    format!("t{i}")
}

fn name(names: &[Option<&str>; 3], i: u8) -> Option<String> {
    names[usize::from(i) % 3].map(str::to_string)
}

fn imported(
    id: u8,
    state: u8,
    role: u8,
    provider: u8,
    created: u8,
    attempt: u8,
    errors: u8,
) -> Task {
    let state = TaskState::ALL[usize::from(state) % 5];
    // A few shared creation times, so that the id breaks ties.
    let created = Timestamp(1_700_000_000_000 + i64::from(created) * 1000);
    Task {
        id: tid(id),
        title: format!("imported {id}"),
        description: String::new(),
        role: name(&ROLES, role),
        state,
        progress: Progress::default(),
        created_at: created,
        updated_at: created,
        started_at: None,
        completed_at: state.is_terminal().then_some(created),
        provider: name(&PROVIDERS, provider),
        model: None,
        tags: vec![],
        metadata: BTreeMap::new(),
        result: None,
        last_error: None,
        error_count: u32::from(errors),
        attempt: u32::from(attempt),
        priority: 0,
        checkpoint: None,
        outputs: vec![],
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
    }
}

fn mutation(op: &Op) -> Option<Mutation> {
    let m = |id: &u8, change| Mutation::new(tid(*id), change);
    Some(match op {
        Op::Submit { id, role, provider } => {
            let mut n = NewTask::new(format!("task {id}")).id(tid(*id));
            if let Some(r) = name(&ROLES, *role) {
                n = n.role(r);
            }
            if let Some(p) = name(&PROVIDERS, *provider) {
                n = n.provider(p);
            }
            Mutation::submit(n)
        }
        Op::Import {
            id,
            state,
            role,
            provider,
            created,
            attempt,
            errors,
        } => m(
            id,
            Change::Import(Box::new(imported(
                *id, *state, *role, *provider, *created, *attempt, *errors,
            ))),
        ),
        Op::Rename { id, role, provider } => m(
            id,
            Change::Update(TaskUpdate {
                role: role.and_then(|r| name(&ROLES, r)),
                provider: provider.and_then(|p| name(&PROVIDERS, p)),
                ..TaskUpdate::default()
            }),
        ),
        Op::Start { id, lease } => m(
            id,
            Change::Start {
                owner: lease.then(|| "worker".to_string()),
                lease_ms: lease.then_some(1),
            },
        ),
        Op::Complete(id) => m(id, Change::Complete { result: None }),
        Op::Fail(id) => m(
            id,
            Change::Fail {
                error: "boom".into(),
            },
        ),
        Op::Cancel(id) => m(id, Change::Cancel { reason: None }),
        Op::Requeue(id) => m(id, Change::Requeue { reason: None }),
        Op::Retry(id) => m(id, Change::Retry),
        Op::Progress(id) => m(
            id,
            Change::Progress {
                percent: 50,
                step: None,
                message: None,
            },
        ),
        Op::Remove(id) => m(id, Change::Remove { reason: None }),
        _ => return None,
    })
}

fn options() -> StoreOptions {
    StoreOptions::new()
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .segment_bytes_max(4096)
}

fn run(store: &mut Store, dir: &std::path::Path, op: &Op) {
    match op {
        Op::Batch(ops) => {
            // Rejected batches write nothing; either way the indexes must follow.
            let _ = store.batch(ops.iter().filter_map(mutation).collect());
        }
        Op::ExpireLeases => {
            std::thread::sleep(Duration::from_millis(2));
            store.recover_expired_leases().unwrap();
        }
        Op::Retention => {
            std::thread::sleep(Duration::from_millis(1));
            store.cleanup(Duration::ZERO).unwrap();
        }
        Op::Snapshot => {
            store.snapshot().unwrap();
        }
        Op::Reopen => {
            store.close().unwrap();
            *store = options().open(dir).unwrap();
        }
        single => {
            let _ = store.apply(mutation(single).expect("a single operation"));
        }
    }
}

/// Checks the kept counters and indexes against recounts, and the answers built on them
/// against brute force over every task.
fn check(store: &Store, step: &str) {
    if let Err(e) = store.check_indexes() {
        panic!("{step}: {e}");
    }
    let all = store.all_tasks().unwrap();
    let stats = store.stats(None).unwrap();
    let text = |v: Option<&str>| v.unwrap_or("(none)").to_string();
    let mut by_state: BTreeMap<String, usize> = TaskState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let (mut by_role, mut by_provider) = (BTreeMap::new(), BTreeMap::new());
    for t in &all {
        *by_state.get_mut(t.state.as_str()).unwrap() += 1;
        *by_role.entry(text(t.role.as_deref())).or_insert(0) += 1;
        *by_provider.entry(text(t.provider.as_deref())).or_insert(0) += 1;
    }
    assert_eq!(stats.total, all.len(), "{step}: total");
    assert_eq!(stats.by_state, by_state, "{step}: by state");
    assert_eq!(stats.by_role, by_role, "{step}: by role");
    assert_eq!(stats.by_provider, by_provider, "{step}: by provider");
    let attempts: u64 = all.iter().map(|t| u64::from(t.attempt)).sum();
    let failures: u64 = all.iter().map(|t| u64::from(t.error_count)).sum();
    let successes = all
        .iter()
        .filter(|t| t.state == TaskState::Completed)
        .count();
    assert_eq!(stats.attempts, attempts, "{step}: attempts");
    assert_eq!(stats.failures, failures, "{step}: failures");
    assert_eq!(stats.successes, successes, "{step}: successes");
    let filters = [
        (vec![], None, None),
        (vec![TaskState::Pending], None, None),
        (
            vec![TaskState::Running, TaskState::Failed, TaskState::Running],
            None,
            None,
        ),
        (vec![], Some("qa"), None),
        (vec![TaskState::Completed], None, Some("local")),
        (vec![], Some("dev"), Some("(none)")),
    ];
    for (states, role, provider) in filters {
        let f = Filter {
            states: states.clone(),
            role: role.map(str::to_string),
            provider: provider.map(str::to_string),
            ..Filter::default()
        };
        let mut want: Vec<&Task> = all
            .iter()
            .filter(|t| states.is_empty() || states.contains(&t.state))
            .filter(|t| role.is_none_or(|r| t.role.as_deref() == Some(r)))
            .filter(|t| provider.is_none_or(|p| t.provider.as_deref() == Some(p)))
            .collect();
        assert_eq!(store.count(&f).unwrap(), want.len(), "{step}: count {f:?}");
        want.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        for descending in [false, true] {
            let q = Query {
                filter: f.clone(),
                descending,
                ..Query::default()
            };
            let got: Vec<String> = store
                .list(&q)
                .unwrap()
                .tasks
                .into_iter()
                .map(|t| t.id)
                .collect();
            let mut expect: Vec<String> = want.iter().map(|t| t.id.clone()).collect();
            if descending {
                expect.reverse();
            }
            assert_eq!(got, expect, "{step}: list {f:?} descending={descending}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn indexes_equal_a_recount_after_any_operations(ops in proptest::collection::vec(any_op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = options().open(dir.path()).unwrap();
        for (i, op) in ops.iter().enumerate() {
            run(&mut store, dir.path(), op);
            check(&store, &format!("step {i} ({op:?})"));
        }
        // Once more from the log alone and from a snapshot.
        run(&mut store, dir.path(), &Op::Reopen);
        check(&store, "reopened");
        run(&mut store, dir.path(), &Op::Snapshot);
        run(&mut store, dir.path(), &Op::Reopen);
        check(&store, "reopened from a snapshot");
    }
}

// ----- pages against a reference -------------------------------------------------------------

/// The page the documented semantics give: the matches strictly after the cursor in the
/// listing's order, `offset` skipped, at most `limit` kept, and a cursor at the last task
/// returned when `offset + limit` matches existed.
fn reference_page(all: &[Task], q: &Query) -> (Vec<String>, Option<Cursor>) {
    let key = |t: &Task| (t.created_at.0, t.id.clone());
    let mut hits: Vec<&Task> = all.iter().filter(|t| q.filter.matches(t)).collect();
    hits.sort_by_key(|t| key(t));
    if q.descending {
        hits.reverse();
    }
    if let Some(c) = &q.after {
        let c = (c.at_ms, c.id.clone());
        hits.retain(|t| if q.descending { key(t) < c } else { key(t) > c });
    }
    let wanted = q.limit.map(|l| l + q.offset);
    let more = wanted.is_some_and(|n| n <= hits.len());
    let ids: Vec<String> = hits
        .iter()
        .take(wanted.unwrap_or(usize::MAX))
        .skip(q.offset)
        .map(|t| t.id.clone())
        .collect();
    let cursor = if more {
        ids.last().map(|id| {
            let t = all.iter().find(|t| &t.id == id).unwrap();
            Cursor {
                at_ms: t.created_at.0,
                id: id.clone(),
            }
        })
    } else {
        None
    };
    (ids, cursor)
}

#[test]
fn pages_by_creation_time_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut muts = Vec::new();
    for i in 0..400u32 {
        let mut t = imported(0, rng.u8(..5), rng.u8(..3), rng.u8(..3), rng.u8(..20), 1, 0);
        t.id = format!("p{:03}", rng.u32(..1000) * 1000 + i);
        muts.push(Mutation::new(t.id.clone(), Change::Import(Box::new(t))));
    }
    store.batch(muts).unwrap();
    let all = store.all_tasks().unwrap();
    let base = 1_700_000_000_000i64;
    let mut checked_cursor = 0;
    for case in 0..2000 {
        let states: Vec<TaskState> = TaskState::ALL
            .into_iter()
            .filter(|_| rng.u8(..3) == 0)
            .collect();
        let time = |rng: &mut fastrand::Rng| Timestamp(base + rng.i64(-2..22) * 1000);
        let filter = Filter {
            states,
            role: [None, None, Some("qa"), Some("dev"), Some("nobody")][rng.usize(..5)]
                .map(str::to_string),
            provider: [None, None, Some("local"), Some("(none)")][rng.usize(..4)]
                .map(str::to_string),
            created_since: (rng.u8(..3) == 0).then(|| time(&mut rng)),
            created_until: (rng.u8(..3) == 0).then(|| time(&mut rng)),
            ..Filter::default()
        };
        let after = match rng.u8(..3) {
            0 => None,
            // A task's own position.
            1 => {
                let t = &all[rng.usize(..all.len())];
                Some(Cursor {
                    at_ms: t.created_at.0,
                    id: t.id.clone(),
                })
            }
            // Somewhere between tasks, or at a time's very start.
            _ => Some(Cursor {
                at_ms: base + rng.i64(-2..22) * 1000 + rng.i64(-1..=1),
                id: if rng.bool() {
                    String::new()
                } else {
                    format!("p{}", rng.u32(..1_000_000))
                },
            }),
        };
        let q = Query {
            filter,
            sort: SortKey::Created,
            descending: rng.bool(),
            limit: (rng.u8(..4) != 0).then(|| rng.usize(..60)),
            offset: if rng.bool() { 0 } else { rng.usize(..80) },
            after,
        };
        let page = store.list(&q).unwrap();
        let got: Vec<String> = page.tasks.iter().map(|t| t.id.clone()).collect();
        let (want, cursor) = reference_page(&all, &q);
        assert_eq!(got, want, "case {case}: {q:?}");
        assert_eq!(page.next_cursor, cursor, "case {case}: cursor of {q:?}");
        if q.after.is_some() && !want.is_empty() {
            checked_cursor += 1;
        }
    }
    assert!(
        checked_cursor > 200,
        "only {checked_cursor} non-empty pages after a cursor"
    );
}
