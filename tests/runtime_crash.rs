//! Goal: prove that the runtime (issue #9) survives real process crashes: every task reaches a
//! final state, every checkpoint acknowledged to a handler before a kill is still in the store,
//! a resumed handler is handed the last checkpoint and carries on from it, and no two attempts
//! of one task ever run at the same time.
//!
//! Method: the test binary re-runs itself as a child process (`child_entry`, inert unless
//! `TASKLOG_RT_CHILD_DIR` is set). The child opens a runtime with 4 workers, submits the tasks
//! (idempotently, by request id) and runs handlers that walk through steps, checkpointing each
//! and logging `start`/`ckpt`/`end` lines to an fsynced side file after each acknowledged
//! write. The parent kills the child with SIGKILL at seeded-random moments (after the child
//! has started writing, so every kill lands on running work), restarts it, and
//! finally lets one child run to the end (10 cycles; `TASKLOG_SOAK_CYCLES` for more). The side
//! file and the store's histories are then checked against each other.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tasklog::runtime::{Kind, Recovery, Runtime, RuntimeOptions, TaskContext};
use tasklog::store::{Filter, StoreOptions};
use tasklog::{NewTask, Store, TaskState};

/// Tasks in a CI run; a soak run (more cycles) gets more work so the kills keep landing on it.
const TASKS: usize = 24;
const TASKS_ENV: &str = "TASKLOG_RT_TASKS";
const STEPS: u64 = 30;
const CHILD_ENV: &str = "TASKLOG_RT_CHILD_DIR";

fn store_dir(dir: &Path) -> PathBuf {
    dir.join("store")
}

fn side_path(dir: &Path) -> PathBuf {
    dir.join("side.log")
}

/// Appends one line to the side file and makes it durable before going on.
fn side_line(file: &Mutex<File>, line: String) {
    let mut f = file.lock().unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
    f.sync_data().unwrap();
}

#[test]
#[ignore = "the child process of runtime_survives_repeated_sigkill; inert without TASKLOG_RT_CHILD_DIR"]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let tasks: usize = std::env::var(TASKS_ENV).unwrap().parse().unwrap();
    let pid = std::process::id();
    let side = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(side_path(&dir))
            .unwrap(),
    ));
    let mut rt = Runtime::open(
        store_dir(&dir),
        StoreOptions::new(),
        RuntimeOptions {
            workers: 4,
            lease_ms: 2000,
            heartbeat_ms: 500,
            supervise_ms: 200,
            owner: format!("child-{pid}"),
        },
    )
    .unwrap();
    let s = side.clone();
    rt.register(
        "walk",
        Kind::new(move |ctx: &TaskContext, _| {
            let resumed = ctx
                .resume_from()
                .map(|c| c.data["step"].as_u64().expect("step in checkpoint"));
            side_line(
                &s,
                format!(
                    "start {} {} {pid} {} {}",
                    ctx.id(),
                    ctx.attempt(),
                    ctx.task().last_lsn,
                    resumed.map_or(-1, |r| r as i64)
                ),
            );
            let first = resumed.map_or(0, |r| r + 1);
            for step in first..STEPS {
                ctx.checkpoint("step", json!({ "step": step }))
                    .map_err(|e| e.to_string())?;
                side_line(&s, format!("ckpt {} {pid} {step}", ctx.id()));
                std::thread::sleep(Duration::from_millis(2 + fastrand::u64(..6)));
            }
            side_line(&s, format!("end {} {} {pid}", ctx.id(), ctx.attempt()));
            Ok(json!({ "steps": STEPS }))
        })
        .recovery(Recovery::Resume),
    );
    rt.start().unwrap();
    for i in 0..tasks {
        rt.submit_task(
            "walk",
            NewTask::new(format!("walk {i}")).request_id(format!("walk-{i}")),
            json!(null),
            (i % 3) as u8,
        )
        .unwrap();
    }
    let store = rt.store().clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = store
            .count(&Filter {
                states: vec![
                    TaskState::Completed,
                    TaskState::Failed,
                    TaskState::Discarded,
                    TaskState::Cancelled,
                ],
                ..Filter::default()
            })
            .unwrap();
        if done == tasks {
            break;
        }
        assert!(Instant::now() < deadline, "child: work did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.shutdown(Duration::from_secs(5)).unwrap();
}

