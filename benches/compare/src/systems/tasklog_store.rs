//! tasklog, full store: the workloads as task operations through the public `Store` API,
//! durable by default.
//!
//! Each event becomes one operation on task `task_id` (its id is the decimal number), with the
//! event's text (trailing padding trimmed): 0 created -> `submit(NewTask::new(text).id(id))`,
//! 1 started -> `start(id)`, 2 progress -> `progress(id, 40 or 80, None, Some(text))`,
//! 3 completed -> `complete(id, None)`, 4 failed -> `fail(id, text)`, 5 cancelled ->
//! `cancel(id, Some(text))`. The events are decoded into these operations before the clock.
//!
//! - W1: `Store::open(dir)` (default options: `Durability::Sync`), one operation per event,
//!   each returns once durable.
//! - W2: the same from T threads. IMPORTANT: unlike the logs, a store validates every change
//!   against the task's state (a task cannot start before it exists), so events are dealt to
//!   threads by task (`(task_id - 1) % T`), not by position, keeping each task's events in
//!   order on one thread. Each thread gets 1/T of the tasks (±1 task).
//! - W3: `Durability::Buffered` and background snapshots off (`snapshot_every_records(0)`,
//!   `snapshot_every_bytes(0)`, so that W4 really replays the log); the operations go in
//!   order as `Store::write_batch` calls of 1,000 mutations (a bulk loader's path: no task is
//!   copied back to the caller), then `close()` (which syncs) inside the clock. The same
//!   operations one call each are measured by `examples/bulk_store.rs` (see
//!   docs/benchmarks.md).
//! - W4: `Store::open(dir)` on what W3 left (rebuilds every task and its full history) is timed;
//!   then, outside the clock, `len()` must be the number of tasks, and every task's state and
//!   version (its event count) become the rebuilt state the harness checks; a sample of
//!   histories is read back through `history(id)`.
//! - W4 from a snapshot (an extra row): after W4, open, `snapshot()`, close (untimed), then the
//!   reopen, which loads the snapshot and replays only the records after it, is timed.
//! - Scale (once per run): a new store's bytes on disk; the W3 operations written again with
//!   default options (durable batches, background snapshots, their retention) and the bytes
//!   they take on disk after close, then the time to open that store (its newest snapshot
//!   and the records after it); `history(id)` of 5,000 ids spread over the tasks, on W3's
//!   store opened from its snapshot, each read once untimed (warm page cache), then timed.
//! - Memory: a fresh process (`compare --rss-open DIR`) reads `/proc/self/status` before and
//!   after `Store::open(DIR)`, so the figure is the store's alone, not this process's events or
//!   allocator caches.

#[cfg(not(feature = "tasklog"))]
mod adapter {
    use std::path::Path;

    use crate::event::Event;
    use crate::systems::{NOT_WIRED, Replayed, Res, System, Timed};

    pub struct TasklogStore;

    impl System for TasklogStore {
        fn w1(&self, _: &Path, _: &[Event]) -> Res<Timed> {
            Err(NOT_WIRED.into())
        }
        fn w2(&self, _: &Path, _: &[Event], _: usize) -> Res<Timed> {
            Err(NOT_WIRED.into())
        }
        fn w3(&self, _: &Path, _: &[Event]) -> Res<Timed> {
            Err(NOT_WIRED.into())
        }
        fn w4(&self, _: &Path, _: usize) -> Res<Replayed> {
            Err(NOT_WIRED.into())
        }
    }

    pub fn rss_child(_: &Path) -> Res<String> {
        Err(NOT_WIRED.into())
    }
}

#[cfg(feature = "tasklog")]
mod adapter {
    use std::path::Path;
    use std::process::Command;
    use std::time::Instant;

    use tasklog::store::mutation::{Change, Mutation};
    use tasklog::wal::Durability;
    use tasklog::{NewTask, Store, StoreOptions, TaskState};

