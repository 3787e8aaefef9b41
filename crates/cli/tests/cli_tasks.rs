//! The task commands of the `tasklog` binary, end to end: every lifecycle command, `get`,
//! `list` (filters, sorting, paging), `history` and `stats`, their JSON shapes (parsed with
//! serde_json, keys checked against the contract in issue #6), and the exit codes for
//! operation errors (1) and usage errors (2). Each test runs the real binary on a store in
//! its own temporary directory.

#[macro_use]
mod cli_support;

use cli_support::{TASK_KEYS, bare, fails, has_keys, json, ok, submit, tasklog};
use serde_json::json;

// Each scenario runs twice: directly, and through a `tasklog serve` on its store directory.
both_ways!(
    a_task_goes_through_its_whole_life,
    fail_retry_cancel_and_their_errors,
    list_filters_sorts_and_pages,
    stats_json_has_totals_by_state,
    submit_with_a_request_id_is_idempotent,
);

fn a_task_goes_through_its_whole_life() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(
        d,
        "build the thing",
        &[
            "--description",
            "long text",
            "--role",
            "coder",
            "--provider",
            "anthropic",
            "--model",
            "claude",
            "--tag",
            "a",
            "--tag",
            "b",
            "--meta",
            "cost=5",
            "--meta",
            "note=hello",
            "--meta",
            "obj={\"k\":[1,2]}",
        ],
    );
    ok(d, &["start", &id]);
    ok(
        d,
        &[
            "progress",
            &id,
            "40",
            "--step",
            "compile",
            "--message",
            "half",
        ],
    );
    ok(d, &["checkpoint", &id, "cp1", "--data", r#"{"rows":10}"#]);
    ok(d, &["output", &id, "artifact", "out/report.md"]);
    let line = ok(d, &["complete", &id, "--result", r#"{"ok":true}"#]);
    assert!(line.contains("completed"), "{line}");

    let t = json(d, &["get", &id, "--json"]);
    has_keys(&t, TASK_KEYS);
    assert_eq!(t["id"], json!(id));
    assert_eq!(t["state"], json!("completed"));
    assert_eq!(t["description"], json!("long text"));
    assert_eq!(t["role"], json!("coder"));
    assert_eq!(t["provider"], json!("anthropic"));
    assert_eq!(t["model"], json!("claude"));
    assert_eq!(t["tags"], json!(["a", "b"]));
    // --meta values are JSON when they parse, strings otherwise.
    assert_eq!(t["metadata"]["cost"], json!(5));
    assert_eq!(t["metadata"]["note"], json!("hello"));
    assert_eq!(t["metadata"]["obj"], json!({"k": [1, 2]}));
    assert_eq!(t["result"], json!({"ok": true}));
    has_keys(&t["progress"], &["percent"]);
    assert_eq!(t["progress"]["step"], json!("compile"));
    assert_eq!(t["checkpoint"]["data"], json!({"rows": 10}));
    assert_eq!(t["outputs"][0]["kind"], json!("artifact"));
    assert!(t["completed_at"].is_string());

    let human = ok(d, &["get", &id]);
    assert!(human.contains("state: completed"), "{human}");
    assert!(human.contains("build the thing"), "{human}");

    let h = json(d, &["history", &id, "--json"]);
    let events = h.as_array().expect("history --json is an array");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "started",
            "progress",
            "checkpoint",
            "output",
            "completed"
        ]
    );
    for e in events {
        has_keys(e, &["lsn", "at", "kind", "from", "to", "details"]);
    }
    assert_eq!(events[0]["from"], json!(null));
    assert_eq!(events[5]["from"], json!("running"));
    assert_eq!(events[5]["to"], json!("completed"));
    let table = ok(d, &["history", &id]);
    assert!(table.starts_with("LSN"), "{table}");
    assert_eq!(table.lines().count(), 7, "{table}");
}

fn fail_retry_cancel_and_their_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "flaky", &[]);
    ok(d, &["start", &id]);
    ok(d, &["fail", &id, "--error", "timed out"]);
    let t = json(d, &["get", &id, "--json"]);
    assert_eq!(t["state"], json!("failed"));
    assert_eq!(t["last_error"], json!("timed out"));
    assert_eq!(t["error_count"], json!(1));
    ok(d, &["retry", &id]);
    let t = json(d, &["get", &id, "--json"]);
    assert_eq!(
        (t["state"].clone(), t["attempt"].clone()),
        (json!("pending"), json!(2))
    );
    ok(d, &["cancel", &id, "--reason", "not needed"]);
    assert_eq!(
        json(d, &["get", &id, "--json"])["state"],
        json!("cancelled")
    );

    // Exit 1: an invalid transition, with the task id and states in one sentence.
    let err = fails(d, &["complete", &id], 1);
    assert!(err.starts_with("tasklog: error: "), "{err}");
    assert!(err.contains(&id) && err.contains("cancelled"), "{err}");
    // Exit 1: not found.
    let err = fails(d, &["get", "no-such-task"], 1);
    assert!(
        err.contains("no-such-task") && err.contains("not found"),
        "{err}"
    );
    fails(d, &["start", "no-such-task"], 1);
    fails(d, &["history", "no-such-task", "--json"], 1);
    // Exit 1: a duplicate id.
    submit(d, "x", &["--id", "fixed"]);
    fails(d, &["submit", "--title", "y", "--id", "fixed"], 1);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fails(d, &["no-such-command"], 2);
    fails(d, &["submit"], 2); // --title is required
    fails(d, &["list", "--state", "sleeping"], 2);
    fails(d, &["progress", "t", "101"], 2);
    fails(d, &["checkpoint", "t", "n", "--data", "{not json"], 2);
    fails(d, &["output", "t", "video", "x"], 2);
    fails(d, &["list", "--since", "yesterday-ish"], 2);
    fails(d, &["submit", "--title", "t", "--meta", "novalue"], 2);
    // Nothing was created by any of these.
    assert!(std::fs::read_dir(d).unwrap().next().is_none());
}

