//! Who may change a store, and when: a one-shot command never applies the interrupted-work
//! policy on behalf of another process, and read commands, dry runs and rejected imports never
//! create or write a store.
//!
//! Method: an application is simulated by a child process (`tasklog demo-crash-child`: it
//! starts a task, checkpoints it, says `ready <id>`, and keeps reporting progress) that the test
//! SIGKILLs. Then one-shot commands (`snapshot`, `submit`, `cleanup`) must leave its task
//! running; only `tasklog recover` marks it failed (or `--requeue` puts it back to pending with
//! its checkpoint), and so does `tasklog serve`, which owns the work of the store it opens. For
//! "never create", the commands run on a directory that does not exist and the test checks it
//! still does not; for "never write", the test compares every file of an existing store byte
//! for byte before and after.
#![cfg(unix)] // signals and process kills: Unix only; the cross-platform checks compile the rest.

mod cli_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli_support::{Server, exe, fails, json, ok, submit};
use serde_json::json;

/// Runs the crash child on `d`, SIGKILLs it once its task runs; returns the task id.
fn crashed_application(d: &Path) -> String {
    let mut child = Command::new(exe())
        .arg("--dir")
        .arg(d)
        .args(["--quiet", "demo-crash-child"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the crash child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("the child said {line:?}"))
        .to_string();
    child.kill().unwrap(); // SIGKILL: no clean close
    child.wait().unwrap();
    id
}

#[test]
fn one_shot_commands_leave_a_crashed_applications_task_running() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let id = crashed_application(&d);
    ok(&d, &["snapshot"]);
    submit(&d, "another task", &[]);
    ok(&d, &["cleanup", "--older-than", "0"]);
    let t = json(&d, &["get", &id, "--json"]);
    assert_eq!(t["state"], json!("running"), "{t}");
    assert_eq!(t["checkpoint"]["name"], json!("rows-3000"));
    assert!(t["last_error"].is_null(), "{t}");

    // The explicit recovery applies the policy, once.
    let out = ok(&d, &["recover"]);
    assert!(
        out.contains("1 interrupted task(s) marked failed") && out.contains(&id),
        "{out}"
    );
    let t = json(&d, &["get", &id, "--json"]);
    assert_eq!(t["state"], json!("failed"), "{t}");
    assert!(
        t["last_error"].as_str().unwrap().contains("interrupted"),
        "{t}"
    );
    let again = json(&d, &["recover", "--json"]);
    assert_eq!(again, json!({ "recovered": [], "policy": "mark_failed" }));
}

#[test]
fn recover_requeue_puts_the_task_back_with_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let id = crashed_application(&d);
    let r = json(&d, &["recover", "--requeue", "--json"]);
    assert_eq!(r, json!({ "recovered": [id], "policy": "requeue" }));
    let t = json(&d, &["get", &id, "--json"]);
    assert_eq!(t["state"], json!("pending"), "{t}");
    assert_eq!(t["checkpoint"]["data"], json!({ "rows_done": 3000 }));
}

#[test]
fn a_server_owns_the_work_and_recovers_it_when_it_opens_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let id = crashed_application(&d);
    let mut server = Server::start(&d, &[]);
    server.signal(rustix::process::Signal::TERM);
    assert!(server.wait_exit(20).is_some_and(|s| s.success()));
    let t = json(&d, &["get", &id, "--json"]);
    assert_eq!(t["state"], json!("failed"), "{t}");
    assert!(
        t["last_error"].as_str().unwrap().contains("interrupted"),
        "{t}"
    );
}

#[test]
fn a_task_started_by_a_one_shot_command_is_not_interrupted_work() {
    // `tasklog start` closes the store cleanly: its running task is nobody's orphan.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let id = submit(&d, "started by hand", &[]);
    ok(&d, &["start", &id]);
    assert_eq!(
        json(&d, &["recover", "--json"]),
        json!({ "recovered": [], "policy": "mark_failed" })
    );
    assert_eq!(json(&d, &["get", &id, "--json"])["state"], json!("running"));
}

#[test]
fn recover_refuses_a_missing_store() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("nothing-here");
    let err = fails(&d, &["recover"], 1);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!d.exists());
}

fn export_file(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    let a = submit(&src, "alpha", &[]);
    ok(&src, &["start", &a]);
    let file = tmp.join("export.json");
    ok(&src, &["export", "--out", file.to_str().unwrap()]);
    file
}

#[test]
fn read_commands_and_dry_runs_never_create_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let file = export_file(tmp.path());
    let d = tmp.path().join("nothing-here");
    for args in [
        &["get", "x"][..],
        &["list"],
        &["list", "--json"],
        &["stats"],
        &["history", "x"],
        &["export", "--out", "-"],
        &["watch", "--from", "1"],
        &["verify"],
    ] {
        let err = fails(&d, args, 1);
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        assert!(!d.exists(), "{args:?} created the store directory");
    }
    // A dry run counts against an empty store, in memory.
    let out = ok(&d, &["import", file.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("would import 1 new task(s)"), "{out}");
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert!(!d.exists(), "import --dry-run created the store directory");
    // A rejected import creates nothing either.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"tasks": [{"id": "x", "title": "t", "state": "sleeping"}]}"#,
    )
    .unwrap();
    let err = fails(&d, &["import", bad.to_str().unwrap()], 1);
    assert!(err.contains("sleeping"), "{err}");
    assert!(!d.exists(), "a rejected import created the store directory");
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn reads_dry_runs_and_rejected_imports_never_write_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let file = export_file(tmp.path());
    let d = tmp.path().join("store");
    let id = submit(&d, "existing", &[]);
    // The export's task id, to make `--on-conflict fail` conflict.
    ok(&d, &["import", file.to_str().unwrap()]);
    let before = files(&d);
    json(&d, &["get", &id, "--json"]);
    json(&d, &["list", "--json"]);
    json(&d, &["stats", "--json"]);
    json(&d, &["history", &id, "--json"]);
    ok(&d, &["export", "--out", "-"]);
    let out = ok(&d, &["import", file.to_str().unwrap(), "--dry-run"]);
    assert!(
        out.contains("would import 0 new task(s)") && out.contains("1 skipped"),
        "{out}"
    );
    let err = fails(
        &d,
        &["import", file.to_str().unwrap(), "--on-conflict", "fail"],
        1,
    );
    assert!(err.contains("already exists"), "{err}");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"tasks\": [").unwrap();
    fails(&d, &["import", bad.to_str().unwrap()], 1);
    assert_eq!(
        files(&d),
        before,
        "a read, a dry run or a rejected import changed the store"
    );
}
