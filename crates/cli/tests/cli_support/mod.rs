//! Shared helpers for the `cli_*` tests: run the real `tasklog` binary against a store in a
//! temporary directory and parse what it prints.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// The binary cargo built for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tasklog"))
}

/// `tasklog --dir <dir>` with a clean environment (no TASKLOG_DIR, no colors, WARN logging).
pub fn tasklog(dir: &Path) -> Command {
    let mut c = bare();
    c.arg("--dir").arg(dir);
    c
}

/// `tasklog` without `--dir`.
pub fn bare() -> Command {
    let mut c = Command::new(exe());
    c.env_remove("TASKLOG_DIR")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60));
    c
}

/// Runs `tasklog --dir <dir> args...`, expects exit 0, returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tasklog(dir)
        .args(args)
        .assert()
        .success()
        .get_output()
        .clone();
    String::from_utf8(out.stdout).expect("stdout should be UTF-8")
}

/// Runs the command, expects exit `code`, returns stderr.
pub fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = tasklog(dir)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone();
    String::from_utf8(out.stderr).expect("stderr should be UTF-8")
}

/// Runs the command (with `--json` among `args`), expects exit 0 and stdout that is exactly
/// one JSON document.
pub fn json(dir: &Path, args: &[&str]) -> Value {
    let text = ok(dir, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Submits a task titled `title`; returns its id.
pub fn submit(dir: &Path, title: &str, extra: &[&str]) -> String {
    let mut args = vec!["submit", "--title", title];
    args.extend_from_slice(extra);
    let id = ok(dir, &args);
    let id = id.trim_end_matches('\n');
    assert!(
        !id.is_empty() && !id.contains('\n'),
        "submit should print the id alone on a line, got {id:?}"
    );
    id.to_string()
}

/// Asserts that `v` is an object holding every key in `keys`.
pub fn has_keys(v: &Value, keys: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"));
    for k in keys {
        assert!(obj.contains_key(*k), "missing key {k:?} in {v}");
    }
}

/// The keys the issue promises in a task object.
pub const TASK_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "role",
    "state",
    "progress",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "provider",
    "model",
    "tags",
    "metadata",
    "result",
    "last_error",
    "error_count",
    "attempt",
    "version",
];

/// Flips one byte in the middle of the records of the first log segment.
pub fn flip_byte_in_log(store: &Path) {
    let wal = store.join("wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal)
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = segs.first().expect("a segment");
    let mut bytes = std::fs::read(seg).expect("read segment");
    // Segments are preallocated: the records end where the zeros begin.
    let end = bytes.iter().rposition(|b| *b != 0).expect("records") + 1;
    let at = end / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(seg, &bytes).expect("write segment");
}
