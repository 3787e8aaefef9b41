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
use std::sync::Arc;
use tasklog::store::RecoveryReport;

use serde_json::Value;
use tasklog::runtime::{Kind, RetryPolicy, Runtime, RuntimeOptions, TaskContext};
use tasklog::task::OutputKind;
use tasklog::{NewTask, Store, TaskState};

use crate::commands::{Ctx, close, open_owner};
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

impl Plan {
    /// What the plan is, in the words shown next to a progress bar.
    fn words(self) -> &'static str {
        match self {
            Plan::Succeed => "will succeed",
            Plan::FailThenRetry => "fails once, then succeeds on retry",
            Plan::FailForGood => "fails every attempt (then discarded)",
            Plan::CancelRunning => "gets cancelled while running",
        }
    }
}

/// The store's interrupted-work policy (the recovery report names it as the library's enum
/// does, `MarkFailed`) in plain words.
fn policy_words(policy: &str) -> &str {
    match policy {
        "MarkFailed" | "mark_failed" => "marked failed",
        "Requeue" | "requeue" => "requeued",
        "Leave" | "leave" => "left as they were",
        other => other,
    }
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
    let store = open_owner(&dir)?;

    // 1. Work.
    writeln!(
        out,
        "\n-- 1. {WORKERS} workers run {TASKS} tasks (some fail and are retried, some are cancelled)"
    )?;
    out.flush()?;
    let ids = run_with_runtime(ctx, &store)?;
    work_summary(&mut out, &store, &ids)?;
    let retried = ids
        .iter()
        .enumerate()
        .find(|(i, _)| plan(*i) == Plan::FailThenRetry)
        .map(|(_, id)| id.clone());

    // 2. Statistics.
    writeln!(out, "\n-- 2. statistics (tasklog stats)")?;
    output::stats_block(
        &mut out,
        &output::stats_view(&store.stats(Some("priority"))?)?,
    )?;

    // 3. One history.
    if let Some(id) = &retried {
        writeln!(
            out,
            "\n-- 3. the audit trail of task {id}, which failed once and was retried (tasklog history {id})"
        )?;
        output::history_table(&mut out, &output::history_rows(&store.history(id)?)?)?;
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
        "try:    tasklog --dir {d} list --state failed,discarded,cancelled"
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
    let store = open_owner(dir)?;
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

fn submit_all(rt: &Runtime) -> anyhow::Result<Vec<String>> {
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
        let priority = u8::try_from(i % 3 * 4).unwrap_or(0);
        ids.push(rt.submit_task("demo", new, json!({ "i": i }), priority)?.id);
    }
    Ok(ids)
}

/// Runs the demo tasks through the worker runtime: one handler kind, `WORKERS` worker threads
/// claiming tasks under leases, progress and checkpoints through the task context, failures
/// retried by the kind's policy, and cancellation of running tasks through the runtime.
fn run_with_runtime(ctx: &Ctx, store: &Store) -> anyhow::Result<Vec<String>> {
    let multi = ctx.ui.multi();
    let bars: Arc<Vec<ProgressBar>> = Arc::new(
        (0..WORKERS)
            .map(|w| multi.add(ctx.ui.bar(0, &format!("worker-{w}"))))
            .collect(),
    );
    let options = RuntimeOptions {
        workers: WORKERS,
        lease_ms: 10_000,
        heartbeat_ms: 2_000,
        supervise_ms: 500,
        ..RuntimeOptions::default()
    };
    let mut rt = Runtime::new(store.clone(), options);
    let handler_bars = bars.clone();
    let retry = RetryPolicy {
        max_attempts: 2,
        backoff_base_ms: 50,
        backoff_max_ms: 200,
        jitter: 0.2,
    };
    rt.register(
        "demo",
        Kind::from_handler(move |c: &TaskContext, input: Value| {
            demo_handler(c, &input, &handler_bars)
        })
        .retry(retry),
    );
    rt.start()?;
    let ids = submit_all(&rt)?;
    for (_, id) in ids
        .iter()
        .enumerate()
        .filter(|(i, _)| plan(*i) == Plan::CancelRunning)
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.get(id)?.state == TaskState::Pending && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        rt.cancel(id)?;
    }
    if !rt.wait_idle(Duration::from_secs(50)) {
        bail!("the demo's workers did not finish in time");
    }
    // NOTE: cleared, not finished with a message: a finished spinner stays on the terminal as
    // a stale line above the next step's output. What step 1 did is printed as text instead
    // (see `work_summary`), so it reads the same in a terminal and in a log file.
    for b in bars.iter() {
        b.finish_and_clear();
    }
    // Dropping the runtime stops its threads; the store stays open for the rest of the demo.
    drop(rt);
    let _ = multi.clear();
    Ok(ids)
}