#[test]
fn help_documents_the_exit_codes_and_completions_work() {
    let help = bare()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(help).unwrap();
    for needle in [
        "Exit codes",
        "0  success",
        "3  corruption",
        "4  the store is locked",
        "5  `serve --jetstream`",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let bash = bare().args(["completions", "bash"]).assert().success();
    assert!(String::from_utf8_lossy(&bash.get_output().stdout).contains("tasklog"));
}

#[test]
fn read_commands_refuse_a_missing_store_and_do_not_create_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("nothing-here");
    for args in [
        &["list"][..],
        &["get", "x"],
        &["stats", "--json"],
        &["history", "x"],
    ] {
        let err = fails(&d, args, 1);
        assert!(err.contains("does not exist"), "{err}");
    }
    assert!(!d.exists());
    // TASKLOG_DIR is the fallback for --dir; write commands create the store.
    let out = bare()
        .env("TASKLOG_DIR", &d)
        .args(["submit", "--title", "t"])
        .assert()
        .success();
    assert!(!out.get_output().stdout.is_empty());
    assert!(d.join("wal").is_dir());
}

fn list_filters_sorts_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = submit(
        d,
        "alpha report",
        &["--role", "writer", "--tag", "x", "--meta", "team=red"],
    );
    let b = submit(
        d,
        "beta code",
        &[
            "--role",
            "coder",
            "--provider",
            "openai",
            "--meta",
            "team=blue",
        ],
    );
    let c = submit(d, "gamma code", &["--role", "coder", "--tag", "x"]);
    ok(d, &["start", &b]);

    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["list", "--json"];
        full.extend_from_slice(args);
        let v = json(d, &full);
        let arr = v.as_array().expect("list --json is an array");
        for t in arr {
            has_keys(t, TASK_KEYS);
        }
        arr.iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&[]), [a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(ids(&["--desc"]), [c.as_str(), b.as_str(), a.as_str()]);
    assert_eq!(ids(&["--state", "running"]), [b.as_str()]);
    assert_eq!(ids(&["--state", "pending,running"]).len(), 3);
    assert_eq!(ids(&["--role", "coder"]), [b.as_str(), c.as_str()]);
    assert_eq!(ids(&["--provider", "openai"]), [b.as_str()]);
    assert_eq!(ids(&["--tag", "x"]), [a.as_str(), c.as_str()]);
    assert_eq!(ids(&["--meta", "team=blue"]), [b.as_str()]);
    assert_eq!(ids(&["--search", "CODE"]), [b.as_str(), c.as_str()]);
    assert_eq!(ids(&["--limit", "1", "--offset", "1"]), [b.as_str()]);
    assert_eq!(
        ids(&["--sort", "updated", "--desc", "--limit", "1"]),
        [b.as_str()]
    );
    assert!(ids(&["--since", "2999-01-01"]).is_empty());
    assert_eq!(ids(&["--until", "2999-01-01T00:00:00Z"]).len(), 3);

    let table = ok(d, &["list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{table}");
    assert_eq!(lines.count(), 3, "{table}");
}

fn stats_json_has_totals_by_state() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = submit(d, "one", &["--role", "coder", "--meta", "tier=gold"]);
    submit(d, "two", &["--provider", "local"]);
    ok(d, &["start", &a]);
    let s = json(d, &["stats", "--json", "--by", "tier"]);
    has_keys(
        &s,
        &["total", "by_state", "by_role", "by_provider", "health"],
    );
    assert_eq!(s["total"], json!(2));
    assert_eq!(s["by_state"]["running"], json!(1));
    assert_eq!(s["by_state"]["pending"], json!(1));
    assert_eq!(s["by_state"]["completed"], json!(0));
    assert_eq!(s["by_role"]["coder"], json!(1));
    assert_eq!(s["by_key"]["counts"]["gold"], json!(1));
    let human = ok(d, &["stats"]);
    assert!(
        human.contains("by state") && human.contains("health"),
        "{human}"
    );
}

fn submit_with_a_request_id_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let first = submit(d, "once", &["--request-id", "req-1"]);
    let again = submit(d, "once", &["--request-id", "req-1"]);
    assert_eq!(first, again);
    assert_eq!(json(d, &["list", "--json"]).as_array().unwrap().len(), 1);
    // The JSON output is exactly JSON: nothing else on stdout, even for an empty result.
    let out = tasklog(d)
        .args(["list", "--json", "--state", "failed"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "[]"
    );
}
