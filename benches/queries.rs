//! Query-side costs on a store of 200,000 tasks (issue #4): get by id (copied and shared), the
//! first 50 matches of one filter and of several, newest first in one state, of a text search
//! and of a filter nothing matches (the worst case of the creation-ordered index: it walks every
//! task), a full filtered count, a count by state, statistics, and retention of half the tasks. Targets: get < 1 µs; filtered first-50 < 1 ms; full filtered count
//! < 10 ms; statistics < 10 ms. The store is built once by importing tasks in large batches
//! with `Durability::Buffered` (half of them finished ten days ago; batches of 1,000, since
//! the store's batch path is quadratic in the batch size). Retention changes the store, so it
//! is measured once on a fresh copy and printed rather than run by criterion (set
//! `TASKLOG_BENCH_SKIP_CLEANUP=1` to skip it).
//! Figures go to docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tasklog::store::{Change, Filter, Mutation, Query, StoreOptions};
use tasklog::task::{Progress, Task, Timestamp};
use tasklog::wal::Durability;
use tasklog::{Store, TaskState};

const N: usize = 200_000;
const DAY_MS: i64 = 86_400_000;
const ROLES: [&str; 4] = ["dev", "qa", "ops", "research"];
const PROVIDERS: [&str; 3] = ["anthropic", "local", "cloud"];
const WORDS: [&str; 8] = [
    "build", "Review", "deploy", "refactor", "test", "migrate", "Document", "profile",
];

fn task(i: usize, rng: &mut fastrand::Rng, now: i64) -> Task {
    // Even tasks finished ten days ago; odd ones are recent and in any state.
    let old = i.is_multiple_of(2);
    let state = if old {
        [
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Cancelled,
        ][rng.usize(..3)]
    } else {
        TaskState::ALL[rng.usize(..5)]
    };
    let at = if old {
        now - 10 * DAY_MS + i as i64
    } else {
        now - rng.i64(0..DAY_MS / 2)
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("team".to_string(), json!(["red", "blue", "green"][i % 3]));
    metadata.insert("cost".to_string(), json!(i % 100));
    Task {
        id: format!("task-{i:07}"),
        title: format!(
            "{} {} {i}",
            WORDS[rng.usize(..WORDS.len())],
            WORDS[rng.usize(..WORDS.len())]
        ),
        description: format!("generated task number {i}"),
        role: Some(ROLES[i % ROLES.len()].to_string()),
        state,
        progress: Progress::default(),
        created_at: Timestamp(at - 1000),
        updated_at: Timestamp(at),
        started_at: None,
        completed_at: state.is_terminal().then_some(Timestamp(at)),
        provider: Some(PROVIDERS[rng.usize(..3)].to_string()),
        model: Some(["big", "small"][rng.usize(..2)].to_string()),
        tags: ["a", "b", "c", "d"]
            .iter()
            .filter(|_| rng.bool())
            .map(|t| t.to_string())
            .collect(),
        metadata,
        result: None,
        last_error: None,
        error_count: 0,
        attempt: 1,
        priority: rng.u8(..=10),
        checkpoint: None,
        outputs: vec![],
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
    }
}

fn build(dir: &std::path::Path) -> Store {
    let store = StoreOptions::new()
        .durability(Durability::Buffered)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(dir)
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(4);
    let now = Timestamp::now().0;
    let started = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1_000) {
        let muts = chunk
            .iter()
            .map(|&i| {
                let t = task(i, &mut rng, now);
                Mutation::new(t.id.clone(), Change::Import(Box::new(t)))
            })
            .collect();
        store.batch(muts).unwrap();
    }
    eprintln!(
        "built a store of {N} tasks in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    store
}

fn first50(filter: Filter) -> Query {
    Query {
        filter,
        limit: Some(50),
        ..Query::default()
    }
}

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = build(dir.path());
    let mut g = c.benchmark_group("queries_200k");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let ids: Vec<String> = (0..1024)
        .map(|i| format!("task-{:07}", (i * 7919) % N))
        .collect();
    let mut k = 0;
    g.bench_function("get_by_id", |b| {
        b.iter(|| {
            k = (k + 1) % ids.len();
            black_box(store.get(&ids[k]).unwrap());
        })
    });

    let mut k = 0;
    g.bench_function("get_shared_by_id", |b| {
        b.iter(|| {
            k = (k + 1) % ids.len();
            black_box(store.get_shared(&ids[k]).unwrap());
        })
    });

    let one = first50(Filter {
        role: Some("qa".into()),
        ..Filter::default()
    });
    assert_eq!(store.list(&one).unwrap().tasks.len(), 50);
    g.bench_function("list_one_filter_first50", |b| {
        b.iter(|| black_box(store.list(&one).unwrap()))
    });

    let several = first50(Filter {
        states: vec![TaskState::Pending, TaskState::Running],
        role: Some("qa".into()),
        provider: Some("anthropic".into()),
        tags: vec!["b".into()],
        metadata: vec![("team".into(), json!("red"))],
        ..Filter::default()
    });
    assert_eq!(store.list(&several).unwrap().tasks.len(), 50);
    g.bench_function("list_several_filters_first50", |b| {
        b.iter(|| black_box(store.list(&several).unwrap()))
    });

    let newest = Query {
        descending: true,
        ..first50(Filter {
            states: vec![TaskState::Completed],
            ..Filter::default()
        })
    };
    assert_eq!(store.list(&newest).unwrap().tasks.len(), 50);
    g.bench_function("list_state_newest_first50", |b| {
        b.iter(|| black_box(store.list(&newest).unwrap()))
    });

    let none = first50(Filter {
        metadata: vec![("team".into(), json!("purple"))],
        ..Filter::default()
    });
    assert!(store.list(&none).unwrap().tasks.is_empty());
    g.bench_function("list_no_match_first50", |b| {
        b.iter(|| black_box(store.list(&none).unwrap()))
    });

    let text = first50(Filter {
        text: Some("REVIEW".into()),
        ..Filter::default()
    });
    assert_eq!(store.list(&text).unwrap().tasks.len(), 50);
    g.bench_function("text_search_first50", |b| {
        b.iter(|| black_box(store.list(&text).unwrap()))
    });

    let count = Filter {
        states: vec![TaskState::Completed],
        provider: Some("local".into()),
        ..Filter::default()
    };
    assert!(store.count(&count).unwrap() > 10_000);
    g.bench_function("count_filtered_full", |b| {
        b.iter(|| black_box(store.count(&count).unwrap()))
    });

    let pending = Filter {
        states: vec![TaskState::Pending],
        ..Filter::default()
    };
    assert!(store.count(&pending).unwrap() > 10_000);
    g.bench_function("count_state_only", |b| {
        b.iter(|| black_box(store.count(&pending).unwrap()))
    });

    g.bench_function("stats", |b| {
        b.iter(|| black_box(store.stats(None).unwrap()))
    });
    g.bench_function("stats_by_metadata_key", |b| {
        b.iter(|| black_box(store.stats(Some("team")).unwrap()))
    });
    g.finish();
    drop(store);

    // Retention of half the tasks, on a fresh store.
    if std::env::var_os("TASKLOG_BENCH_SKIP_CLEANUP").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = build(dir.path());
    let t = Instant::now();
    let removed = store.cleanup(Duration::from_secs(86_400)).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(removed, N / 2);
    eprintln!(
        "queries_200k/cleanup_half: {removed} of {N} tasks removed in {:.1} ms (one run)",
        elapsed.as_secs_f64() * 1e3
    );
}

criterion_group!(benches, queries);
criterion_main!(benches);
