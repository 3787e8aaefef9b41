//! Runtime throughput (issue #9): tasks per second through the worker runtime with no-op
//! handlers, durable by default (`Durability::Sync`: every event acknowledged only after its
//! fdatasync), against the same lifecycle (submit, claim, complete) done directly on the bare
//! store, from one thread and from four, to show the runtime's overhead per task. Criterion
//! reports time per task (`Throughput::Elements(1)` per task). Figures go to
//! docs/benchmarks.md.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tasklog::runtime::{Kind, Runtime, RuntimeOptions, TaskContext};
use tasklog::store::StoreOptions;
use tasklog::{NewTask, Store, TaskState};

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g
}

fn through_runtime(c: &mut Criterion) {
    let mut g = group(c, "runtime_noop");
    for workers in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = Runtime::open(
            dir.path(),
            StoreOptions::new(),
            RuntimeOptions {
                workers,
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        rt.register(
            "noop",
            Kind::new(|_: &TaskContext, _: Value| Ok(Value::Null)),
        );
        rt.start().unwrap();
        g.bench_function(format!("{workers}_workers"), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    rt.submit("noop", json!(null), 5).unwrap();
                }
                assert!(rt.wait_idle(Duration::from_secs(600)));
                t.elapsed()
            })
        });
        let h = rt.health();
        assert_eq!(h.failed, 0);
        let w = rt.store().log_stats();
        eprintln!(
            "runtime_noop/{workers}_workers: {} tasks, {} appends, {} fsyncs ({:.2} records per fsync), fsync p50 {} µs",
            h.succeeded,
            w.appends,
            w.fsyncs,
            w.appends as f64 / w.fsyncs.max(1) as f64,
            w.fsync_latency.p50_us
        );
        rt.shutdown(Duration::from_secs(5)).unwrap();
    }
    g.finish();
}

fn lifecycle(store: &Store, owner: &str) {
    let id = store.submit(NewTask::new("noop")).unwrap().id;
    store.claim(&id, owner, 30_000).unwrap();
    let t = store.complete(&id, Some(Value::Null)).unwrap();
    assert_eq!(t.state, TaskState::Completed);
}

fn bare_store(c: &mut Criterion) {
    let mut g = group(c, "bare_store_lifecycle");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    g.bench_function("1_thread", |b| b.iter(|| lifecycle(&store, "w")));
    g.bench_function("4_threads", |b| {
        b.iter_custom(|iters| {
            let threads = 4;
            let start = Barrier::new(threads + 1);
            let t = std::thread::scope(|s| {
                for w in 0..threads {
                    let (store, start) = (&store, &start);
                    let n = iters / threads as u64 + u64::from((w as u64) < iters % threads as u64);
                    s.spawn(move || {
                        start.wait();
                        for _ in 0..n {
                            lifecycle(store, "w");
                        }
                    });
                }
                start.wait();
                Instant::now()
            });
            t.elapsed()
        })
    });
    g.finish();
    let w = store.log_stats();
    eprintln!(
        "bare_store_lifecycle: {} appends, {} fsyncs ({:.2} records per fsync), fsync p50 {} µs",
        w.appends,
        w.fsyncs,
        w.appends as f64 / w.fsyncs.max(1) as f64,
        w.fsync_latency.p50_us
    );
}

criterion_group!(benches, bare_store, through_runtime);
criterion_main!(benches);