/// Step 1's outcome as plain lines (stdout), whether or not progress bars were drawn.
fn work_summary(out: &mut dyn Write, store: &Store, ids: &[String]) -> anyhow::Result<()> {
    let mut by_state: std::collections::BTreeMap<TaskState, usize> = Default::default();
    let mut attempts = 0u64;
    for id in ids {
        let t = store.get(id)?;
        *by_state.entry(t.state).or_default() += 1;
        attempts += u64::from(t.attempt);
    }
    let count = |s: TaskState| by_state.get(&s).copied().unwrap_or(0);
    writeln!(
        out,
        "{} tasks ran in {attempts} attempts: {} completed (some on their second attempt), \
         {} discarded (failed on both attempts the retry policy allows), {} cancelled while running",
        ids.len(),
        count(TaskState::Completed),
        count(TaskState::Discarded),
        count(TaskState::Cancelled),
    )?;
    let others = ids.len()
        - count(TaskState::Completed)
        - count(TaskState::Discarded)
        - count(TaskState::Cancelled);
    if others > 0 {
        writeln!(out, "{others} task(s) ended otherwise (see `tasklog list`)")?;
    }
    Ok(())
}

fn pause_ms(i: usize) -> u64 {
    40 + (i as u64 * 7) % 60
}

/// One demo task, run by a runtime worker.
fn demo_handler(c: &TaskContext, input: &Value, bars: &[ProgressBar]) -> Result<Value, String> {
    let i = input["i"].as_u64().unwrap_or(0) as usize;
    let w = std::thread::current()
        .name()
        .and_then(|n| n.strip_prefix("tasklog-worker-"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let bar = bars.get(w % bars.len().max(1));
    if let Some(b) = bar {
        b.set_message(format!(
            "task {i}: {} (attempt {})",
            plan(i).words(),
            c.attempt()
        ));
    }
    let e = |e: tasklog::Error| e.to_string();
    c.output(OutputKind::Log, &format!("worker-{w} picked up task {i}"))
        .map_err(e)?;
    for (n, step) in ["prepare", "execute", "verify"].iter().enumerate() {
        if c.wait_cancelled(Duration::from_millis(pause_ms(i + n))) {
            return Err("cancelled".into());
        }
        let pct = u8::try_from((n + 1) * 30).unwrap_or(90);
        c.progress(pct, Some(step), Some(&format!("{step} step done")))
            .map_err(e)?;
        if n == 0 {
            c.checkpoint(step, json!({ "step": n + 1, "worker": w }))
                .map_err(e)?;
        }
        if n == 1 && plan(i) == Plan::CancelRunning {
            // The demo cancels this one while it runs; the runtime records it as cancelled.
            c.wait_cancelled(Duration::from_secs(30));
            return Err("cancelled".into());
        }
    }
    match plan(i) {
        Plan::FailThenRetry if c.attempt() == 1 => {
            return Err("provider timed out after 30 s".into());
        }
        Plan::FailForGood => return Err("provider returned 400: context length exceeded".into()),
        _ => {}
    }
    if i.is_multiple_of(3) {
        c.output(OutputKind::Artifact, &format!("reports/task-{i}.md"))
            .map_err(e)?;
    }
    if i % 4 == 1 {
        c.output(OutputKind::Commit, &format!("{:07x}", i * 0x1f3d5b7))
            .map_err(e)?;
    }
    if let Some(b) = bar {
        b.inc(1);
    }
    Ok(json!({ "ok": true, "tokens": 1200 + i * 37 }))
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
    let store = open_owner(&ctx.dir)?;
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
        policy_words(&r.interrupted_policy)
    )?;
    writeln!(out, "  tasks:             {}", r.tasks)?;
    writeln!(out, "  open took:         {:.1} ms", r.duration_ms)?;
    Ok(())
}
