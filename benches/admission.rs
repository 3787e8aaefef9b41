//! What issue #19's admission rules and unique keys cost on the commit path. Every start is
//! checked against its kind's rules under the state lock, and every submit with a unique key
//! looks the key up, so both add work to each commit. To see that work rather than the disk's,
//! the store is in `Durability::Buffered` (no fsync per commit; a durable commit adds one
//! fsync, ~100 µs to ms, to every figure here).
//!
//! Cases, each with 1,000 tasks of the kind already running (a limit counts the running tasks
//! of its kind, so it must not be measured on an empty store):
//! - `start/*`: one `Store::start` per task (`apply` of one mutation): no rules for the kind;
//!   `max_running` (never reached); `max_running` + a per-key limit + a rate limit (never
//!   reached). The tasks were submitted before the timed loop and are completed after it.
//! - `start_batch100/*`: the same starts, 100 per `Store::batch`.
//! - `submit/*`: one submit per task without and with a `runtime.unique_key` (distinct keys,
//!   so every lookup misses and the task is created).
//!
//! Run: `cargo bench --bench admission`. Figures go to docs/benchmarks.md.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tasklog::store::{Change, KindSettings, Mutation, Store, StoreOptions};
use tasklog::task::NewTask;
use tasklog::wal::Durability;

const KIND: &str = "bench";
const RUNNING: usize = 1_000;
const NO_LIMIT: u32 = 1_000_000_000;

fn open(dir: &std::path::Path) -> Store {
    StoreOptions::new()
        .durability(Durability::Buffered)
        .open(dir)
        .unwrap()
}

fn new_task(n: u64) -> NewTask {
    NewTask::new(format!("task {n}"))
        .meta("runtime.kind", json!(KIND))
        .meta("customer", json!(format!("c{}", n % 50)))
}

/// A store with `RUNNING` tasks of the kind running, and the kind's rules set to `rules`.
fn store_with(dir: &std::path::Path, rules: Option<KindSettings>) -> Store {
    let store = open(dir);
    for n in 0..RUNNING as u64 {
        let id = store.submit(new_task(n)).unwrap().id;
        store.start(&id).unwrap();
    }
    if let Some(r) = rules {
        store.set_kind_settings(KIND, r).unwrap();
    }
    store
}

fn rules() -> [(&'static str, Option<KindSettings>); 3] {
    [
        ("no_rules", None),
        (
            "max_running",
            Some(KindSettings::new().max_running(NO_LIMIT)),
        ),
        (
            "max_running+per_key+rate",
            Some(
                KindSettings::new()
                    .max_running(NO_LIMIT)
                    .max_running_per_key("customer", NO_LIMIT)
                    .rate(100_000, 1),
            ),
        ),
    ]
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    g
}

/// Submits `n` pending tasks (untimed), times `start_all` on their ids, then completes them
/// (untimed) so that the running count stays at `RUNNING` from one sample to the next.
fn timed_starts(store: &Store, n: u64, start_all: impl Fn(&Store, &[String])) -> Duration {
    let ids: Vec<String> = (0..n)
        .map(|i| store.submit(new_task(i)).unwrap().id)
        .collect();
    let began = Instant::now();
    start_all(store, &ids);
    let took = began.elapsed();
    for chunk in ids.chunks(1_000) {
        let done = chunk
            .iter()
            .map(|id| Mutation::new(id.clone(), Change::Complete { result: None }))
            .collect();
        store.batch(done).unwrap();
    }
    took
}

fn starts(c: &mut Criterion) {
    let mut g = group(c, "start");
    for (name, r) in rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), r);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                timed_starts(&store, n, |s, ids| {
                    for id in ids {
                        s.start(id).unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

fn batched_starts(c: &mut Criterion) {
    let mut g = group(c, "start_batch100");
    for (name, r) in rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), r);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                timed_starts(&store, n, |s, ids| {
                    for chunk in ids.chunks(100) {
                        let m = chunk
                            .iter()
                            .map(|id| {
                                Mutation::new(
                                    id.clone(),
                                    Change::Start {
                                        owner: None,
                                        lease_ms: None,
                                    },
                                )
                            })
                            .collect();
                        s.batch(m).unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

fn submits(c: &mut Criterion) {
    let mut g = group(c, "submit");
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), None);
    let mut next = 0u64;
    g.bench_function("plain", |b| {
        b.iter(|| {
            next += 1;
            store.submit(new_task(next)).unwrap()
        })
    });
    g.bench_function("unique_key", |b| {
        b.iter(|| {
            next += 1;
            store
                .submit(new_task(next).meta("runtime.unique_key", json!(format!("u{next}"))))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, starts, batched_starts, submits);
criterion_main!(benches);
