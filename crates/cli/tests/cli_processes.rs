//! Commands that involve more than one process or thread: `watch` (live events, holding the
//! write lock), a two-process lock conflict (a second writer exits 4 while `watch` runs, and a
//! second `watch` falls back to a read-only catch-up), `stress` (every `ack <id> <lsn>` line
//! names an event that is in the store afterwards) and `demo` (finishes, says where its store
//! and export are). Child processes are killed by the test when done.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cli_support::{exe, fails, json, ok, submit, tasklog};
use serde_json::{Value, json};

/// A `tasklog watch` child that is killed when dropped.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watcher {
    /// Starts `tasklog --dir d watch <args>` and waits until it holds the store.
    fn start(d: &std::path::Path, args: &[&str]) -> Watcher {
        let mut child = Command::new(exe())
            .arg("--dir")
            .arg(d)
            .arg("watch")
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tasklog watch");
        let stderr = child.stderr.take().unwrap();
        let mut stderr = BufReader::new(stderr);
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.contains("watching"), "watch said {first:?}");
        // Keep draining stderr so the child never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines: rx }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("watch should print a line")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_writer_exits_4_while_watch_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "before", &[]);
    let watcher = Watcher::start(d, &["--from", "1", "--json"]);
    // The catch-up: the submit above, as one JSON object per line.
    let line: Value = serde_json::from_str(&watcher.next_line()).expect("a JSON line");
    assert_eq!(line["kind"], json!("created"));
    assert_eq!(line["task_id"], json!(id));
    assert!(line["lsn"].is_u64());

    let err = fails(d, &["--wait", "0", "submit", "--title", "blocked"], 4);
    assert!(err.contains("locked"), "{err}");
    fails(d, &["--wait", "0", "start", &id], 4);
    // Reads work without the lock.
    assert_eq!(json(d, &["get", &id, "--json"])["state"], json!("pending"));
    // A second watch falls back to a read-only catch-up and says so.
    let out = tasklog(d).args(["watch", "--from", "1"]).assert().success();
    let out = out.get_output();
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked by another process"));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    drop(watcher);
    // Once the watcher is gone the lock is free again.
    ok(d, &["start", &id]);
}

#[test]
fn stress_acks_only_what_is_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = tasklog(d)
        .args([
            "stress",
            "--writers",
            "3",
            "--tasks",
            "30",
            "--events-per-task",
            "5",
            "--payload-bytes",
            "64",
        ])
        .assert()
        .success();
    let out = out.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events/s") && stderr.contains("p99"),
        "{stderr}"
    );
    let acks: Vec<(String, u64)> = stdout
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            assert_eq!(parts.len(), 3, "bad ack line {l:?}");
            assert_eq!(parts[0], "ack");
            (parts[1].to_string(), parts[2].parse().expect("an LSN"))
        })
        .collect();
    assert_eq!(acks.len(), 30 * 5);
    let mut by_task = std::collections::HashMap::<String, Vec<u64>>::new();
    for (id, lsn) in acks {
        by_task.entry(id).or_default().push(lsn);
    }
    assert_eq!(by_task.len(), 30);
    let (id, lsns) = by_task.iter().next().unwrap();
    let h = json(d, &["history", id, "--json"]);
    let in_store: Vec<u64> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(&in_store, lsns, "every acked LSN of {id} is in its history");
    let s = json(d, &["stats", "--json"]);
    assert_eq!(s["total"], json!(30));
    assert_eq!(s["by_state"]["running"], json!(0));
}

#[test]
fn stress_acks_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut child = Command::new(exe())
        .arg("--dir")
        .arg(d)
        .args(["stress", "--writers", "4", "--tasks", "100000"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tasklog stress");
    let mut acks = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acks.len() < 300 {
        let line = lines.next().expect("stress should keep acking").unwrap();
        acks.push(line);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Whatever else the pipe still held was printed before the kill: also acknowledged.
    acks.extend(lines.map_while(Result::ok));
    let mut last_by_task = std::collections::HashMap::<String, u64>::new();
    for line in &acks {
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("ack"), "{line:?}");
        let id = parts.next().unwrap().to_string();
        let lsn: u64 = parts.next().unwrap().parse().unwrap();
        let e = last_by_task.entry(id).or_default();
        *e = (*e).max(lsn);
    }
    let listed = json(d, &["list", "--json"]);
    let in_store: std::collections::HashMap<&str, u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["last_lsn"].as_u64().unwrap()))
        .collect();
    for (id, lsn) in &last_by_task {
        let have = in_store.get(id.as_str()).copied();
        assert!(
            have.is_some_and(|h| h >= *lsn),
            "acked LSN {lsn} of task {id} is not in the store (store has {have:?})"
        );
    }
    ok(d, &["verify"]);
}

#[test]
fn demo_runs_and_says_where_things_are() {
    let tmp = tempfile::tempdir().unwrap();
    // A non-empty default store directory: the demo must use a fresh subdirectory.
    let base = tmp.path().join("tasklog-data");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("keep.txt"), "mine").unwrap();
    let out = cli_support::bare()
        .current_dir(tmp.path())
        .args(["--quiet", "demo"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("fresh subdirectory"), "{stdout}");
    assert!(stdout.contains("tasks interrupted"), "{stdout}");
    let demo_dir = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("demo-")
        })
        .expect("a demo-<timestamp> directory");
    assert_eq!(
        std::fs::read_to_string(base.join("keep.txt")).unwrap(),
        "mine"
    );
    let export = std::fs::read_dir(&demo_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tasks_export_")
        })
        .expect("an export file");
    assert!(stdout.contains(&*export.file_name().unwrap().to_string_lossy()));
    let s = json(&demo_dir, &["stats", "--json"]);
    assert!(s["total"].as_u64().unwrap() >= 30, "{s}");
    // Tasks that fail every attempt end discarded (issue #19), not failed.
    assert!(s["by_state"]["discarded"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["by_state"]["cancelled"].as_u64().unwrap() >= 1, "{s}");
    ok(&demo_dir, &["verify"]);
}