    use crate::event::{self, Event};
    use crate::state::{self, Rebuilt};
    use crate::stats::percentile_us;
    use crate::systems::{
        Memory, Replayed, Res, Scale, System, Timed, allocated_bytes, concurrent_parts,
        sequential_items,
    };

    pub struct TasklogStore;

    /// One event as a store operation, prepared before the clock.
    struct Op {
        task_id: u64,
        id: String,
        seq: u32,
        kind: u8,
        text: String,
    }

    fn ops(events: &[Event]) -> Vec<Op> {
        events
            .iter()
            .map(|ev| {
                let h = event::decode(ev);
                Op {
                    task_id: h.task_id,
                    id: h.task_id.to_string(),
                    seq: h.seq,
                    kind: h.kind,
                    text: event::text(ev).to_string(),
                }
            })
            .collect()
    }

    /// Operations per `write_batch` call in W3.
    const W3_BATCH: usize = 1000;

    /// Histories read (spread over all tasks) for the store-at-scale figures.
    const HISTORY_READS: usize = 5000;

    /// One operation as a mutation (the same changes as `apply`).
    fn mutation(op: &Op) -> Mutation {
        let change = match op.kind {
            0 => return Mutation::submit(NewTask::new(op.text.as_str()).id(op.id.as_str())),
            1 => Change::Start {
                owner: None,
                lease_ms: None,
            },
            2 => Change::Progress {
                percent: (op.seq.saturating_sub(2) * 40).min(100) as u8,
                step: None,
                message: Some(op.text.clone()),
            },
            3 => Change::Complete { result: None },
            4 => Change::Fail {
                error: op.text.clone(),
            },
            _ => Change::Cancel {
                reason: Some(op.text.clone()),
            },
        };
        Mutation::new(op.id.as_str(), change)
    }

    fn apply(store: &Store, op: &Op) -> Res<()> {
        match op.kind {
            0 => store.submit(NewTask::new(op.text.as_str()).id(op.id.as_str()))?,
            1 => store.start(&op.id)?,
            // The generator's two progress events say 40% and 80% (seq 3 and 4).
            2 => {
                let pct = (op.seq.saturating_sub(2) * 40).min(100) as u8;
                store.progress(&op.id, pct, None, Some(&op.text))?
            }
            3 => store.complete(&op.id, None)?,
            4 => store.fail(&op.id, &op.text)?,
            5 => store.cancel(&op.id, Some(&op.text))?,
            k => return Err(format!("unknown event kind {k}").into()),
        };
        Ok(())
    }

    /// The harness's per-task state from the store: the event count is the task's `version`
    /// (one per event applied), the latest seq is that count, the latest kind follows from the
    /// state (and, while running, from the count). Timestamps are the store's own.
    fn rebuilt(store: &Store, tasks: usize) -> Res<Rebuilt> {
        if store.len() != tasks {
            return Err(format!("store.len() is {}, expected {tasks}", store.len()).into());
        }
        let mut out = Rebuilt::with_capacity(tasks);
        for (i, t) in store.all_tasks()?.into_iter().enumerate() {
            let id: u64 = t.id.parse().map_err(|_| format!("task id {:?}", t.id))?;
            let events = u32::try_from(t.version).map_err(|_| "version overflows u32")?;
            let kind = match t.state {
                TaskState::Pending => 0,
                TaskState::Running if events <= 2 => 1,
                TaskState::Running => 2,
                TaskState::Completed => 3,
                TaskState::Failed => 4,
                TaskState::Cancelled => 5,
                other => return Err(format!("unexpected state {other:?}").into()),
            };
            // Spot check that the full history came back, not just the latest state.
            if i % 997 == 0 {
                let h = store.history(&t.id)?;
                if h.len() != events as usize {
                    return Err(format!(
                        "task {}: history has {} events, version says {events}",
                        t.id,
                        h.len()
                    )
                    .into());
                }
            }
            out.tasks.insert(
                id,
                state::TaskState {
                    seq: events,
                    kind,
                    ts_ms: 0,
                    events,
                },
            );
            out.events += u64::from(events);
        }
        Ok(out)
    }

