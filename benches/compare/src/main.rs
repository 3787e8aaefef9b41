//! `compare`: tasklog side by side with the raw disk limit, SQLite and okaywal on the workloads
//! W1–W4 of `shared/benchmark-workloads.md`, in one process, printing one Markdown report.
//!
//! Every durable workload is repeated (`--reps`, default 3) with the systems interleaved within
//! each repetition, and the median of each figure is reported. Events are generated before any
//! clock starts. Each run gets a fresh directory, removed afterwards.

mod event;
mod plot;
mod report;
mod state;
mod stats;
mod systems;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::report::Row;
use crate::state::Rebuilt;
use crate::stats::{Sample, median_sample};
use crate::systems::{Memory, NOT_WIRED, Res, Scale, System};

/// tasklog compared with the raw disk limit, SQLite and okaywal (workloads W1–W4).
#[derive(Parser, Debug)]
#[command(name = "compare")]
struct Args {
    /// Smaller counts for a smoke run: W1 500, W2 600, W3/W4 100,000 events.
    #[arg(long)]
    quick: bool,
    /// Where the stores are written: a fresh temporary directory is made inside DIR (it must
    /// be on the disk you want to measure). Default: benches/compare/target.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Systems to run: raw (= raw-growing,raw-prealloc), sqlite, sqlite-normal (not durable),
    /// okaywal, tasklog-log, tasklog-store.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw,sqlite,okaywal,tasklog-log,tasklog-store"
    )]
    systems: Vec<String>,
    /// Repetitions of every workload; medians are reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the report into this Markdown file, between generated-section markers
    /// (hand-written text around them is kept).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measure W2 at 1, 2, 4, 8, 16 and 32 writers (once each) and print that table.
    #[arg(long)]
    w2_sweep: bool,
    /// Draw the W2 sweep as a PNG line chart at PATH (implies --w2-sweep).
    #[arg(long, value_name = "PATH")]
    plot: Option<PathBuf>,
    /// Writer counts of the W2 sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    sweep_threads: Vec<usize>,
    /// Runs per point of the W2 sweep; the median is reported and drawn.
    #[arg(long, default_value_t = 1)]
    sweep_reps: usize,
    /// Before each repetition, wait until this disk's write + fdatasync p50 (a 50-fsync probe) is
    /// at most US microseconds: shared virtual disks go through slow phases. 0: never wait.
    #[arg(long, value_name = "US", default_value_t = 0.0)]
    quiet_disk_us: f64,
    /// Run only the W2 sweep, not W1–W4.
    #[arg(long)]
    sweep_only: bool,
    /// Run only the bulk workloads W3 and W4 (e.g. under `perf record`).
    #[arg(long, conflicts_with_all = ["sweep_only", "w2_sweep", "plot"])]
    bulk_only: bool,
    /// Internal: open the tasklog store in DIR, print its resident memory before and after the
    /// open, and exit (the memory figures of the report are measured in such a fresh process).
    #[arg(long, value_name = "DIR", hide = true)]
    rss_open: Option<PathBuf>,
}

struct Counts {
    w1: usize,
    w2: usize,
    w3: usize,
}

struct Entry {
    label: &'static str,
    sys: Box<dyn System>,
}

const RAW_LIMIT: &str = "raw, preallocated";
const TASKLOG_LOG: &str = "tasklog log";
const TASKLOG_STORE: &str = "tasklog store";
const OKAYWAL: &str = "okaywal";
const SQLITE: &str = "SQLite FULL";

fn entries(names: &[String]) -> Result<Vec<Entry>, String> {
    use systems::{
        okaywal::OkayWal, raw::Raw, sqlite::Sqlite, tasklog_log::TasklogLog,
        tasklog_store::TasklogStore,
    };
    let mut out: Vec<Entry> = Vec::new();
    let mut add = |label: &'static str, sys: Box<dyn System>| {
        if !out.iter().any(|e| e.label == label) {
            out.push(Entry { label, sys });
        }
    };
    for name in names {
        match name.trim() {
            "raw" => {
                add("raw, growing file", Box::new(Raw { prealloc: false }));
                add(RAW_LIMIT, Box::new(Raw { prealloc: true }));
            }
            "raw-growing" => add("raw, growing file", Box::new(Raw { prealloc: false })),
            "raw-prealloc" => add(RAW_LIMIT, Box::new(Raw { prealloc: true })),
            "sqlite" => add(
                SQLITE,
                Box::new(Sqlite {
                    synchronous: "FULL",
                }),
            ),
            "sqlite-normal" => add(
                "SQLite NORMAL (not durable)",
                Box::new(Sqlite {
                    synchronous: "NORMAL",
                }),
            ),
            "okaywal" => add(OKAYWAL, Box::new(OkayWal)),
            "tasklog-log" => add(TASKLOG_LOG, Box::new(TasklogLog)),
            "tasklog-store" => add(TASKLOG_STORE, Box::new(TasklogStore)),
            other => return Err(format!("unknown system {other:?}")),
        }
    }
    Ok(out)
}

