//! The systems under comparison, one file each, behind one trait.
//!
//! Every method gets a fresh, empty directory and the events, generated before the clock starts.
//! It opens its store (untimed), runs the timed part, closes the store (untimed) and returns the
//! timings. `w4` gets the directory `w3` left behind and times opening it plus rebuilding, for
//! every task, its latest state and its event count.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::state::Rebuilt;

pub mod okaywal;
pub mod raw;
pub mod sqlite;
pub mod tasklog_log;
pub mod tasklog_store;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, Error>;

/// Returned by the tasklog adapters while tasklog's API is still being written.
pub const NOT_WIRED: &str = "not yet wired";

/// A timed run of appends.
pub struct Timed {
    pub elapsed: Duration,
    /// Per-append latency in nanoseconds; empty when a workload has no per-event latency.
    pub lat_ns: Vec<u64>,
    /// fdatasyncs the system itself counted during the timed part (tasklog's `Wal::stats()`);
    /// `None` when it does not count them.
    pub fsyncs: Option<u64>,
}

/// A timed open + rebuild.
pub struct Replayed {
    pub elapsed: Duration,
    pub state: Rebuilt,
    /// Whether `state` carries the events' own timestamps. The logs hand back the event bytes,
    /// so they do; tasklog's store stamps events with its own clock, so its rebuilt state is
    /// checked on everything else (tasks, latest seq and kind, event counts).
    pub timestamps: bool,
}

impl Replayed {
    pub fn new(elapsed: Duration, state: Rebuilt) -> Self {
        Replayed {
            elapsed,
            state,
            timestamps: true,
        }
    }
}

/// Resident memory of a store just opened in a fresh process (see `tasklog_store::rss_child`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `VmRSS` before and after the open, bytes.
    pub rss_before: u64,
    pub rss_after: u64,
    /// Of `rss_after`: anonymous memory (heap) and file-backed pages (maps), bytes.
    pub anon_after: u64,
    pub file_after: u64,
    /// `VmHWM`: the peak during the open, bytes.
    pub peak: u64,
    /// Seconds the open took in that process.
    pub open_s: f64,
}

/// The store-at-scale figures (issue #20), measured once per run for systems that have them.
#[derive(Clone, Debug, Default)]
pub struct Scale {
    /// Bytes a new, empty store takes on disk (allocated blocks, what `du` shows).
    pub new_store_bytes: u64,
    /// Finished tasks written through `write_batch` with default options (the W3 operations),
    /// and what their store takes on disk after `close()` (allocated blocks).
    pub finished_tasks: usize,
    pub finished_bytes: u64,
    /// Then `Store::open` of that store (warm page cache): seconds, and the records it
    /// replayed after its newest snapshot.
    pub default_open_s: f64,
    pub default_open_replayed: u64,
    /// `history(id)` on the store W3 wrote, opened from its snapshot: reads timed after one
    /// untimed read of each id (a warm page cache), microseconds.
    pub history_reads: usize,
    pub history_p50_us: f64,
    pub history_p99_us: f64,
    pub history_max_us: f64,
    /// `verify` (`tasklog::store::verify::verify`, what `tasklog verify` runs) on the
    /// default-options store and on W3's store after its snapshot, each beside the open of the
    /// same store (issue #20: verify within 2x of an open): seconds, and the snapshots it
    /// checked. `default_open_s` is the first store's open.
    pub default_verify_s: f64,
    pub default_verify_snapshots: usize,
    pub snapshot_open_s: f64,
    pub snapshot_verify_s: f64,
    pub snapshot_verify_snapshots: usize,
}

