//! Store benchmarks: open and rebuild a store of 200,000 tasks / 1,000,000 events (tasks and
//! full history), without and with a snapshot; snapshot write and load (format v2: histories
//! are shared with the loaded file and checked when read, so `load_checked` adds the check of
//! every history entry that `tasklog verify` runs). Before the timed runs it prints the
//! resident memory of a fresh process after opening, by replay and from the snapshot.
//!
//! Run: `cargo bench --bench store`. The data set (the W4 workload of
//! shared/benchmark-workloads.md, written through the public API in buffered mode) is built
//! once per run in `target/bench-data/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tasklog::store::{Change, Mutation, Store, StoreOptions};
use tasklog::task::NewTask;
use tasklog::wal::Durability;

const TASKS: usize = 200_000;
const EVENTS: u64 = 1_000_000;

fn data_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The W4 data set: 5 events per task, interleaved in blocks of 1,000 running tasks,
/// 70 % completed, 20 % failed, 10 % cancelled.
pub fn build(dir: &Path) -> Duration {
    let store = StoreOptions::new()
        .durability(Durability::Buffered)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(dir)
        .unwrap();
    let started = Instant::now();
    let text = "x".repeat(60);
    for block in 0..TASKS / 1000 {
        let ids: Vec<String> = (0..1000)
            .map(|i| format!("task-{:07}", block * 1000 + i))
            .collect();
        for id in &ids {
            store
                .submit(
                    NewTask::new(format!("title {id} {text}"))
                        .id(id)
                        .role("builder"),
                )
                .unwrap();
        }
        for id in &ids {
            store
                .apply(Mutation::new(
                    id,
                    Change::Start {
                        owner: Some("worker-1".into()),
                        lease_ms: None,
                    },
                ))
                .unwrap();
        }
        for step in [40u8, 80] {
            for id in &ids {
                store
                    .progress(
                        id,
                        step,
                        Some("step"),
                        Some("working through the input files"),
                    )
                    .unwrap();
            }
        }
        for (i, id) in ids.iter().enumerate() {
            match i % 10 {
                0..=6 => store
                    .complete(id, Some(serde_json::json!({"ok": true})))
                    .map(drop)
                    .unwrap(),
                7 | 8 => store
                    .fail(id, "error: connection reset by peer")
                    .map(drop)
                    .unwrap(),
                _ => store
                    .cancel(id, Some("operator request"))
                    .map(drop)
                    .unwrap(),
            }
        }
    }
    store.close().unwrap();
    started.elapsed()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn open_ro(dir: &Path) -> Store {
    StoreOptions::new().read_only(true).open(dir).unwrap()
}

/// Set in the child process that opens a store and prints its resident memory.
const RSS_CHILD_ENV: &str = "TASKLOG_BENCH_RSS_OF";

fn main() {
    if let Some(dir) = std::env::var_os(RSS_CHILD_ENV) {
        let s = open_ro(Path::new(&dir));
        println!("{}", rss_bytes());
        drop(s);
        return;
    }
    let plain = data_dir("store-1m");
    let took = build(&plain);
    println!(
        "built {EVENTS} events in {:.2} s ({:.0} events/s through the store, buffered)",
        took.as_secs_f64(),
        EVENTS as f64 / took.as_secs_f64()
    );

    let snap = data_dir("store-1m-snap");
    build(&snap);
    let s = Store::open(&snap).unwrap();
    let info = s.snapshot().unwrap();
    s.close().unwrap();
    drop(s);
    println!("snapshot: {} bytes at LSN {}", info.bytes, info.lsn);

    // Measured in a fresh process each: in this one, memory freed by the build and the
    // snapshot stays with the allocator and would hide what an open takes.
    for (how, dir) in [("replay", &plain), ("snapshot", &snap)] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(RSS_CHILD_ENV, dir)
            .output()
            .unwrap();
        let used: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        println!(
            "memory after open ({how}, fresh process): {:.1} MiB resident = {} bytes/task, {} bytes/event",
            used as f64 / (1 << 20) as f64,
            used / TASKS as u64,
            used / EVENTS
        );
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let mut g = c.benchmark_group("open");
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("replay_1m_events_no_snapshot", |b| {
        b.iter(|| open_ro(&plain))
    });
    g.bench_function("replay_1m_events_from_snapshot", |b| {
        b.iter(|| open_ro(&snap))
    });
    g.finish();

    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Elements(TASKS as u64));
    let s = Store::open(&snap).unwrap();
    g.bench_function("write_200k_tasks", |b| b.iter(|| s.snapshot().unwrap()));
    let storage = tasklog::wal::StdStorage;
    g.bench_function("load_200k_tasks", |b| {
        b.iter(|| tasklog::store::snapshot::read(&storage, &info.path).unwrap())
    });
    g.bench_function("load_checked_200k_tasks", |b| {
        b.iter(|| tasklog::store::snapshot::read_checked(&storage, &info.path).unwrap())
    });
    g.finish();
    c.final_summary();
}
