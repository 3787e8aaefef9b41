//! Maintenance and integrity commands of the `tasklog` binary: `cleanup`, `snapshot`,
//! `compact`, `verify` (human and JSON) and `repair`, and exit code 3: a byte flipped in the
//! middle of a log segment of a store with several records makes `verify` and `get` exit 3;
//! `repair` shows its plan, then cuts the log and quarantines the damaged bytes, after which
//! `verify` passes again. Each test runs the real binary on its own temporary store.

#[macro_use]
mod cli_support;

use cli_support::{fails, flip_byte_in_log, has_keys, json, ok, submit};
use serde_json::json;

// Each scenario runs twice: directly, and through a `tasklog serve` on its store directory.
both_ways!(cleanup_snapshot_and_compact,);

fn cleanup_snapshot_and_compact() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let done = submit(d, "done", &[]);
    let waiting = submit(d, "waiting", &[]);
    ok(d, &["start", &done]);
    ok(d, &["complete", &done]);

    // Nothing finished more than a day ago.
    let out = ok(d, &["cleanup", "--older-than", "1"]);
    assert!(out.contains("removed 0"), "{out}");
    // Everything terminal finished more than 0 days ago.
    let out = ok(d, &["cleanup", "--older-than", "0"]);
    assert!(out.contains("removed 1"), "{out}");
    fails(d, &["get", &done], 1);
    // The removed task's history stays readable.
    let h = json(d, &["history", &done, "--json"]);
    assert_eq!(
        h.as_array().unwrap().last().unwrap()["kind"],
        json!("removed")
    );
    assert_eq!(
        json(d, &["get", &waiting, "--json"])["state"],
        json!("pending")
    );
    fails(d, &["cleanup", "--older-than", "-1"], 2);

    let out = ok(d, &["snapshot"]);
    assert!(out.contains("snapshot") && out.contains("LSN"), "{out}");
    assert!(std::fs::read_dir(d.join("snapshots")).unwrap().count() >= 1);
    let out = ok(d, &["compact"]);
    assert!(out.contains("snapshot"), "{out}");
    assert!(
        out.contains("removed") || out.contains("nothing removed"),
        "{out}"
    );
    // Still readable after compaction, and still verifies.
    assert_eq!(json(d, &["get", &waiting, "--json"])["id"], json!(waiting));
    let v = json(d, &["verify", "--json"]);
    assert_eq!(v["ok"], json!(true), "{v}");
    assert!(!v["snapshots"].as_array().unwrap().is_empty());
}

#[test]
fn verify_passes_on_a_healthy_store() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "t", &[]);
    ok(d, &["start", &id]);
    let out = ok(d, &["verify"]);
    assert!(out.contains("OK"), "{out}");
    let v = json(d, &["verify", "--json"]);
    has_keys(&v, &["ok", "log", "snapshots", "replay", "problems"]);
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["replay"]["tasks"], json!(1));
    assert!(v["problems"].as_array().unwrap().is_empty());
    // Nothing to repair.
    let out = ok(d, &["repair"]);
    assert!(out.contains("nothing to repair"), "{out}");
}

#[test]
fn a_flipped_byte_is_corruption_exit_3_and_repair_cuts_it_away() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = submit(
            d,
            &format!("task {i}"),
            &["--description", "some words of text"],
        );
        ok(d, &["start", &id]);
        ids.push(id);
    }
    flip_byte_in_log(d);

    // verify: exit 3, naming the file, offset and LSN.
    let out = tasklog_out(d, &["verify"], 3);
    assert!(
        out.contains("DAMAGE") && out.contains(".seg") && out.contains("offset"),
        "{out}"
    );
    let out = tasklog_out(d, &["verify", "--json"], 3);
    let v: serde_json::Value = serde_json::from_str(&out).expect("verify --json is JSON");
    assert_eq!(v["ok"], json!(false));
    let p = &v["problems"][0];
    has_keys(p, &["file", "offset", "lsn", "reason"]);
    assert!(p["offset"].is_u64(), "{p}");

    // Reads and writes refuse the damaged log with exit 3.
    let err = fails(d, &["get", &ids[0]], 3);
    assert!(
        err.starts_with("tasklog: error: ") && err.contains("corruption"),
        "{err}"
    );
    fails(d, &["list"], 3);
    fails(d, &["submit", "--title", "more"], 3);

    // repair: a dry run first, changing nothing.
    let plan = ok(d, &["repair"]);
    assert!(
        plan.contains("would cut") && plan.contains("quarantine"),
        "{plan}"
    );
    tasklog_out(d, &["verify"], 3);
    // Then the cut.
    let done = ok(d, &["repair", "--yes"]);
    assert!(done.contains("cut the log"), "{done}");
    let quarantined = std::fs::read_dir(d.join("wal").join("quarantine"))
        .or_else(|_| std::fs::read_dir(d.join("quarantine")))
        .expect("a quarantine directory")
        .count();
    assert!(quarantined >= 1);
    ok(d, &["verify"]);
    ok(d, &["list"]);
    submit(d, "after repair", &[]);
}

/// Runs the command expecting `code`; returns stdout.
fn tasklog_out(d: &std::path::Path, args: &[&str], code: i32) -> String {
    let out = cli_support::tasklog(d).args(args).assert().code(code);
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}