    /// `verify` of the closed store in `dir`, timed: seconds and the snapshots it checked. It
    /// must find the store healthy.
    fn timed_verify(dir: &Path) -> Res<(f64, usize)> {
        let start = Instant::now();
        let report = tasklog::store::verify::verify(dir, &mut |_| {})?;
        let secs = start.elapsed().as_secs_f64();
        if !report.ok {
            return Err(format!("verify found problems: {:?}", report.problems).into());
        }
        Ok((secs, report.snapshots.len()))
    }

    impl System for TasklogStore {
        fn w1(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
            let ops = ops(events);
            let store = Store::open(dir)?;
            let before = store.log_stats().fsyncs;
            let mut t = sequential_items(&ops, |op| apply(&store, op))?;
            t.fsyncs = Some(store.log_stats().fsyncs - before);
            store.close()?;
            Ok(t)
        }

        fn w2(&self, dir: &Path, events: &[Event], threads: usize) -> Res<Timed> {
            let ops = ops(events);
            let mut parts: Vec<Vec<&Op>> = (0..threads).map(|_| Vec::new()).collect();
            for op in &ops {
                parts[((op.task_id - 1) % threads as u64) as usize].push(op);
            }
            let store = Store::open(dir)?;
            let before = store.log_stats().fsyncs;
            let mut t = concurrent_parts(&parts, |op| apply(&store, op))?;
            t.fsyncs = Some(store.log_stats().fsyncs - before);
            store.close()?;
            Ok(t)
        }

        fn w3(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
            let ops = ops(events);
            let store = StoreOptions::new()
                .durability(Durability::Buffered)
                .snapshot_every_records(0)
                .snapshot_every_bytes(0)
                .open(dir)?;
            let start = Instant::now();
            for chunk in ops.chunks(W3_BATCH) {
                store.write_batch(chunk.iter().map(mutation).collect())?;
            }
            store.close()?;
            let elapsed = start.elapsed();
            Ok(Timed {
                elapsed,
                lat_ns: Vec::new(),
                fsyncs: None,
            })
        }

        fn w4(&self, dir: &Path, tasks: usize) -> Res<Replayed> {
            let start = Instant::now();
            let store = Store::open(dir)?;
            let elapsed = start.elapsed();
            if store.recovery_report().snapshot_used.is_some() {
                return Err("W4 should replay the log, but the store loaded a snapshot".into());
            }
            let state = rebuilt(&store, tasks)?;
            store.close()?;
            Ok(Replayed {
                elapsed,
                state,
                timestamps: false,
            })
        }

        fn w4_from_snapshot(&self, dir: &Path, tasks: usize) -> Option<Res<Replayed>> {
            Some((|| -> Res<Replayed> {
                let store = Store::open(dir)?;
                store.snapshot()?;
                store.close()?;
                drop(store);
                let start = Instant::now();
                let store = Store::open(dir)?;
                let elapsed = start.elapsed();
                if store.recovery_report().snapshot_used.is_none() {
                    return Err("the reopen did not load the snapshot".into());
                }
                let state = rebuilt(&store, tasks)?;
                store.close()?;
                Ok(Replayed {
                    elapsed,
                    state,
                    timestamps: false,
                })
            })())
        }