/// Bytes the files under `p` take on disk: allocated blocks where the platform says, else
/// their lengths.
pub fn allocated_bytes(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => allocated(&m),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(unix)]
fn allocated(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(m: &std::fs::Metadata) -> u64 {
    m.len()
}

pub trait System {
    /// W1: one writer, each append durable before the next.
    fn w1(&self, dir: &Path, events: &[Event]) -> Res<Timed>;
    /// W2: `threads` writers, each append durable before it returns.
    fn w2(&self, dir: &Path, events: &[Event], threads: usize) -> Res<Timed>;
    /// W3: one writer, no per-event durability, one durability point at the end (timed).
    fn w3(&self, dir: &Path, events: &[Event]) -> Res<Timed>;
    /// W4: open what `w3` wrote in `dir` and rebuild per-task state (timed).
    fn w4(&self, dir: &Path, tasks: usize) -> Res<Replayed>;
    /// W4 from a snapshot, for systems that have snapshots: runs after `w4` on the same
    /// directory, writes a snapshot (untimed), then times the reopen. `None`: no such row.
    fn w4_from_snapshot(&self, _dir: &Path, _tasks: usize) -> Option<Res<Replayed>> {
        None
    }
    /// Resident memory after opening what is in `dir`, measured in a fresh process. `None`:
    /// not measured for this system.
    fn memory(&self, _dir: &Path) -> Option<Res<Memory>> {
        None
    }
    /// The store-at-scale figures: `snapshot_dir` holds what W3 wrote and a snapshot of it
    /// (after `w4_from_snapshot`); `empty` are two fresh directories; `events` are W3's.
    /// `None`: not measured for this system.
    fn scale(
        &self,
        _snapshot_dir: &Path,
        _empty: [&Path; 2],
        _events: &[Event],
    ) -> Option<Res<Scale>> {
        None
    }
}

/// Runs `append` once per event on this thread, timing each call.
pub fn sequential(events: &[Event], mut append: impl FnMut(&[u8]) -> Res<()>) -> Res<Timed> {
    sequential_items(events, |ev| append(ev))
}

/// [`sequential`] over any items prepared before the clock (e.g. decoded task operations).
pub fn sequential_items<T>(items: &[T], mut append: impl FnMut(&T) -> Res<()>) -> Res<Timed> {
    let mut lat_ns = Vec::with_capacity(items.len());
    let start = Instant::now();
    for ev in items {
        let t = Instant::now();
        append(ev)?;
        lat_ns.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Timed {
        elapsed: start.elapsed(),
        lat_ns,
        fsyncs: None,
    })
}

/// Runs `append` from `threads` threads; thread `i` appends events `i, i + threads, ...`. All
/// threads start at a barrier; the clock runs from the first start to the last thread's end.
pub fn concurrent<F>(events: &[Event], threads: usize, append: F) -> Res<Timed>
where
    F: Fn(&[u8]) -> Res<()> + Sync,
{
    let parts: Vec<Vec<&Event>> = (0..threads)
        .map(|i| events.iter().skip(i).step_by(threads).collect())
        .collect();
    concurrent_parts(&parts, |ev| append(&ev[..]))
}

/// Runs `append` from one thread per part, each thread taking its part in order. All threads
/// start at a barrier; the clock runs from the first start to the last thread's end.
pub fn concurrent_parts<T, F>(parts: &[Vec<&T>], append: F) -> Res<Timed>
where
    T: Sync + ?Sized,
    F: Fn(&T) -> Res<()> + Sync,
{
    let threads = parts.len();
    let barrier = Barrier::new(threads);
    type PerThread = Res<(Instant, Instant, Vec<u64>)>;
    let results: Vec<PerThread> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|mine| {
                let (append, barrier) = (&append, &barrier);
                s.spawn(move || -> PerThread {
                    let mut lat = Vec::with_capacity(mine.len());
                    barrier.wait();
                    let start = Instant::now();
                    for &ev in mine {
                        let t = Instant::now();
                        append(ev)?;
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    Ok((start, Instant::now(), lat))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread should not panic"))
            .collect()
    });
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut lat_ns = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for r in results {
        let (s, e, l) = r?;
        first = Some(first.map_or(s, |f| f.min(s)));
        last = Some(last.map_or(e, |x| x.max(e)));
        lat_ns.extend(l);
    }
    let elapsed = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => Duration::ZERO,
    };
    Ok(Timed {
        elapsed,
        lat_ns,
        fsyncs: None,
    })
}