fn spawn_child(dir: &Path, tasks: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(TASKS_ENV, tasks.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[derive(Debug)]
enum Line {
    Start {
        id: String,
        pid: u32,
        claim_lsn: u64,
        resumed: Option<u64>,
    },
    Ckpt {
        id: String,
        step: u64,
    },
    End {
        id: String,
        pid: u32,
    },
}

fn parse(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        let parsed = match w.as_slice() {
            ["start", id, _attempt, pid, lsn, resumed] => (|| {
                Some(Line::Start {
                    id: id.to_string(),
                    pid: pid.parse().ok()?,
                    claim_lsn: lsn.parse().ok()?,
                    resumed: match resumed.parse::<i64>().ok()? {
                        -1 => None,
                        r => Some(r as u64),
                    },
                })
            })(),
            ["ckpt", id, _pid, step] => step.parse().ok().map(|step| Line::Ckpt {
                id: id.to_string(),
                step,
            }),
            ["end", id, _attempt, pid] => pid.parse().ok().map(|pid| Line::End {
                id: id.to_string(),
                pid,
            }),
            _ => None,
        };
        // A kill can only cut the line being written, which is then incomplete.
        match parsed {
            Some(l) => out.push(l),
            None => assert!(
                !text.ends_with(&format!("{line}\n")) || line.is_empty(),
                "unparsable complete line {line:?}"
            ),
        }
    }
    out
}

#[test]
fn runtime_survives_repeated_sigkill() {
    let cycles: usize = std::env::var("TASKLOG_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("TASKLOG_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261122);
    let n_tasks = TASKS.max(cycles * 3);
    eprintln!("runtime_crash: {cycles} cycles, {n_tasks} tasks, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut killed_running = 0;
    let side_len = || std::fs::metadata(side_path(dir)).map_or(0, |m| m.len());
    for _ in 0..cycles {
        let before = side_len();
        let mut child = spawn_child(dir, n_tasks);
        // Let the child get to work (however slow the machine is to start it), then kill it at
        // a random moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        while side_len() == before
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            break; // all work done already
        }
    }
    // The last child runs to the end.
    let mut child = spawn_child(dir, n_tasks);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the final child hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "final child failed: {status:?}\n{err}");
    assert!(killed_running > 0, "no child was killed while running");

    let store = Store::open(store_dir(dir)).unwrap();
    let tasks = store.all_tasks().unwrap();
    assert_eq!(tasks.len(), n_tasks);
    let mut interrupted = 0;
    let mut checkpoints: HashMap<String, Vec<(u64, u64)>> = HashMap::new(); // id -> (lsn, step)
    let mut started: HashMap<String, Vec<u64>> = HashMap::new(); // id -> started lsns
    for t in &tasks {
        assert_eq!(t.state, TaskState::Completed, "{} ended {}", t.id, t.state);
        assert_eq!(t.result.as_deref(), Some(&json!({ "steps": STEPS })));
        let h = store.history(&t.id).unwrap();
        // Split the history into runs at each `started`: within a run, checkpoint steps go up
        // by one; a run resumes right after the last checkpoint before it.
        let mut last_step: Option<u64> = None;
        let mut in_run_last: Option<u64> = None;
        for e in &h {
            match e.kind {
                "started" => {
                    in_run_last = None;
                    started.entry(t.id.clone()).or_default().push(e.lsn);
                }
                "interrupted" => interrupted += 1,
                "checkpoint" => {
                    let step = e.details["data"]["step"].as_u64().unwrap();
                    let want = match in_run_last {
                        Some(prev) => prev + 1,
                        None => last_step.map_or(0, |s| s + 1),
                    };
                    assert_eq!(step, want, "{}: checkpoint order in {h:#?}", t.id);
                    in_run_last = Some(step);
                    last_step = Some(step);
                    checkpoints
                        .entry(t.id.clone())
                        .or_default()
                        .push((e.lsn, step));
                }
                _ => {}
            }
        }
        assert_eq!(last_step, Some(STEPS - 1), "{}: every step done", t.id);
    }
    assert!(interrupted > 0, "the kills must have interrupted some work");

    let text = std::fs::read_to_string(side_path(dir)).unwrap();
    let lines = parse(&text);
    let mut open: BTreeMap<(u32, String), usize> = BTreeMap::new();
    let mut acknowledged = 0;
    let mut resumed_runs = 0;
    for l in &lines {
        match l {
            Line::Ckpt { id, step } => {
                // Acknowledged to the handler, so it must have survived every crash.
                acknowledged += 1;
                assert!(
                    checkpoints[id].iter().any(|(_, s)| s == step),
                    "{id}: acknowledged checkpoint {step} lost"
                );
            }
            Line::Start {
                id,
                pid,
                claim_lsn,
                resumed,
            } => {
                // The handler was handed the last checkpoint before its claim.
                assert!(
                    started[id].contains(claim_lsn),
                    "{id}: no started event at LSN {claim_lsn}"
                );
                let last_before = checkpoints
                    .get(id)
                    .and_then(|c| c.iter().rev().find(|(lsn, _)| lsn < claim_lsn))
                    .map(|(_, s)| *s);
                assert_eq!(
                    *resumed, last_before,
                    "{id}: resumed from the wrong checkpoint"
                );
                if resumed.is_some() {
                    resumed_runs += 1;
                }
                let n = open.entry((*pid, id.clone())).or_default();
                *n += 1;
                assert_eq!(*n, 1, "{id}: two runs at once in process {pid}");
            }
            Line::End { id, pid } => {
                let n = open.entry((*pid, id.clone())).or_default();
                assert_eq!(*n, 1, "{id}: end without start in process {pid}");
                *n = 0;
            }
        }
    }
    // (A kill between a checkpoint's acknowledgement and its side-file line loses the line,
    // not the checkpoint, so there may be fewer lines than steps.)
    assert!(acknowledged > 0);
    eprintln!(
        "runtime_crash: {killed_running} kills, {interrupted} interrupted runs, {resumed_runs} resumed from a checkpoint, {acknowledged} acknowledged checkpoints"
    );
    assert!(
        resumed_runs > 0,
        "some run must have resumed from a checkpoint"
    );

    // The recovery figures after all those SIGKILLs, from the store alone, equal a recount of
    // the histories: each interruption is one `resume` recovery (the kind's strategy), and
    // each interrupted task completed after its last one. The library's runtime health and
    // `health_from_store` (what `tasklog stats` prints) give the same count.
    let mut recount = 0u64;
    let mut recovered_tasks = 0u64;
    for t in &tasks {
        let n = store
            .history(&t.id)
            .unwrap()
            .iter()
            .filter(|e| e.kind == "interrupted")
            .count() as u64;
        recount += n;
        recovered_tasks += u64::from(n > 0);
    }
    let want: BTreeMap<String, u64> = [("resume".to_string(), recount)].into();
    let f = tasklog::runtime::recovery_figures(&store, tasklog::task::Timestamp::now()).unwrap();
    assert_eq!(f.recovered_by_strategy, want);
    assert_eq!(f.total_recovery_attempts_24h, recount);
    assert_eq!(f.successful_recoveries_24h, recovered_tasks);
    assert_eq!(f.stuck_task_count + f.orphaned_task_count, 0);
    let stats = tasklog::runtime::health_from_store(&store).unwrap();
    assert_eq!(stats.recovered, want);
    store.close().unwrap();
    drop(store);
    let rt = Runtime::open(
        store_dir(dir),
        StoreOptions::new(),
        RuntimeOptions::default(),
    )
    .unwrap();
    assert_eq!(
        rt.health().recovered,
        want,
        "a fresh runtime sees the past recoveries"
    );
    rt.shutdown(Duration::from_secs(5)).unwrap();
}
