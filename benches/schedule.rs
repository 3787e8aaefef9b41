//! Schedules (issue #18): what one `Scheduler::tick` costs when nothing is due (the steady
//! state: 100 schedules over a store of 10,000 other pending tasks, so the cost of finding the
//! runs among them is visible), and per run created when every schedule fires (100 interval schedules, the clock
//! moved one interval per iteration; each schedule's firing is one durable batch). Durable by
//! default (every batch acknowledged after its fdatasync). Figures go to docs/benchmarks.md.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tasklog::NewTask;
use tasklog::runtime::schedule::{self, CatchUp, ManualClock, Overlap, ScheduleSpec, Scheduler};
use tasklog::store::{Mutation, StoreOptions};
use tasklog::task::Timestamp;

const SCHEDULES: usize = 100;
const OTHER_TASKS: usize = 10_000;

fn spec(i: usize, every_ms: u64) -> ScheduleSpec {
    ScheduleSpec {
        name: format!("s{i}"),
        every_ms: Some(every_ms),
        overlap: Overlap::Allow,
        catch_up: CatchUp::Latest,
        ..ScheduleSpec::default()
    }
}

fn ticks(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule_tick");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let t0 = Timestamp::parse("2026-06-01T00:00:00Z").unwrap();

    // Nothing due: one tick reads the runs and the records, writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().open(dir.path()).unwrap();
    let others: Vec<Mutation> = (0..OTHER_TASKS)
        .map(|i| Mutation::submit(NewTask::new(format!("task {i}"))))
        .collect();
    store.write_batch(others).unwrap();
    for i in 0..SCHEDULES {
        schedule::add(&store, &spec(i, 3_600_000), t0).unwrap();
    }
    let clock = ManualClock::at(t0);
    let s = Scheduler::new(store.clone(), Arc::new(clock.clone()));
    g.throughput(Throughput::Elements(1));
    g.bench_function("idle_100_schedules_10k_tasks", |b| {
        b.iter(|| assert!(s.tick().unwrap().fired.is_empty()))
    });
    drop(s);
    store.close().unwrap();

    // Every schedule due at each tick: 100 runs per tick, one batch per schedule.
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().open(dir.path()).unwrap();
    for i in 0..SCHEDULES {
        schedule::add(&store, &spec(i, 60_000), t0).unwrap();
    }
    let clock = ManualClock::at(t0);
    let s = Scheduler::new(store.clone(), Arc::new(clock.clone()));
    g.throughput(Throughput::Elements(SCHEDULES as u64));
    g.bench_function("fire_100_schedules", |b| {
        b.iter(|| {
            clock.advance_ms(60_000);
            assert_eq!(s.tick().unwrap().fired.len(), SCHEDULES);
        })
    });
    store.close().unwrap();
    g.finish();
}

criterion_group!(benches, ticks);
criterion_main!(benches);
