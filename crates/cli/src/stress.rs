//! `stress`: N writer threads moving M tasks through their life, K events each.
//!
//! IMPORTANT: a crash test SIGKILLs this process and checks that every `ack <task-id> <lsn>`
//! line it printed names an event that is in the store. So a line is printed (and flushed) only
//! after the store call returned Ok, which under the default `Sync` durability means the
//! fdatasync covering the event returned.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::ProgressBar;
use tasklog::{NewTask, Store, Task};

use crate::args::StressArgs;
use crate::commands::{Ctx, close};

/// How one task ends.
#[derive(Clone, Copy)]
enum Outcome {
    Complete,
    Fail,
    Cancel,
}

fn outcome(i: u64) -> Outcome {
    match i % 20 {
        7 => Outcome::Cancel,
        3 | 13 => Outcome::Fail,
        _ => Outcome::Complete,
    }
}

/// Runs the load and prints the summary on stderr.
pub fn run(ctx: &Ctx, a: &StressArgs) -> anyhow::Result<()> {
    // Preallocated segments, as a long-running writer would use (the library default). Like
    // every command that is not the owner of the store's work, it leaves interrupted tasks of
    // other processes alone.
    let options =
        tasklog::StoreOptions::new().interrupted_policy(tasklog::store::InterruptedPolicy::Leave);
    let store = crate::commands::open_write_with(&ctx.dir, options)?;
    let existing = store.count(tasklog::store::Filter::default())?;
    if existing > 0 && !a.force {
        close(store)?;
        let dir = ctx.dir.display();
        return Err(crate::exit::Exit::new(
            crate::exit::OPERATION,
            format!(
                "{dir} already holds {existing} task(s); stress would add its own test tasks to \
                 them. Use an empty directory (`tasklog --dir /tmp/stress stress`), or pass \
                 --force to write here anyway"
            ),
        )
        .into());
    }
    let writers = u64::from(a.writers);
    let k = u64::from(a.events_per_task);
    let bar = ctx.ui.bar(a.tasks * k, "stress");
    let stop = AtomicBool::new(false);
    let payload = "x".repeat(a.payload_bytes);
    let started = Instant::now();
    let results: Vec<anyhow::Result<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, bar, stop, payload) = (&store, &bar, &stop, payload.as_str());
                s.spawn(move || {
                    let r = writer(store, w, writers, a, payload, bar, stop);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut latencies = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(l) => latencies.extend(l),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    summary(&latencies, elapsed, a);
    close(store)?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One writer: tasks w, w + writers, w + 2 * writers, ... Returns per-call latencies (µs).
fn writer(
    store: &Store,
    w: u64,
    writers: u64,
    a: &StressArgs,
    payload: &str,
    bar: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<u32>> {
    let k = a.events_per_task;
    let mut lat = Vec::with_capacity((a.tasks / writers + 1) as usize * k as usize);
    let mut call = |f: &dyn Fn() -> tasklog::Result<Task>| -> anyhow::Result<Task> {
        let t0 = Instant::now();
        let task = f()?;
        lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
        ack(&task)?;
        bar.inc(1);
        Ok(task)
    };
    let mut i = w;
    while i < a.tasks && !stop.load(Ordering::Relaxed) {
        let mut new = NewTask::new(format!("stress task {i}"))
            .role(format!("writer-{w}"))
            .provider("stress")
            .meta("writer", w.into())
            .meta("index", i.into());
        if !payload.is_empty() {
            new = new.meta("payload", payload.into());
        }
        let id = call(&|| store.submit(new.clone()))
            .with_context(|| format!("writer {w}: submitting task {i}"))?
            .id;
        let ctx = || format!("writer {w}: task {id}");
        call(&|| store.start(&id)).with_context(ctx)?;
        let steps = k - 3;
        for j in 0..steps {
            let pct = u8::try_from((j + 1) * 100 / (steps + 1)).unwrap_or(99);
            call(&|| store.progress(&id, pct, Some("work"), None)).with_context(ctx)?;
        }
        let end = outcome(i);
        call(&|| match end {
            Outcome::Complete => store.complete(&id, Some(serde_json::json!({"index": i}))),
            Outcome::Fail => store.fail(&id, "stress: simulated failure"),
            Outcome::Cancel => store.cancel(&id, Some("stress: simulated cancel")),
        })
        .with_context(ctx)?;
        i += writers;
    }
    Ok(lat)
}

/// Prints `ack <task-id> <lsn>` and flushes, under stdout's lock.
fn ack(task: &Task) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ack {} {}", task.id, task.last_lsn)?;
    out.flush()
}

fn summary(latencies: &[u32], elapsed: Duration, a: &StressArgs) {
    let mut l = latencies.to_vec();
    l.sort_unstable();
    let pct = |p: f64| -> u32 {
        if l.is_empty() {
            return 0;
        }
        let idx = ((l.len() - 1) as f64 * p).round() as usize;
        l.get(idx).copied().unwrap_or_default()
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "stress: {} event(s) acknowledged by {} writer(s) in {:.2} s: {:.0} events/s; latency p50 {} µs, p99 {} µs, max {} µs",
        l.len(),
        a.writers,
        secs,
        l.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        l.last().copied().unwrap_or_default()
    );
}
