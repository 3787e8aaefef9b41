//! Kill loop: the real `tasklog stress` binary runs as a child process and is killed with
//! SIGKILL at a random moment, again and again on the same store. Every `ack <task> <lsn>` line
//! it printed (it prints one only after the append was acknowledged as durable) must be in the
//! store afterwards — after that cycle's reopen and after every later one. 50 cycles in CI;
//! `TASKLOG_KILL_CYCLES=n` for long soaks, `TASKLOG_KILL_SEED=n` to vary the kill moments.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tasklog::store::StoreOptions;

fn run_cycle(dir: &std::path::Path, kill_after: Duration, acks: &mut BTreeMap<u64, String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .args(["--quiet", "--dir"])
        .arg(dir)
        .args([
            "stress",
            "--writers",
            "4",
            "--tasks",
            "100000",
            "--events-per-task",
            "5",
            "--payload-bytes",
            "64",
            // Every cycle writes into the store the previous ones left.
            "--force",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tasklog stress");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        lines
    });
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Everything the child wrote to the pipe before it died was acknowledged first.
    for line in reader.join().expect("reader") {
        let mut parts = line.split_whitespace();
        if let (Some("ack"), Some(task), Some(lsn)) = (parts.next(), parts.next(), parts.next()) {
            let lsn: u64 = lsn.parse().expect("an LSN");
            if let Some(other) = acks.insert(lsn, task.to_string()) {
                assert_eq!(other, task, "LSN {lsn} acknowledged for two tasks");
            }
        }
    }
}

fn check_all_present(dir: &std::path::Path, acks: &BTreeMap<u64, String>, cycle: u64) {
    let store = StoreOptions::new()
        .read_only(true)
        .open(dir)
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
    let mut by_task: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (lsn, task) in acks {
        by_task.entry(task).or_default().push(*lsn);
    }
    for (task, lsns) in by_task {
        let history = store
            .history(task)
            .unwrap_or_else(|e| panic!("cycle {cycle}: acknowledged task {task} is gone: {e}"));
        for lsn in lsns {
            assert!(
                history.iter().any(|e| e.lsn == lsn),
                "cycle {cycle}: acknowledged event {lsn} of {task} is missing"
            );
        }
    }
}

#[test]
fn every_printed_ack_survives_sigkill() {
    let cycles: u64 = std::env::var("TASKLOG_KILL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("TASKLOG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acks = BTreeMap::new();
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.u64(30..250));
        run_cycle(dir.path(), kill_after, &mut acks);
        check_all_present(dir.path(), &acks, cycle);
    }
    assert!(
        acks.len() > cycles as usize,
        "the children acknowledged too little to prove anything: {}",
        acks.len()
    );
    println!(
        "{cycles} SIGKILL cycles, {} acknowledged events, all present",
        acks.len()
    );
}
