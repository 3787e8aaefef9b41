//! Waiting for the lock (issue #17): a command that writes queues behind another writer for up
//! to `--wait SECS` (default 5) instead of failing at once, and when it gives up it names the
//! process holding the store and since when.
//!
//! Seed 004's own test is the proof of the queueing: 5 processes adding 10 tasks each, started
//! together, must end with exactly 50 tasks; run directly (each command takes the lock in turn)
//! and through a running server (which holds the lock; the commands talk to it).

#[macro_use]
mod cli_support;

use std::process::Stdio;
use std::time::Duration;

use cli_support::{bare, json, tasklog};
use serde_json::Value;

both_ways!(five_processes_adding_ten_tasks_each_end_with_fifty);

fn five_processes_adding_ten_tasks_each_end_with_fifty() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path().to_path_buf();
    // Creates the store (and, through a server, starts it) before the race begins.
    tasklog(&d)
        .args(["submit", "--title", "before the race"])
        .assert()
        .success();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
    let workers: Vec<_> = (0..5)
        .map(|p| {
            let d = d.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..10 {
                    let out = spawnable(&d)
                        .args(["--wait", "60", "submit", "--title"])
                        .arg(format!("process {p} task {i}"))
                        .stdin(Stdio::null())
                        .output()
                        .expect("run tasklog submit");
                    assert!(
                        out.status.success(),
                        "process {p} task {i}: {:?} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a submitting thread");
    }
    let stats: Value = json(&d, &["stats", "--json"]);
    // The 50 of the race, and the one before it.
    assert_eq!(stats["total"], 51, "{stats}");
    assert_eq!(stats["by_state"]["pending"], 51, "{stats}");
}

/// `tasklog --dir d` as a plain process (to spawn it), with the environment cleared as
/// `bare()` clears it.
fn spawnable(d: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(cli_support::exe());
    c.env_remove("TASKLOG_DIR")
        .env_remove("TASKLOG_REMOTE")
        .env_remove("TASKLOG_TOKEN")
        .env_remove("TASKLOG_WAIT")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .arg("--dir")
        .arg(d);
    c
}

/// A `tasklog watch` child: it holds the store's write lock while it runs. Killed on drop.
struct Holder(std::process::Child);

impl Holder {
    fn start(d: &std::path::Path) -> Holder {
        use std::io::{BufRead, BufReader};
        cli_support::ok(d, &["submit", "--title", "first"]);
        let mut child = spawnable(d)
            .arg("watch")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tasklog watch");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        stderr.read_line(&mut first).expect("watch's first line");
        assert!(first.contains("watching"), "watch said {first:?}");
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A writer refused after waiting says who holds the store, since when, and how long it
/// waited; `--wait 0` refuses at once.
#[test]
fn a_writer_refused_after_waiting_names_the_holder_and_the_wait() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let holder = Holder::start(d);
    let pid = holder.0.id();

    let started = std::time::Instant::now();
    let out = bare()
        .arg("--dir")
        .arg(d)
        .args(["--wait", "0.4", "submit", "--title", "queued"])
        .output()
        .expect("run tasklog submit");
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked by another writer"), "{err}");
    assert!(err.contains(&format!("process {pid} since ")), "{err}");
    assert!(err.contains("after waiting 0.4 s"), "{err}");
    assert!(err.contains("--wait"), "{err}");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");

    let out = bare()
        .arg("--dir")
        .arg(d)
        .args(["--wait", "0", "submit", "--title", "at once"])
        .output()
        .expect("run tasklog submit");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("after waiting"), "{err}");
    drop(holder);
}

/// A writer that waits starts as soon as the holder lets go: a `submit` queued behind a
/// running `watch` succeeds once the watch is stopped within its wait.
#[test]
fn a_waiting_writer_starts_once_the_holder_is_gone() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let holder = Holder::start(d);
    let waiter = spawnable(d)
        .args(["--wait", "60", "submit", "--title", "queued"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tasklog submit");
    std::thread::sleep(Duration::from_millis(300));
    drop(holder);
    let out = waiter.wait_with_output().expect("submit ends");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(d, &["stats", "--json"])["total"], 2);
}

#[test]
fn bad_wait_values_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for bad in ["-1", "abc", "100000", "NaN"] {
        let out = bare()
            .arg("--dir")
            .arg(tmp.path())
            .arg(format!("--wait={bad}"))
            .arg("stats")
            .output()
            .expect("run tasklog");
        assert_eq!(out.status.code(), Some(2), "--wait {bad}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--wait"), "--wait {bad}: {err}");
    }
}