        fn scale(
            &self,
            snapshot_dir: &Path,
            empty: [&Path; 2],
            events: &[Event],
        ) -> Option<Res<Scale>> {
            Some((|| -> Res<Scale> {
                let [new, finished] = empty;
                StoreOptions::new().open(new)?.close()?;
                let new_store_bytes = allocated_bytes(new);

                // Default options: durable batches, background snapshots and their retention.
                let ops = ops(events);
                let store = StoreOptions::new().open(finished)?;
                for chunk in ops.chunks(W3_BATCH) {
                    store.write_batch(chunk.iter().map(mutation).collect())?;
                }
                store.close()?;
                drop(store);
                let finished_bytes = allocated_bytes(finished);
                let tasks = events.len().div_ceil(5);
                let start = Instant::now();
                let store = Store::open(finished)?;
                let default_open_s = start.elapsed().as_secs_f64();
                let default_open_replayed = store.recovery_report().events_replayed;
                if store.len() != tasks {
                    return Err(
                        format!("the default-options store holds {} tasks", store.len()).into(),
                    );
                }
                store.close()?;
                drop(store);
                let (default_verify_s, default_verify_snapshots) = timed_verify(finished)?;

                let start = Instant::now();
                let store = Store::open(snapshot_dir)?;
                let snapshot_open_s = start.elapsed().as_secs_f64();
                if store.recovery_report().snapshot_used.is_none() {
                    return Err("the history reads' store did not load its snapshot".into());
                }
                let step = (tasks / HISTORY_READS).max(1);
                let ids: Vec<String> = (1..=tasks).step_by(step).map(|i| i.to_string()).collect();
                for id in &ids {
                    store.history(id)?;
                }
                let mut lat_ns: Vec<u64> = Vec::with_capacity(ids.len());
                for id in &ids {
                    let start = Instant::now();
                    let h = store.history(id)?;
                    lat_ns.push(start.elapsed().as_nanos() as u64);
                    if h.is_empty() {
                        return Err(format!("task {id}: an empty history").into());
                    }
                }
                store.close()?;
                drop(store);
                let (snapshot_verify_s, snapshot_verify_snapshots) = timed_verify(snapshot_dir)?;
                lat_ns.sort_unstable();
                let at = |q: f64| percentile_us(&lat_ns, q).unwrap_or(0.0);
                Ok(Scale {
                    new_store_bytes,
                    finished_tasks: tasks,
                    finished_bytes,
                    default_open_s,
                    default_open_replayed,
                    history_reads: lat_ns.len(),
                    history_p50_us: at(0.5),
                    history_p99_us: at(0.99),
                    history_max_us: at(1.0),
                    default_verify_s,
                    default_verify_snapshots,
                    snapshot_open_s,
                    snapshot_verify_s,
                    snapshot_verify_snapshots,
                })
            })())
        }

        fn memory(&self, dir: &Path) -> Option<Res<Memory>> {
            Some((|| -> Res<Memory> {
                let out = Command::new(std::env::current_exe()?)
                    .arg("--rss-open")
                    .arg(dir)
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    return Err(format!(
                        "--rss-open failed: {}{}",
                        text.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                    .into());
                }
                let f: Vec<f64> = text
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--rss-open printed {text:?}: {e}"))?;
                let [before, after, anon, file, peak, secs] = f[..] else {
                    return Err(format!("--rss-open printed {text:?}").into());
                };
                Ok(Memory {
                    rss_before: before as u64,
                    rss_after: after as u64,
                    anon_after: anon as u64,
                    file_after: file as u64,
                    peak: peak as u64,
                    open_s: secs,
                })
            })())
        }
    }

    /// `/proc/self/status` fields in bytes: VmRSS, RssAnon, RssFile, VmHWM.
    fn status() -> Res<[u64; 4]> {
        let s = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| -> Res<u64> {
            let line = s
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| format!("no {name} in /proc/self/status"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .ok_or("empty field")?
                .parse()?;
            Ok(kib * 1024)
        };
        Ok([
            field("VmRSS:")?,
            field("RssAnon:")?,
            field("RssFile:")?,
            field("VmHWM:")?,
        ])
    }

    /// The child side of [`TasklogStore::memory`]: opens the store in `dir` and returns
    /// "rss_before rss_after anon_after file_after peak open_seconds" (bytes, seconds).
    pub fn rss_child(dir: &Path) -> Res<String> {
        let [before, ..] = status()?;
        let start = Instant::now();
        let store = Store::open(dir)?;
        let secs = start.elapsed().as_secs_f64();
        let [after, anon, file, peak] = status()?;
        std::hint::black_box(store.len());
        store.close()?;
        Ok(format!("{before} {after} {anon} {file} {peak} {secs:.6}"))
    }
}

pub use adapter::{TasklogStore, rss_child};
