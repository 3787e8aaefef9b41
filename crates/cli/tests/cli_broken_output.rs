//! A stdout or stderr that cannot be written (issue #17): the command ends with a code a script
//! can read, never an abort (134) or a panic (101). A full stdout (`/dev/full`) is exit 1 with
//! the OS error on stderr; a full or closed stderr loses the message, not the exit code; a
//! reader that goes away (`tasklog list | head -1`) ends the command quietly with 0, as Unix
//! tools do. (A stdout closed with `>&-` is reopened on /dev/null by Rust's runtime at start,
//! so it behaves like `>/dev/null`.)
#![cfg(target_os = "linux")] // /dev/full

mod cli_support;

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};

use cli_support::{exe, ok};

fn tasklog(d: &std::path::Path) -> Command {
    let mut c = Command::new(exe());
    c.env_remove("TASKLOG_DIR")
        .env_remove("TASKLOG_REMOTE")
        .env_remove("RUST_LOG")
        .arg("--dir")
        .arg(d);
    c
}

fn dev_full() -> Stdio {
    Stdio::from(
        File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

fn store_with_tasks(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tasks: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": format!("t{i}"), "title": format!("task {i}"), "state": "pending"}))
        .collect();
    let file = tmp.path().join("tasks.json");
    std::fs::write(&file, serde_json::json!({ "tasks": tasks }).to_string()).expect("write");
    ok(
        &tmp.path().join("store"),
        &["import", file.to_str().expect("utf-8 path")],
    );
    tmp
}

#[test]
fn a_full_stdout_is_exit_1_with_the_os_error() {
    let tmp = store_with_tasks(3);
    let out = tasklog(&tmp.path().join("store"))
        .arg("list")
        .stdout(dev_full())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_full_stderr_keeps_the_exit_code() {
    let tmp = store_with_tasks(1);
    let store = tmp.path().join("store");
    // A failing command whose message cannot be written: its own code, not a panic's 101.
    let out = tasklog(&store)
        .args(["get", "no-such-task"])
        .stderr(dev_full())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A succeeding command with notes on stderr: still 0.
    let out = tasklog(&store)
        .args(["submit", "--title", "noted"])
        .stderr(dev_full())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let tmp = store_with_tasks(1);
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --dir "$1" get no-such-task 2>&-; echo "rc=$?""#)
        .arg(exe())
        .arg(tmp.path().join("store"))
        .output()
        .expect("sh");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("rc=1"), "{said}");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let tmp = store_with_tasks(2000);
    let mut child = tasklog(&tmp.path().join("store"))
        .args(["list", "--json", "--limit", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("a first byte");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}
