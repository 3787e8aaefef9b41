//! `demo`: the guided tour from the README. Workers run a realistic mix of tasks (successes,
//! failures with retries, cancellations, checkpoints, outputs) with one progress bar each; then
//! statistics, one task's full history, a crash of a child `tasklog` process and the recovery
//! of its interrupted task on reopen, and an export file. Takes a few seconds.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::ProgressBar;
use serde_json::json;
use tasklog::store::RecoveryReport;
use tasklog::task::OutputKind;
use tasklog::{NewTask, Store, TaskState};

use crate::commands::{Ctx, close, open_write};
use crate::output;

const WORKERS: usize = 4;
const TASKS: usize = 32;

const ROLES: [&str; 4] = ["researcher", "coder", "reviewer", "writer"];
const PROVIDERS: [(&str, &str); 3] = [
    ("anthropic", "claude-sonnet"),
    ("openai", "gpt-4o"),
    ("local", "llama-3-8b"),
];
const TOPICS: [&str; 8] = [
    "summarise the incident report",
    "refactor the billing module",
    "review pull request",
    "draft the release notes",
    "benchmark the parser",
    "translate the user guide",
    "triage flaky tests",
    "migrate the settings schema",
];

/// What happens to a demo task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Succeed,
    FailThenRetry,
    FailForGood,
    CancelRunning,
}

fn plan(i: usize) -> Plan {
    match i % 8 {
        2 | 6 => Plan::FailThenRetry,
        4 => Plan::FailForGood,
        7 => Plan::CancelRunning,
        _ => Plan::Succeed,
    }
}

/// Picks the demo's store directory: the default (or `--dir`) when it is missing or empty,
/// else a fresh `demo-<timestamp>` inside it.
fn demo_dir(base: &Path) -> PathBuf {
    let busy = std::fs::read_dir(base).is_ok_and(|mut d| d.next().is_some());
    if busy {
        let ts = chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f");
        base.join(format!("demo-{ts}"))
    } else {
        base.to_path_buf()
    }
}

/// Runs the tour.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dir = demo_dir(&ctx.dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo store {}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let mut out = std::io::stdout().lock();
    writeln!(out, "== tasklog demo ==")?;
    if ctx.dir.canonicalize().is_ok_and(|d| d == dir) {
        writeln!(out, "store: {} (fresh)", dir.display())?;
    } else {
        writeln!(
            out,
            "store: {} ({} already holds data, so the demo uses a fresh subdirectory)",
            dir.display(),
            ctx.dir.display()
        )?;
    }
    let store = open_write(&dir)?;

    // 1. Work.
    writeln!(
        out,
        "\n-- 1. {WORKERS} workers run {TASKS} tasks (some fail and are retried, some are cancelled)"
    )?;
    out.flush()?;
    let ids = submit_all(&store)?;
    run_workers(ctx, &store, &ids)?;
    let retried = ids
        .iter()
        .enumerate()
        .find(|(i, _)| plan(*i) == Plan::FailThenRetry)
        .map(|(_, id)| id.clone());

    // 2. Statistics.
    writeln!(out, "\n-- 2. statistics (tasklog stats)")?;
    output::stats_block(&mut out, &store.stats(Some("priority"))?)?;

    // 3. One history.
    if let Some(id) = &retried {
        writeln!(
            out,
            "\n-- 3. the audit trail of task {id}, which failed once and was retried (tasklog history {id})"
        )?;
        output::history_table(&mut out, &store.history(id)?)?;
    }

    // 4. A snapshot; 5. a crash and its recovery.
    let snap = store.snapshot()?;
    writeln!(
        out,
        "\n-- 4. snapshot {} written at LSN {} (tasklog snapshot)",
        snap.path.display(),
        snap.lsn
    )?;
    close(store)?;
    let (store, crashed) = crash_and_recover(&mut out, &dir)?;

    // 6. Export.
    let (export, n) = crate::commands::export_to_path(&store, &dir)?;
    writeln!(
        out,
        "\n-- 6. exported {n} task(s) with their history to {} (tasklog export)",
        export.display()
    )?;
    close(store)?;
    epilogue(&mut out, &dir, &export, &crashed, t0)
}

