//! Export and import throughput: 200,000 tasks with 5 history events each (1,000,000 events).
//!
//! `export/json` streams the whole store to a sink; `import/json` imports the resulting
//! document into a fresh, empty store (default durability: the batch is fsynced) — the store
//! is created outside the timed part. Both report bytes of the document per second, and the
//! tasks-per-second figure is `200,000 / time`. Targets: export > 100 MB/s, import > 50 MB/s.
//! Run with `cargo bench --bench export`.

#[path = "../tests/export_support.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tasklog::export::{ExportOptions, ImportOptions, export_json, import_json_bytes};
use tasklog::wal::Durability;
use tasklog::{Store, StoreOptions};

const TASKS: usize = 200_000;
const EVENTS_PER_TASK: usize = 5;

fn bench(c: &mut Criterion) {
    let source_dir = tempfile::tempdir().expect("temp dir");
    let options = StoreOptions::new().durability(Durability::Buffered);
    let source = Store::open_with(source_dir.path(), options).expect("open the source store");
    support::bulk_store(&source, TASKS, EVENTS_PER_TASK);
    let doc = support::export_string(&source, true);
    let bytes = doc.len() as u64;
    eprintln!(
        "document: {TASKS} tasks, {} events, {:.1} MB",
        TASKS * EVENTS_PER_TASK,
        bytes as f64 / 1e6
    );

    let mut group = c.benchmark_group("export");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("json", |b| {
        b.iter(|| {
            export_json(&source, &ExportOptions::new(), std::io::sink(), |_, _| {}).expect("export")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("json", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = Store::open(dir.path()).expect("open an empty store");
                let start = Instant::now();
                let report = import_json_bytes(
                    &store,
                    doc.as_bytes(),
                    "bench",
                    &ImportOptions::new(),
                    |_, _| {},
                )
                .expect("import");
                total += start.elapsed();
                assert_eq!(report.imported as usize, TASKS);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
