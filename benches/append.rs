//! Log-layer throughput: durable appends of 128-byte records with 1/4/16/64 concurrent writers,
//! buffered appends, replay of 1,000,000 records (map versus copy), open plus replay, and in the
//! same run the raw limit of the disk: `write(128 B) + fdatasync` on a preallocated and on a growing file.
//! Figures go to docs/benchmarks.md. For the single-writer ratio on a noisy shared disk, also
//! run `cargo run --release --example wal_vs_raw_fsync`, which interleaves the two op by op. Groups are short (sample_size 10) so the run takes < 3 min.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tasklog::wal::{Durability, Wal, WalOptions};

const RECORD: [u8; 128] = [0x5a; 128];

fn short<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    g
}

fn raw_fdatasync(c: &mut Criterion) {
    raw_fdatasync_group(c, "raw_write128_fdatasync");
}

/// The raw baseline again at the end of the run: this disk is shared and its fsync latency
/// drifts, so the report uses the baseline measured nearest in time.
fn raw_fdatasync_end(c: &mut Criterion) {
    raw_fdatasync_group(c, "raw_write128_fdatasync_end");
}

/// Linux only: the raw baseline preallocates with `fallocate`.
#[cfg(not(target_os = "linux"))]
fn raw_fdatasync_group(_c: &mut Criterion, _name: &str) {}

#[cfg(target_os = "linux")]
fn raw_fdatasync_group(c: &mut Criterion, name: &str) {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;
    let mut g = short(c, name);
    for prealloc in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        if prealloc {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, 256 << 20)
                .unwrap();
            file.sync_all().unwrap();
        }
        let mut offset = 0u64;
        let name = if prealloc { "preallocated" } else { "growing" };
        g.bench_function(name, |b| {
            b.iter(|| {
                file.write_all_at(&RECORD, offset).unwrap();
                file.sync_data().unwrap();
                offset = (offset + 128) % (255 << 20);
            })
        });
    }
    g.finish();
}

/// `threads` writers append `iters` records in total; the clock runs from a barrier to the end.
fn run_writers(wal: &Wal, threads: u64, iters: u64) -> Duration {
    let per = iters.div_ceil(threads);
    let barrier = Barrier::new(threads as usize + 1);
    let mut start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..per {
                    wal.append(&RECORD).unwrap();
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
    start.elapsed()
}

fn durable(c: &mut Criterion) {
    let mut g = short(c, "wal_durable_append");
    for (threads, prealloc) in [
        (1, true),
        (1, false),
        (4, true),
        (16, true),
        (32, true),
        (64, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default().preallocate(prealloc)).unwrap();
        let id = BenchmarkId::new(
            if prealloc { "preallocated" } else { "growing" },
            format!("{threads}_writers"),
        );
        g.bench_function(id, |b| {
            b.iter_custom(|iters| run_writers(&wal, threads, iters))
        });
        wal.close().unwrap();
    }
    g.finish();
}

fn buffered(c: &mut Criterion) {
    let mut g = short(c, "wal_buffered_append");
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().durability(Durability::Buffered);
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    g.bench_function("1_writer_sync_at_end", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                wal.append(&RECORD).unwrap();
            }
            wal.sync().unwrap();
            start.elapsed()
        })
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_replay_1m");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1_000_000));
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().durability(Durability::Buffered);
    {
        let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let payload = [0x33u8; 123];
        for _ in 0..1_000_000 {
            wal.append(&payload).unwrap();
        }
        wal.close().unwrap();
    }
    let (writer, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let (reader, _) = Wal::open(dir.path(), opts.read_only(true)).unwrap();
    for (name, wal) in [
        ("mmap_writer_handle", &writer),
        ("copy_read_only_handle", &reader),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                let n = wal.replay(1, &mut |_, p| {
                    bytes += p.len();
                    Ok(())
                });
                assert_eq!(n.unwrap(), 1_000_000);
                bytes
            })
        });
    }
    g.finish();
}

/// W4 of `benches/compare`: a writer's `Wal::open` (which must prove that the preallocated tail
/// of the last segment holds nothing) plus a replay of 1,000,000 records of 123 bytes.
fn open_and_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_open_replay_1m");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1_000_000));
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().durability(Durability::Buffered);
    {
        let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let payload = [0x33u8; 123];
        for _ in 0..1_000_000 {
            wal.append(&payload).unwrap();
        }
        wal.close().unwrap();
    }
    g.bench_function("writer_open_then_replay", |b| {
        b.iter(|| {
            let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
            let n = wal.replay(1, &mut |_, _| Ok(())).unwrap();
            assert_eq!(n, 1_000_000);
            drop(wal);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    raw_fdatasync,
    durable,
    raw_fdatasync_end,
    buffered,
    replay,
    open_and_replay
);
criterion_main!(benches);