/// Closes with where things are and what to try next.
fn epilogue(
    out: &mut dyn Write,
    dir: &Path,
    export: &Path,
    crashed: &str,
    t0: Instant,
) -> anyhow::Result<()> {
    writeln!(out, "\n== done in {:.1} s ==", t0.elapsed().as_secs_f64())?;
    let d = dir.display();
    writeln!(out, "store:  {d}")?;
    writeln!(out, "export: {}", export.display())?;
    writeln!(
        out,
        "try:    tasklog --dir {d} list --state failed,cancelled"
    )?;
    writeln!(out, "        tasklog --dir {d} get {crashed}")?;
    writeln!(out, "        tasklog --dir {d} history {crashed}")?;
    writeln!(out, "        tasklog --dir {d} stats --by priority")?;
    writeln!(out, "        tasklog --dir {d} verify")?;
    writeln!(out, "        tasklog --dir {d} watch --from 1")?;
    Ok(())
}

/// Kills a child `tasklog` in the middle of a task, reopens the store and shows the recovery;
/// then resumes the interrupted task from its checkpoint. Returns the reopened store and the
/// task's id.
fn crash_and_recover(out: &mut dyn Write, dir: &Path) -> anyhow::Result<(Store, String)> {
    writeln!(
        out,
        "\n-- 5. crash: a child `tasklog` process starts a long task, checkpoints it, and is killed (SIGKILL)"
    )?;
    let crashed = crash_child_run(dir)?;
    writeln!(out, "child killed while task {crashed} was running")?;
    let store = open_write(dir)?;
    writeln!(out, "reopened the store; recovery report:")?;
    recovery_block(out, store.recovery_report())?;
    let task = store.get(&crashed)?;
    writeln!(
        out,
        "task {crashed} is now {} ({}); its checkpoint {} survived",
        task.state,
        task.last_error.as_deref().unwrap_or("-"),
        task.checkpoint.as_ref().map_or("-", |c| c.name.as_str())
    )?;
    if task.state == TaskState::Failed {
        resume(&store, &crashed)?;
        writeln!(
            out,
            "retried it and resumed from the checkpoint: now {}",
            store.get(&crashed)?.state
        )?;
    }
    Ok((store, crashed))
}

fn submit_all(store: &Store) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let (provider, model) = PROVIDERS[i % PROVIDERS.len()];
        let topic = TOPICS[i % TOPICS.len()];
        let new = NewTask::new(format!("{topic} #{i}"))
            .description(format!("demo task {i}: {topic}"))
            .role(ROLES[i % ROLES.len()])
            .provider(provider)
            .model(model)
            .tag("demo")
            .tag(if i % 2 == 0 { "batch-a" } else { "batch-b" })
            .meta("priority", json!(["low", "normal", "high"][i % 3]))
            .meta("estimate_s", json!(1 + i % 5));
        ids.push(store.submit(new)?.id);
    }
    Ok(ids)
}

fn run_workers(ctx: &Ctx, store: &Store, ids: &[String]) -> anyhow::Result<()> {
    let multi = ctx.ui.multi();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let mine: Vec<(usize, &String)> =
                    ids.iter().enumerate().skip(w).step_by(WORKERS).collect();
                let bar = multi.add(ctx.ui.bar(mine.len() as u64, &format!("worker-{w}")));
                s.spawn(move || {
                    for (i, id) in mine {
                        bar.set_message(format!("{id} {:?}", plan(i)));
                        work(store, w, i, id, &bar)?;
                        bar.inc(1);
                    }
                    bar.finish_with_message("done");
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a demo worker panicked")))
            })
            .collect()
    });
    let _ = multi.clear();
    results.into_iter().collect()
}

fn pause(i: usize) {
    std::thread::sleep(Duration::from_millis(40 + (i as u64 * 7) % 60));
}

/// Runs one task to its planned end.
fn work(store: &Store, w: usize, i: usize, id: &str, bar: &ProgressBar) -> anyhow::Result<()> {
    let p = plan(i);
    attempt(store, w, i, id, p == Plan::CancelRunning)?;
    match p {
        Plan::Succeed => finish(store, id, i)?,
        Plan::CancelRunning => {
            store.cancel(id, Some("superseded by a newer request"))?;
        }
        Plan::FailForGood => {
            store.fail(id, "provider returned 400: context length exceeded")?;
        }
        Plan::FailThenRetry => {
            store.fail(id, "provider timed out after 30 s")?;
            bar.set_message(format!("{id} retrying"));
            store.retry(id)?;
            attempt(store, w, i, id, false)?;
            finish(store, id, i)?;
        }
    }
    Ok(())
}