/// Runs `f`, turning an error or a panic (a system that panics) into a message for the table.
fn guarded<T>(f: impl FnOnce() -> Res<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        }
    }
}

/// [`guarded`] for the optional workloads: `None` when the system does not have them.
fn guarded_opt<T>(f: impl FnOnce() -> Option<Res<T>>) -> Option<Result<T, String>> {
    let mut some = true;
    let r = guarded(|| match f() {
        Some(r) => r,
        None => {
            some = false;
            Err("".into())
        }
    });
    some.then_some(r)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The repetitions of one workload on one system.
#[derive(Default)]
struct Outcome {
    samples: Vec<Sample>,
    error: Option<String>,
}

struct Runner {
    root: tempfile::TempDir,
    runs: usize,
    started: Instant,
    /// `--quiet-disk-us`: before each repetition, wait until the disk's fdatasync p50 is at
    /// most this many microseconds (0: do not wait).
    quiet_us: f64,
    /// Seconds spent waiting for a quiet disk, and how many waits gave up.
    waited_s: f64,
    gave_up: usize,
}

impl Runner {
    /// Flushes the filesystem's dirty data (`syncfs`) so that earlier writes, such as the build
    /// or the previous workload's files, are not flushed by the next workload's first fsyncs
    /// (ext4's journal commit can wait for them).
    fn settle(&self) {
        if let Ok(d) = std::fs::File::open(self.root.path()) {
            let _ = rustix::fs::syncfs(&d);
        }
    }

    /// Flushes, then, with `--quiet-disk-us`, waits (at most 5 minutes) until a 50-fsync probe
    /// shows the shared disk out of a slow phase.
    fn before_rep(&mut self, what: &str) {
        self.settle();
        if self.quiet_us <= 0.0 {
            return;
        }
        let start = Instant::now();
        loop {
            let p50 = systems::raw::fsync_probe(self.root.path(), 50).map_or(f64::MAX, |p| p.0);
            if p50 <= self.quiet_us {
                break;
            }
            if start.elapsed().as_secs() >= 300 {
                eprintln!(
                    "disk still slow (fdatasync p50 {p50:.0} µs) before {what}: measuring anyway"
                );
                self.gave_up += 1;
                break;
            }
            eprintln!("disk slow (fdatasync p50 {p50:.0} µs) before {what}: waiting");
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        self.waited_s += start.elapsed().as_secs_f64();
    }

    fn fresh_dir(&mut self) -> std::io::Result<PathBuf> {
        self.runs += 1;
        let d = self.root.path().join(format!("run-{}", self.runs));
        std::fs::create_dir(&d)?;
        Ok(d)
    }

    fn log(&self, what: &str, label: &str, r: &Result<Sample, String>) {
        let t = self.started.elapsed().as_secs_f64();
        match r {
            Ok(s) => eprintln!(
                "[{t:6.1}s] {what:<10} {label:<28} {:>12} ev/s",
                report::thousands(s.events_per_s)
            ),
            Err(e) => eprintln!("[{t:6.1}s] {what:<10} {label:<28} {e}"),
        }
    }

    /// One durable run (W1 when `threads` is None, else W2) in a fresh directory.
    fn durable(
        &mut self,
        e: &Entry,
        events: &[event::Event],
        threads: Option<usize>,
    ) -> Result<Sample, String> {
        let d = self.fresh_dir().map_err(|e| e.to_string())?;
        let r = guarded(|| match threads {
            None => e.sys.w1(&d, events),
            Some(t) => e.sys.w2(&d, events, t),
        })
        .map(|mut t| {
            let mut s = Sample::new(events.len(), t.elapsed, &mut t.lat_ns, dir_size(&d));
            s.fsyncs = t.fsyncs.map(|n| n as f64);
            s
        });
        let _ = std::fs::remove_dir_all(&d);
        r
    }

    /// W3 then W4 on what W3 wrote, in one fresh directory; then, for systems that have
    /// them, W4 from a snapshot and (with `measure_memory`) the resident memory after opening.
    fn bulk(
        &mut self,
        e: &Entry,
        events: &[event::Event],
        want: &Rebuilt,
        measure_memory: bool,
    ) -> Bulk {
        let d = match self.fresh_dir() {
            Ok(d) => d,
            Err(err) => {
                return Bulk {
                    w3: Err(err.to_string()),
                    w4: Err(err.to_string()),
                    snap: None,
                    memory: Vec::new(),
                    scale: None,
                };
            }
        };
        let w3 = guarded(|| e.sys.w3(&d, events))
            .map(|mut t| Sample::new(events.len(), t.elapsed, &mut t.lat_ns, dir_size(&d)));
        let check = |r: systems::Replayed| -> Result<std::time::Duration, String> {
            r.state
                .verify(want, r.timestamps)
                .map_err(|m| format!("replay wrong: {m}"))?;
            Ok(r.elapsed)
        };
        let w4 = match &w3 {
            Err(err) => Err(err.clone()),
            Ok(s3) => guarded(|| e.sys.w4(&d, want.tasks.len()))
                .and_then(check)
                .map(|t| Sample::new(events.len(), t, &mut [], s3.bytes_on_disk)),
        };
        let mut memory = Vec::new();
        let mut snap = None;
        let mut scale = None;
        if w4.is_ok() {
            if measure_memory && let Some(m) = guarded_opt(|| e.sys.memory(&d)) {
                memory.push(("opening from the log (W4)", m));
            }
            snap = guarded_opt(|| e.sys.w4_from_snapshot(&d, want.tasks.len())).map(|r| {
                r.and_then(check)
                    .map(|t| Sample::new(events.len(), t, &mut [], dir_size(&d)))
            });
            if measure_memory
                && matches!(snap, Some(Ok(_)))
                && let Some(m) = guarded_opt(|| e.sys.memory(&d))
            {
                memory.push(("opening from the snapshot", m));
            }
            if measure_memory && matches!(snap, Some(Ok(_))) {
                scale = self.scale(e, &d, events);
            }
        }
        let _ = std::fs::remove_dir_all(&d);
        Bulk {
            w3,
            w4,
            snap,
            memory,
            scale,
        }
    }

    /// The store-at-scale figures, on `d` (W3's data and its snapshot) and two fresh
    /// directories.
    fn scale(
        &mut self,
        e: &Entry,
        d: &Path,
        events: &[event::Event],
    ) -> Option<Result<Scale, String>> {
        let empty = match (self.fresh_dir(), self.fresh_dir()) {
            (Ok(a), Ok(b)) => [a, b],
            (Err(err), _) | (_, Err(err)) => return Some(Err(err.to_string())),
        };
        let r = guarded_opt(|| e.sys.scale(d, [&empty[0], &empty[1]], events));
        for dir in &empty {
            let _ = std::fs::remove_dir_all(dir);
        }
        r
    }
}

/// What one repetition of the bulk workloads gave for one system.
struct Bulk {
    w3: Result<Sample, String>,
    w4: Result<Sample, String>,
    /// W4 from a snapshot, for systems that have snapshots.
    snap: Option<Result<Sample, String>>,
    /// Resident memory after opening (what was opened, the figures); measured once.
    memory: Vec<(&'static str, Result<Memory, String>)>,
    /// The store-at-scale figures, for systems that have them; measured once.
    scale: Option<Result<Scale, String>>,
}

fn record(o: &mut Outcome, r: Result<Sample, String>) {
    match r {
        Ok(s) => o.samples.push(s),
        Err(e) => o.error = Some(e),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.rss_open {
        return match systems::tasklog_store::rss_child(dir) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("compare --rss-open: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let entries = match entries(&args.systems) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let counts = if args.quick {
        Counts {
            w1: 500,
            w2: 600,
            w3: 100_000,
        }
    } else {
        Counts {
            w1: 3_000,
            w2: 3_000,
            w3: 1_000_000,
        }
    };
    let reps = args.reps.max(1);
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    if let Err(e) = std::fs::create_dir_all(&base) {
        eprintln!("compare: cannot create {}: {e}", base.display());
        return ExitCode::FAILURE;
    }
    let root = match tempfile::Builder::new()
        .prefix("compare-")
        .tempdir_in(&base)
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "compare: cannot make a temporary directory in {}: {e}",
                base.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // NOTE: a system that panics is reported in the table instead of aborting the run.
    std::panic::set_hook(Box::new(|_| {}));
    for e in &entries {
        if e.label.starts_with("tasklog") && !cfg!(feature = "tasklog") {
            eprintln!(
                "{}: {NOT_WIRED} (this build has no `tasklog` feature: built with --no-default-features)",
                e.label
            );
        }
    }

    // Generate everything before any clock starts.
    let w1_events = event::generate(counts.w1);
    let w2_events = event::generate(counts.w2);
    let w3_events = if args.sweep_only {
        Vec::new()
    } else {
        event::generate(counts.w3)
    };
    let want = Rebuilt::expected(&w3_events);

    let mut run = Runner {
        root,
        runs: 0,
        started: Instant::now(),
        quiet_us: args.quiet_disk_us,
        waited_s: 0.0,
        gave_up: 0,
    };
    let mut md = String::new();
    md.push_str("## Machine\n\n");
    run.settle();
    md.push_str(&report::machine(run.root.path()));
    md.push_str(&probe_line(run.root.path(), "before the run"));
    let argv: Vec<String> = std::env::args().skip(1).collect();
    md.push_str(&format!(
        "\n## Command\n\n```sh\ncargo run --release --manifest-path benches/compare/Cargo.toml{} -- {}\n```\n\n",
        if cfg!(feature = "tasklog") { "" } else { " --no-default-features" },
        argv.join(" ")
    ));

    // IMPORTANT: the bulk workloads (W3/W4) run last. They write about 2 GB, which this virtual
    // disk's host keeps flushing for tens of seconds afterwards, slowing every fsync measured in
    // that time; run before the durable workloads they made those numbers 10-20x worse.
    let workloads: [(&str, Option<usize>); 3] =
        [("W1", None), ("W2 T=8", Some(8)), ("W2 T=32", Some(32))];
    let mut durable: Vec<Vec<Outcome>> = workloads
        .iter()
        .map(|_| entries.iter().map(|_| Outcome::default()).collect())
        .collect();
    if !args.sweep_only && !args.bulk_only {
        // NOTE: repetitions are the outer loop, so a slow phase of the shared disk spoils one
        // repetition of everything rather than every repetition of one workload; the median then
        // drops it.
        for rep in 0..reps {
            run.before_rep(&format!("W1/W2 repetition {}", rep + 1));
            for (wi, (name, threads)) in workloads.iter().enumerate() {
                let events = if threads.is_some() {
                    &w2_events
                } else {
                    &w1_events
                };
                for (si, e) in entries.iter().enumerate() {
                    if durable[wi][si].error.is_some() {
                        continue;
                    }
                    let r = run.durable(e, events, *threads);
                    run.log(&format!("{name} #{}", rep + 1), e.label, &r);
                    record(&mut durable[wi][si], r);
                }
            }
        }
    }

    let sweep_reps = args.sweep_reps.max(1);
    let mut series: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    if args.w2_sweep || args.plot.is_some() || args.sweep_only {
        series = entries
            .iter()
            .map(|e| (e.label.to_string(), Vec::new()))
            .collect();
        let mut skip = vec![false; entries.len()];
        let mut per_point: Vec<Vec<Vec<f64>>> =
            vec![vec![Vec::new(); args.sweep_threads.len()]; entries.len()];
        for rep in 0..sweep_reps {
            run.before_rep(&format!("sweep repetition {}", rep + 1));
            for (ti, &t) in args.sweep_threads.iter().enumerate() {
                for (si, e) in entries.iter().enumerate() {
                    if skip[si] {
                        continue;
                    }
                    let r = run.durable(e, &w2_events, Some(t));
                    skip[si] = r.is_err();
                    run.log(&format!("sweep T={t} #{}", rep + 1), e.label, &r);
                    if let Ok(s) = r {
                        per_point[si][ti].push(s.events_per_s);
                    }
                }
            }
        }
        for (si, points) in per_point.into_iter().enumerate() {
            series[si].1 = points.into_iter().map(stats::median).collect();
        }
    }

    if !args.sweep_only {
        let mut w3: Vec<Outcome> = entries.iter().map(|_| Outcome::default()).collect();
        let mut w4: Vec<Outcome> = entries.iter().map(|_| Outcome::default()).collect();
        let mut snaps: Vec<Option<Outcome>> = entries.iter().map(|_| None).collect();
        let mut memory: Vec<(&'static str, &'static str, Result<Memory, String>)> = Vec::new();
        let mut scales: Vec<(&'static str, Result<Scale, String>)> = Vec::new();
        for rep in 0..reps {
            run.before_rep(&format!("W3/W4 repetition {}", rep + 1));
            for (si, e) in entries.iter().enumerate() {
                if w3[si].error.is_some() || w4[si].error.is_some() {
                    continue;
                }
                let b = run.bulk(e, &w3_events, &want, rep == 0);
                run.log(&format!("W3 #{}", rep + 1), e.label, &b.w3);
                run.log(&format!("W4 #{}", rep + 1), e.label, &b.w4);
                record(&mut w3[si], b.w3);
                record(&mut w4[si], b.w4);
                if let Some(r) = b.snap {
                    run.log(&format!("W4 snap #{}", rep + 1), e.label, &r);
                    record(snaps[si].get_or_insert_with(Outcome::default), r);
                }
                for (what, m) in b.memory {
                    match &m {
                        Ok(m) => eprintln!(
                            "memory     {:<28} {what}: VmRSS {} -> {} bytes",
                            e.label, m.rss_before, m.rss_after
                        ),
                        Err(err) => eprintln!("memory     {:<28} {what}: {err}", e.label),
                    }
                    memory.push((e.label, what, m));
                }
                if let Some(sc) = b.scale {
                    match &sc {
                        Ok(sc) => eprintln!("scale      {:<28} {sc:?}", e.label),
                        Err(err) => eprintln!("scale      {:<28} {err}", e.label),
                    }
                    scales.push((e.label, sc));
                }
            }
        }

        let mut all: Vec<(String, Vec<Outcome>)> = workloads
            .into_iter()
            .map(|(n, _)| n.to_string())
            .zip(durable)
            .collect();
        all.push(("W3".into(), w3));
        all.push(("W4".into(), w4));
        let median_of = |o: Outcome| match o.error {
            Some(e) => Err(e),
            None => median_sample(&o.samples).ok_or_else(|| "no run".to_string()),
        };
        let medians: Vec<(String, Vec<Result<Sample, String>>)> = all
            .into_iter()
            .map(|(name, outs)| (name, outs.into_iter().map(median_of).collect()))
            .collect();
        let snap_medians: Vec<Option<Result<Sample, String>>> =
            snaps.into_iter().map(|o| o.map(median_of)).collect();
        md.push_str(&results_section(
            &entries,
            &medians,
            &snap_medians,
            &counts,
            reps,
        ));
        md.push_str(&memory_section(&memory, &counts));
        md.push_str(&scale_section(&scales));
        md.push_str(&targets_section(
            &entries,
            &medians,
            &snap_medians,
            &memory,
            &scales,
        ));
    }

    if !series.is_empty() {
        md.push_str(&sweep_section(
            &series,
            &args.sweep_threads,
            counts.w2,
            sweep_reps,
        ));
        if let Some(path) = &args.plot {
            let title = format!(
                "W2: {} durable appends of 123 B from N writer threads",
                report::thousands(counts.w2 as f64)
            );
            let drawn: Vec<_> = series
                .iter()
                .filter(|(_, ys)| ys.iter().any(Option::is_some))
                .cloned()
                .collect();
            match plot::w2_chart(path, &title, &args.sweep_threads, &drawn) {
                Ok(()) => eprintln!("wrote {}", path.display()),
                Err(e) => {
                    eprintln!("compare: cannot draw {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }

    let total = run.started.elapsed().as_secs_f64();
    md.push_str("## After the run\n\n");
    run.settle();
    md.push_str(&probe_line(run.root.path(), "after the run"));
    md.push_str(&format!(
        "- Whole run (all workloads, repetitions and sweep): {total:.1} s\n"
    ));
    if run.quiet_us > 0.0 {
        md.push_str(&format!(
            "- Waiting for a quiet disk (fdatasync p50 <= {:.0} µs) before each repetition: {:.0} s in all{}\n",
            run.quiet_us,
            run.waited_s,
            if run.gave_up > 0 {
                format!(", gave up {} times and measured a slow disk", run.gave_up)
            } else {
                String::new()
            }
        ));
    }
    eprintln!("total {total:.1}s");
    print!("{md}");
    if let Some(out) = &args.out {
        if let Err(e) = report::write_out(out, &md) {
            eprintln!("compare: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", out.display());
    }
    ExitCode::SUCCESS
}

/// One Markdown bullet with the disk's current write + fdatasync latency.
fn probe_line(dir: &Path, when: &str) -> String {
    match guarded(|| systems::raw::fsync_probe(dir, 300)) {
        Ok((p50, p99)) => {
            eprintln!("fsync probe {when}: p50 {p50:.0} µs, p99 {p99:.0} µs");
            format!(
                "- Disk probe {when}: 128-byte write + fdatasync on a preallocated file, 300 times: \
                 p50 {p50:.0} µs, p99 {p99:.0} µs\n"
            )
        }
        Err(e) => format!("- Disk probe {when} failed: {e}\n"),
    }
}

fn snapshot_label(label: &str) -> String {
    format!("{label} from snapshot")
}

fn results_section(
    entries: &[Entry],
    medians: &[(String, Vec<Result<Sample, String>>)],
    snaps: &[Option<Result<Sample, String>>],
    c: &Counts,
    reps: usize,
) -> String {
    let idx = |label: &str| entries.iter().position(|e| e.label == label);
    let (raw_i, tl_i) = (idx(RAW_LIMIT), idx(TASKLOG_LOG));
    let snap_labels: Vec<String> = entries.iter().map(|e| snapshot_label(e.label)).collect();
    let mut rows = Vec::new();
    for (name, ms) in medians {
        let ev = |i: Option<usize>| i.and_then(|i| ms[i].as_ref().ok()).map(|s| s.events_per_s);
        for (si, e) in entries.iter().enumerate() {
            rows.push(Row {
                workload: name,
                system: e.label,
                result: ms[si].clone(),
                tasklog: ev(tl_i),
                raw: ev(raw_i),
                reps,
            });
        }
        if name == "W4" {
            for (si, snap) in snaps.iter().enumerate() {
                if let Some(r) = snap {
                    rows.push(Row {
                        workload: name,
                        system: &snap_labels[si],
                        result: r.clone(),
                        tasklog: ev(tl_i),
                        raw: ev(raw_i),
                        reps,
                    });
                }
            }
        }
    }
    let mut s = format!(
        "## Results\n\nMedians of {reps} runs. W1: {} events; W2: {} events shared by T threads; W3: {} events \
         ({} tasks); W4: replay of the W3 data (warm page cache). events/s and MiB/s count the 123-byte events \
         (W4: events replayed per second). Latency is per append, from call to durable return. Bytes on disk: \
         the files left after a clean close. Ratios divide events/s by that of tasklog's log layer and of the \
         raw limit (preallocated file; group commit for W2) on the same workload: 0.50× is half as fast \
         (for W4, the inverse ratio of the times). \"from snapshot\": W4 after one `snapshot()` of the same \
         store (bytes on disk: with the snapshot).\n\n",
        report::thousands(c.w1 as f64),
        report::thousands(c.w2 as f64),
        report::thousands(c.w3 as f64),
        report::thousands(c.w3.div_ceil(5) as f64),
    );
    s.push_str(&report::detailed_table(&rows));
    s.push_str(&fsync_section(&rows));
    s.push_str("\n### Summary (events/s; W4 in seconds)\n\n| system | W1 | W2 T=8 | W2 T=32 | W3 | W4 s |\n|---|---:|---:|---:|---:|---:|\n");
    for (si, e) in entries.iter().enumerate() {
        let cell = |wi: usize, secs: bool| match &medians[wi].1[si] {
            Ok(m) if secs => format!("{:.3}", m.secs),
            Ok(m) => report::thousands(m.events_per_s),
            Err(err) if err == NOT_WIRED => "not yet wired".into(),
            Err(_) => "error".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            e.label,
            cell(0, false),
            cell(1, false),
            cell(2, false),
            cell(3, false),
            cell(4, true)
        ));
        if let Some(r) = &snaps[si] {
            s.push_str(&format!(
                "| {} | – | – | – | – | {} |\n",
                snapshot_label(e.label),
                match r {
                    Ok(m) => format!("{:.3}", m.secs),
                    Err(_) => "error".into(),
                }
            ));
        }
    }
    s.push('\n');
    s
}

/// How many events shared each fdatasync, for the systems that count their fdatasyncs.
fn fsync_section(rows: &[Row<'_>]) -> String {
    let counted: Vec<(&Row<'_>, &Sample, f64)> = rows
        .iter()
        .filter_map(|r| {
            let s = r.result.as_ref().ok()?;
            Some((r, s, s.fsyncs?))
        })
        .collect();
    if counted.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "Group commit, from tasklog's own counters (`Wal::stats().fsyncs` during the timed part; medians): \
         how many durable events shared one fdatasync.\n\n\
         | workload | system | events | fdatasyncs | events per fdatasync |\n|---|---|---:|---:|---:|\n",
    );
    for (r, m, n) in counted {
        let events = m.events_per_s * m.secs;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} |\n",
            r.workload,
            r.system,
            report::thousands(events),
            report::thousands(n),
            events / n.max(1.0),
        ));
    }
    s.push('\n');
    s
}

/// Resident memory of tasklog's store after opening the W3 data, measured in a fresh process.
fn memory_section(memory: &[(&str, &str, Result<Memory, String>)], c: &Counts) -> String {
    if memory.is_empty() {
        return String::new();
    }
    let tasks = c.w3.div_ceil(5) as f64;
    let events = c.w3 as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut s = format!(
        "### Memory\n\nResident memory of a fresh process (`compare --rss-open DIR`) that opens the store W3 wrote \
         ({} tasks, {} events, every task's full history kept), from `/proc/self/status` before and after \
         `Store::open`. Per task and per event: the growth of VmRSS divided by the tasks and by the events. \
         RssAnon is heap; RssFile, pages of files mapped at that moment; VmHWM, the peak.\n\n\
         | system | opening | VmRSS before | VmRSS after | growth | bytes per task | bytes per event | RssAnon after | RssFile after | VmHWM | open s |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        report::thousands(tasks),
        report::thousands(events),
    );
    for (label, what, m) in memory {
        match m {
            Ok(m) => {
                let grew = m.rss_after.saturating_sub(m.rss_before);
                s.push_str(&format!(
                    "| {label} | {what} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.3} |\n",
                    mib(m.rss_before),
                    mib(m.rss_after),
                    mib(grew),
                    report::thousands(grew as f64 / tasks),
                    report::thousands(grew as f64 / events),
                    mib(m.anon_after),
                    mib(m.file_after),
                    mib(m.peak),
                    m.open_s,
                ));
            }
            Err(e) => s.push_str(&format!("| {label} | {what} | {e} | | | | | | | | |\n")),
        }
    }
    s.push('\n');
    s
}

/// Disk and history reads of tasklog's store (issue #20), measured once.
fn scale_section(scales: &[(&str, Result<Scale, String>)]) -> String {
    if scales.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "### The store at scale\n\nOn disk (allocated blocks, as `du` shows): a new, empty store \
         after `close()`; the W3 operations written again through `write_batch` with default options \
         (durable batches, background snapshots and their retention), after `close()`, and that per \
         1,000 finished tasks; then opening that store (its newest snapshot and the records after it, \
         warm page cache). `history(id)`: the store W3 wrote, opened from its snapshot, 5,000 ids \
         spread over its tasks, each read once untimed (warm page cache), then timed.\n\n\
         | system | new store | finished tasks | on disk | per 1,000 finished | open with default options | history reads | p50 | p99 | max |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let kib = |b: u64| b as f64 / 1024.0;
    for (label, sc) in scales {
        match sc {
            Ok(sc) => s.push_str(&format!(
                "| {label} | {:.0} KiB | {} | {:.1} MB | {:.2} MB | {:.3} s ({} records replayed) | {} | {:.0} µs | {:.0} µs | {:.0} µs |\n",
                kib(sc.new_store_bytes),
                report::thousands(sc.finished_tasks as f64),
                sc.finished_bytes as f64 / 1e6,
                per_thousand_mb(sc),
                sc.default_open_s,
                report::thousands(sc.default_open_replayed as f64),
                report::thousands(sc.history_reads as f64),
                sc.history_p50_us,
                sc.history_p99_us,
                sc.history_max_us,
            )),
            Err(e) => s.push_str(&format!("| {label} | {e} | | | | | | | | |\n")),
        }
    }
    s.push_str(
        "\n`verify` (what `tasklog verify` runs: every segment, every snapshot read and checked, \
         the replay) on each closed store, beside the open of the same store: the default-options \
         store above, and the store W3 wrote after its snapshot.\n\n\
         | system | store | snapshots | open | verify | verify / open |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for (label, sc) in scales {
        if let Ok(sc) = sc {
            for (store, snapshots, open, verify) in verify_rows(sc) {
                s.push_str(&format!(
                    "| {label} | {store} | {snapshots} | {open:.3} s | {verify:.3} s | {:.1}× |\n",
                    verify / open
                ));
            }
        }
    }
    s.push('\n');
    s
}

/// The verify measurements: store, snapshots checked, open and verify seconds.
fn verify_rows(sc: &Scale) -> [(&'static str, usize, f64, f64); 2] {
    [
        (
            "W3's, after its snapshot",
            sc.snapshot_verify_snapshots,
            sc.snapshot_open_s,
            sc.snapshot_verify_s,
        ),
        (
            "default options",
            sc.default_verify_snapshots,
            sc.default_open_s,
            sc.default_verify_s,
        ),
    ]
}

/// MB on disk per 1,000 finished tasks.
fn per_thousand_mb(sc: &Scale) -> f64 {
    sc.finished_bytes as f64 / 1e6 / (sc.finished_tasks.max(1) as f64 / 1000.0)
}

/// The targets set for tasklog, each checked against this run's medians.
fn targets_section(
    entries: &[Entry],
    medians: &[(String, Vec<Result<Sample, String>>)],
    snaps: &[Option<Result<Sample, String>>],
    memory: &[(&str, &str, Result<Memory, String>)],
    scales: &[(&str, Result<Scale, String>)],
) -> String {
    let idx = |label: &str| entries.iter().position(|e| e.label == label);
    let get = |wi: usize, label: &str| -> Option<Sample> {
        idx(label).and_then(|i| medians.get(wi)?.1[i].as_ref().ok().cloned())
    };
    let snap = idx(TASKLOG_STORE).and_then(|i| snaps[i].as_ref()?.as_ref().ok().cloned());
    let scale = scales
        .iter()
        .find(|(label, _)| *label == TASKLOG_STORE)
        .and_then(|(_, sc)| sc.as_ref().ok());
    let eps = |wi: usize, label: &str| get(wi, label).map(|s| s.events_per_s);
    let secs = |wi: usize, label: &str| get(wi, label).map(|s| s.secs);
    let (w1, w2_8, w2_32, w3, w4) = (0, 1, 2, 3, 4);
    let mut s = String::from(
        "## Targets\n\nEach target set for tasklog, checked against the medians above (ratios within this run).\n\n\
         | workload | target | measured | met |\n|---|---|---|---|\n",
    );
    let mut line = |wl: &str, target: &str, measured: Option<(String, bool)>| {
        let (m, ok) = match measured {
            Some((m, ok)) => (m, if ok { "yes" } else { "**no**" }),
            None => ("not measured".to_string(), "–"),
        };
        s.push_str(&format!("| {wl} | {target} | {m} | {ok} |\n"));
    };
    let thr = |v: f64| report::thousands(v);
    let ratio = |a: Option<f64>, b: Option<f64>, min: f64, an: &str, bn: &str| {
        let (a, b) = (a?, b?);
        let r = a / b;
        Some((
            format!("{r:.2}× ({an} {} / {bn} {} ev/s)", thr(a), thr(b)),
            r >= min,
        ))
    };
    line(
        "W1",
        "log ≥ 0.95× raw preallocated",
        ratio(eps(w1, TASKLOG_LOG), eps(w1, RAW_LIMIT), 0.95, "log", "raw"),
    );
    line(
        "W1",
        "store ≥ 0.9× raw preallocated",
        ratio(
            eps(w1, TASKLOG_STORE),
            eps(w1, RAW_LIMIT),
            0.9,
            "store",
            "raw",
        ),
    );
    line(
        "W2 T=8",
        "log ≥ 1.1× okaywal",
        ratio(
            eps(w2_8, TASKLOG_LOG),
            eps(w2_8, OKAYWAL),
            1.1,
            "log",
            "okaywal",
        ),
    );
    line(
        "W2 T=32",
        "log ≥ 1.25× okaywal",
        ratio(
            eps(w2_32, TASKLOG_LOG),
            eps(w2_32, OKAYWAL),
            1.25,
            "log",
            "okaywal",
        ),
    );
    line(
        "W2 T=32",
        "log ≥ 10× SQLite FULL",
        ratio(
            eps(w2_32, TASKLOG_LOG),
            eps(w2_32, SQLITE),
            10.0,
            "log",
            "SQLite",
        ),
    );
    line(
        "W3",
        "log ≥ 0.6× raw preallocated",
        ratio(eps(w3, TASKLOG_LOG), eps(w3, RAW_LIMIT), 0.6, "log", "raw"),
    );
    line(
        "W3",
        "store > 2,000,000 events/s",
        eps(w3, TASKLOG_STORE).map(|v| (format!("{} ev/s", thr(v)), v > 2e6)),
    );
    let time_ratio = |a: Option<f64>, b: Option<f64>, max: f64, an: &str, bn: &str| {
        let (a, b) = (a?, b?);
        let r = a / b;
        Some((format!("{r:.1}× ({an} {a:.3} s / {bn} {b:.3} s)"), r <= max))
    };
    line(
        "W4",
        "store open ≤ 3× the raw replay time",
        time_ratio(
            secs(w4, TASKLOG_STORE),
            secs(w4, RAW_LIMIT),
            3.0,
            "store",
            "raw",
        ),
    );
    line(
        "W4",
        "(for reference) log open + replay ≤ 3× the raw replay time",
        time_ratio(
            secs(w4, TASKLOG_LOG),
            secs(w4, RAW_LIMIT),
            3.0,
            "log",
            "raw",
        ),
    );
    line(
        "W4",
        "(for reference) store open with default options ≤ 3× the raw replay time",
        scale.and_then(|sc| {
            time_ratio(
                Some(sc.default_open_s),
                secs(w4, RAW_LIMIT),
                3.0,
                "store",
                "raw",
            )
        }),
    );
    line(
        "W4",
        "store open from a snapshot ≥ 3× faster than from the log",
        snap.map(|sn| sn.secs).and_then(|sn| {
            let full = secs(w4, TASKLOG_STORE)?;
            let r = full / sn;
            Some((
                format!("{r:.1}× faster (snapshot {sn:.3} s / log {full:.3} s)"),
                r >= 3.0,
            ))
        }),
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let opened = |what: &str| {
        memory.iter().find_map(|(label, w, m)| {
            (*label == TASKLOG_STORE && *w == what).then(|| m.as_ref().ok().copied())?
        })
    };
    for what in ["opening from the log (W4)", "opening from the snapshot"] {
        line(
            "memory",
            &format!("store resident after {what} ≤ 150 MiB"),
            opened(what).map(|m| {
                (
                    format!("{:.1} MiB (VmRSS)", mib(m.rss_after)),
                    mib(m.rss_after) <= 150.0,
                )
            }),
        );
    }
    line(
        "disk",
        "a new store ≤ 1 MiB",
        scale.map(|sc| {
            (
                format!("{:.0} KiB", sc.new_store_bytes as f64 / 1024.0),
                sc.new_store_bytes <= 1 << 20,
            )
        }),
    );
    line(
        "disk",
        "≤ 1 MB per 1,000 finished tasks, default options",
        scale.map(|sc| {
            let mb = per_thousand_mb(sc);
            (format!("{mb:.2} MB"), mb <= 1.0)
        }),
    );
    for i in 0..2 {
        let row = scale.map(|sc| verify_rows(sc)[i]);
        line(
            "verify",
            &format!(
                "`verify` ≤ 2× the open, {}",
                row.map_or_else(
                    || ["W3's store", "default options"][i].to_string(),
                    |(store, n, _, _)| format!(
                        "{store} ({n} snapshot{})",
                        if n == 1 { "" } else { "s" }
                    )
                )
            ),
            row.map(|(_, _, open, verify)| {
                (
                    format!("{:.1}× ({verify:.3} s / {open:.3} s)", verify / open),
                    verify <= 2.0 * open,
                )
            }),
        );
    }
    line(
        "history",
        "`history(id)` p99 < 1 ms, warm, from a snapshot",
        scale.map(|sc| {
            (
                format!("{:.0} µs", sc.history_p99_us),
                sc.history_p99_us < 1000.0,
            )
        }),
    );
    s.push('\n');
    s
}

fn sweep_section(
    series: &[(String, Vec<Option<f64>>)],
    threads: &[usize],
    events: usize,
    reps: usize,
) -> String {
    let mut s = format!(
        "## W2 sweep\n\n{} durable events shared by N writer threads, events/s, {} per point.\n\n| system |",
        report::thousands(events as f64),
        if reps == 1 {
            "one run".to_string()
        } else {
            format!("median of {reps} runs")
        }
    );
    for t in threads {
        s.push_str(&format!(" N={t} |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(threads.len()));
    s.push('\n');
    for (label, ys) in series {
        s.push_str(&format!("| {label} |"));
        for y in ys {
            s.push_str(&match y {
                Some(v) => format!(" {} |", report::thousands(*v)),
                None => " – |".into(),
            });
        }
        s.push('\n');
    }
    s.push('\n');
    s
}
