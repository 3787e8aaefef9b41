//! The CLI a newcomer trusts (issue #21) and the discarded state from the command line (issue
//! #19): plain words instead of debug names, one report per damage with the command that fixes
//! it, refusals on a damaged store that name `tasklog repair`, LSN gaps explained, a guard on
//! `stress` over a non-empty store, completions that offer state names, and a demo whose
//! output captured to a pipe (as in a log file) shows every step.
//!
//! Method: the real binary on temporary stores, its stdout and stderr captured (so neither is
//! a terminal, and no progress bar is drawn); damage is made by flipping a byte in the log.

#[macro_use]
mod cli_support;

use cli_support::{bare, fails, flip_byte_in_log, ok, submit, tasklog};

fn stdout_of(cmd: &mut assert_cmd::Command, code: i32) -> (String, String) {
    let out = cmd.assert().code(code).get_output().clone();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn verify_reports_each_damage_once_with_the_repair_command_and_refusals_name_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for i in 0..6 {
        submit(d, &format!("task {i}"), &[]);
    }
    flip_byte_in_log(d);
    let (out, _) = stdout_of(tasklog(d).arg("verify"), 3);
    let damage: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("DAMAGE ["))
        .collect();
    assert_eq!(damage.len(), 1, "one damage, one line:\n{out}");
    // Every check that saw it is named on that line.
    assert!(damage[0].contains("[log, replay, open]"), "{out}");
    assert!(out.contains("fix: tasklog --dir"), "{out}");
    assert!(out.contains("repair --yes"), "{out}");

    for args in [&["list"][..], &["submit", "--title", "more"]] {
        let err = fails(d, args, 3);
        assert!(err.contains("corruption"), "{err}");
        assert!(err.contains("tasklog repair"), "{args:?}: {err}");
        assert!(err.contains("tasklog verify"), "{args:?}: {err}");
    }
}

#[test]
fn stress_refuses_a_store_that_holds_tasks_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // An empty store: no question asked (scripts and the crash tests rely on it).
    ok(d, &["stress", "--tasks", "4", "--writers", "1"]);
    let before = ok(d, &["list", "--json"]);
    let err = fails(d, &["stress", "--tasks", "4", "--writers", "1"], 1);
    assert!(err.contains("already holds 4 task(s)"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(ok(d, &["list", "--json"]), before, "nothing written");
    ok(d, &["stress", "--tasks", "4", "--writers", "1", "--force"]);
    ok(d, &["stress", "--tasks", "4", "--writers", "1", "--yes"]);
    let all: serde_json::Value = serde_json::from_str(&ok(d, &["list", "--json"])).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(12));
}

#[test]
fn state_completions_offer_state_names_and_discarded_is_a_state() {
    let (bash, _) = stdout_of(bare().args(["completions", "bash"]), 0);
    for state in [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "discarded",
    ] {
        assert!(bash.contains(state), "bash completion lacks {state}");
    }
    let (help, _) = stdout_of(bare().args(["list", "--help"]), 0);
    assert!(help.contains("discarded"), "{help}");

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "doomed", &[]);
    ok(d, &["start", &id]);
    ok(d, &["fail", &id, "--error", "no"]);
    assert_eq!(
        ok(d, &["list", "--state", "discarded", "--json"]).trim(),
        "[]"
    );
    // A bad state names the choices, discarded included.
    let err = fails(d, &["list", "--state", "dead-ish"], 2);
    assert!(err.contains("discarded"), "{err}");
    // `stats --json` keeps its shape and has the new key.
    let stats: serde_json::Value = serde_json::from_str(&ok(d, &["stats", "--json"])).unwrap();
    assert_eq!(stats["by_state"]["discarded"], 0, "{stats}");
    assert_eq!(stats["by_state"]["failed"], 1, "{stats}");
}

#[test]
fn lsn_gaps_from_session_records_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Each command is a session that ends with a "session closed" record.
    let id = submit(d, "a", &[]);
    ok(d, &["start", &id]);
    ok(d, &["complete", &id]);
    let (_, err) = stdout_of(tasklog(d).args(["history", &id]), 0);
    assert!(err.contains("session closed"), "{err}");
    let stats = ok(d, &["stats"]);
    assert!(stats.contains("\"session closed\" records"), "{stats}");
}

#[test]
fn the_demo_captured_to_a_pipe_shows_every_step_in_plain_words() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    let (out, err) = stdout_of(
        bare()
            .arg("--dir")
            .arg(&d)
            .arg("demo")
            .timeout(std::time::Duration::from_secs(120)),
        0,
    );
    for step in 1..=6 {
        assert!(
            out.contains(&format!("-- {step}.")),
            "step {step} missing:\n{out}"
        );
    }
    // Step 1 says what happened even without progress bars.
    let step1 = out
        .split("-- 1.")
        .nth(1)
        .and_then(|s| s.split("-- 2.").next())
        .unwrap();
    assert!(step1.contains("tasks ran in"), "{step1}");
    assert!(step1.contains("discarded"), "{step1}");
    // No debug names, in either stream.
    for debug in [
        "MarkFailed",
        "FailThenRetry",
        "FailForGood",
        "CancelRunning",
        "{ ..",
    ] {
        assert!(!out.contains(debug), "{debug} in stdout:\n{out}");
    }
    assert!(out.contains("marked failed"), "{out}");
    // No progress-bar leftovers (carriage returns, cursor movement) in a log file.
    assert!(!out.contains('\r') && !err.contains('\r'), "{err}");
    assert!(!err.contains("\u{1b}["), "{err}");
}

#[test]
fn a_retry_backoff_is_shown_as_a_time_not_raw_milliseconds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "later", &["--meta", "runtime.not_before=1800000000000"]);
    let out = ok(d, &["get", &id]);
    assert!(
        out.contains("not before: 2027-01-15T08:00:00.000Z"),
        "{out}"
    );
    assert!(!out.contains("1800000000000"), "{out}");
    // JSON keeps the stored value.
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["get", &id, "--json"])).unwrap();
    assert_eq!(v["metadata"]["runtime.not_before"], 1_800_000_000_000_i64);
}
