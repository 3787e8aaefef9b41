//! Opens a store and prints where its memory goes, per task: the parts of the state counted
//! from their sizes and capacities (`State::memory_use`), the parts measured with a counting
//! global allocator (the live tasks' own strings and collections, by cloning each; the
//! ordered indexes, by dropping and rebuilding them), the rest of the heap, and `VmRSS`.
//! `cargo run --release --example memory_use -- DIR [--read-only] [--history N]` (the byte
//! figures are the same in a debug build: they count bytes, not time). With `--history N`, it
//! then reads N histories (ids spread over the store, each read twice: the second read is the
//! warm one) and prints the latency percentiles of the warm reads (time them in a release
//! build).
use std::sync::atomic::Ordering;
use std::time::Instant;

use tasklog::store::StoreOptions;
use tasklog::store::state::Held;

// The tests' counting allocator (it also keeps a peak, unused here).
#[path = "../tests/counting_alloc/mod.rs"]
#[allow(dead_code, reason = "the example reads only the live count")]
mod counting_alloc;

fn live() -> usize {
    counting_alloc::LIVE.load(Ordering::Relaxed)
}

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l["VmRSS:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "n/a".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: memory_use DIR [--read-only] [--history N]");
    let flags: Vec<String> = args.collect();
    let read_only = flags.iter().any(|a| a == "--read-only");
    let history_reads: usize = flags
        .iter()
        .position(|a| a == "--history")
        .and_then(|i| flags.get(i + 1))
        .map_or(0, |n| n.parse().expect("--history N"));
    let before = live();
    let started = Instant::now();
    let store = StoreOptions::new()
        .read_only(read_only)
        .open(&dir)
        .expect("open");
    let took = started.elapsed();
    let heap = live() - before;
    let r = store.recovery_report();
    println!(
        "opened {} tasks in {:.3} s: {} records replayed, snapshot {:?}",
        store.len(),
        took.as_secs_f64(),
        r.events_replayed,
        r.snapshot_used
    );
    let m = store.with_state_mut(|st| st.memory_use());
    // The indexes: what dropping them frees (they are rebuilt at once, as they were).
    let indexes = store.with_state_mut(|st| {
        let with = live();
        st.suspend_indexes();
        let without = live();
        st.rebuild_indexes();
        with - without
    });
    // What a live (pending or running) task owns besides its fixed size: clone each and
    // subtract the vector. A terminal task is held as one encoded record, counted whole in
    // `task_values`.
    let task_heap = store.with_state_mut(|st| {
        let start = live();
        let tasks: Vec<tasklog::Task> = st
            .entries()
            .filter_map(|(_, e)| match &e.task {
                Some(Held::Live(t)) => Some(tasklog::Task::clone(t)),
                _ => None,
            })
            .collect();
        let grown = live() - start;
        grown - tasks.capacity() * std::mem::size_of::<tasklog::Task>()
    });
    let slots = m.slots.max(1) as f64;
    let per = |b: usize| b as f64 / slots;
    let other = heap.saturating_sub(m.counted() + indexes + task_heap);
    println!(
        "{} slots, {} live tasks, {} events",
        m.slots, m.live, m.events
    );
    println!("part | bytes | per task");
    let rows = [
        ("id -> slot hash table", m.id_table),
        ("shared ids (Arc<str>)", m.id_shared),
        ("slot vector (Entry)", m.slot_vec),
        ("tasks (live Arc<Task>, terminal records)", m.task_values),
        ("live tasks' strings and collections", task_heap),
        ("histories in memory", m.history_heap),
        ("ordered indexes (tree nodes)", indexes),
        ("rest of the heap", other),
        ("heap after open (counting allocator)", heap),
    ];
    for (name, bytes) in rows {
        println!("{name} | {bytes} | {:.0}", per(bytes));
    }
    println!(
        "index entries: {} ({:.1} per live task, {:.1} B each)",
        m.index_entries,
        m.index_entries as f64 / m.live.max(1) as f64,
        indexes as f64 / m.index_entries.max(1) as f64
    );
    println!("resident after open: {}", rss());
    // The fixed-size task, field by field (the largest single item per task).
    use std::mem::size_of;
    use tasklog::task::{Checkpoint, Lease, Progress};
    println!(
        "size_of: Task {}, Progress {}, Option<Checkpoint> {}, Option<Lease> {}, \
         Option<Value> {}, Option<String> {}, String {}, Vec {}, BTreeMap {}",
        size_of::<tasklog::Task>(),
        size_of::<Progress>(),
        size_of::<Option<Checkpoint>>(),
        size_of::<Option<Lease>>(),
        size_of::<Option<serde_json::Value>>(),
        size_of::<Option<String>>(),
        size_of::<String>(),
        size_of::<Vec<String>>(),
        size_of::<std::collections::BTreeMap<String, serde_json::Value>>(),
    );
    if history_reads > 0 {
        history_latency(&store, history_reads);
    }
}

/// Reads `n` histories spread over the store, each twice, and prints the warm reads' latency.
fn history_latency(store: &tasklog::Store, n: usize) {
    let ids: Vec<String> = store.with_state_mut(|st| {
        let all: Vec<&str> = st.entries().map(|(id, _)| id).collect();
        let step = (all.len() / n.max(1)).max(1);
        all.iter()
            .step_by(step)
            .take(n)
            .map(|id| id.to_string())
            .collect()
    });
    let mut warm = Vec::with_capacity(ids.len());
    let mut events = 0;
    for id in &ids {
        events += store.history(id).expect("history").len();
        let started = Instant::now();
        store.history(id).expect("history");
        warm.push(started.elapsed());
    }
    if std::env::var_os("MEMORY_USE_SLOWEST").is_some() {
        let mut by: Vec<(std::time::Duration, &String)> = warm.iter().copied().zip(&ids).collect();
        by.sort();
        for (t, id) in by.iter().rev().take(5) {
            let lsns: Vec<u64> = store
                .history(id)
                .expect("history")
                .iter()
                .map(|e| e.lsn)
                .collect();
            println!("slow: {id} {t:?} {lsns:?}");
        }
    }
    warm.sort();
    let at = |q: f64| warm[((warm.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "history reads (warm): {} ids, {} events, p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
        warm.len(),
        events,
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