/// Starts the task and runs its steps; stops half-way when `halfway`.
fn attempt(store: &Store, w: usize, i: usize, id: &str, halfway: bool) -> anyhow::Result<()> {
    store.start(id)?;
    store.output(
        id,
        OutputKind::Log,
        &format!("worker-{w} picked up task {i}"),
    )?;
    for (n, step) in ["prepare", "execute", "verify"].iter().enumerate() {
        pause(i + n);
        let pct = u8::try_from((n + 1) * 30).unwrap_or(90);
        store.progress(id, pct, Some(step), Some(&format!("{step} step done")))?;
        if n == 0 {
            store.checkpoint(id, step, json!({ "step": n + 1, "worker": w }))?;
        }
        if halfway && n == 1 {
            return Ok(());
        }
    }
    Ok(())
}

fn finish(store: &Store, id: &str, i: usize) -> anyhow::Result<()> {
    if i.is_multiple_of(3) {
        store.output(id, OutputKind::Artifact, &format!("reports/task-{i}.md"))?;
    }
    if i % 4 == 1 {
        store.output(id, OutputKind::Commit, &format!("{:07x}", i * 0x1f3d5b7))?;
    }
    store.complete(id, Some(json!({ "ok": true, "tokens": 1200 + i * 37 })))?;
    Ok(())
}

/// After a crash marked the task failed: retry and resume from the checkpoint.
fn resume(store: &Store, id: &str) -> anyhow::Result<()> {
    let from = store.get(id)?.checkpoint.map(|c| c.data);
    store.retry(id)?;
    store.start(id)?;
    store.progress(id, 100, Some("import"), Some("resumed from the checkpoint"))?;
    store.complete(id, Some(json!({ "resumed_from": from })))?;
    Ok(())
}

/// Spawns `tasklog demo-crash-child`, waits until its task is running and checkpointed, lets it
/// work a little, then kills it. Returns the task id.
fn crash_child_run(dir: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the tasklog executable")?;
    let mut child = Command::new(exe)
        .arg("--dir")
        .arg(dir)
        .arg("--quiet")
        .arg("demo-crash-child")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the crash-demo child process")?;
    let stdout = child.stdout.take().context("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(id) = line.trim().strip_prefix("ready ").map(str::to_string) else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the crash-demo child did not start (said {line:?})");
    };
    std::thread::sleep(Duration::from_millis(300));
    child.kill().context("cannot kill the crash-demo child")?;
    child.wait()?;
    Ok(id)
}

/// The child: starts a long task, checkpoints it, says `ready <id>`, then reports progress
/// until it is killed.
pub fn crash_child(ctx: &Ctx) -> anyhow::Result<()> {
    let store = open_write(&ctx.dir)?;
    let new = NewTask::new("nightly import of 10,000 rows (crash demo)")
        .role("coder")
        .provider("local")
        .tag("demo")
        .tag("crash");
    let id = store.submit(new)?.id;
    store.start(&id)?;
    store.progress(&id, 30, Some("import"), Some("3,000 rows imported"))?;
    store.checkpoint(&id, "rows-3000", json!({ "rows_done": 3000 }))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {id}")?;
    out.flush()?;
    for pct in (31..99).cycle() {
        store.progress(&id, pct, Some("import"), Some("importing"))?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn recovery_block(out: &mut dyn Write, r: &RecoveryReport) -> std::io::Result<()> {
    let snap = r.snapshot_used.as_ref().map_or("none".to_string(), |p| {
        format!("{} (LSN {})", p.display(), r.snapshot_lsn)
    });
    writeln!(out, "  snapshot used:     {snap}")?;
    writeln!(out, "  events replayed:   {}", r.events_replayed)?;
    writeln!(out, "  torn bytes cut:    {}", r.torn_bytes_cut)?;
    if let Some((f, o)) = &r.torn_at {
        writeln!(out, "  torn tail at:      {} offset {o}", f.display())?;
    }
    writeln!(
        out,
        "  tasks interrupted: {} ({})",
        if r.tasks_interrupted.is_empty() {
            "none".to_string()
        } else {
            r.tasks_interrupted.join(", ")
        },
        r.interrupted_policy
    )?;
    writeln!(out, "  tasks:             {}", r.tasks)?;
    writeln!(out, "  open took:         {:.1} ms", r.duration_ms)?;
    Ok(())
}
