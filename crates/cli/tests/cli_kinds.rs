//! The runtime's controls on the command line (issue #19): `pause KIND`, `resume KIND` and
//! `kinds`; `submit --priority`; `--actor` recorded in the history of every task change. Each
//! scenario runs directly on the store and through a `tasklog serve` on it; the outcomes
//! (exit codes, histories, JSON shapes) must be the same.

#[macro_use]
mod cli_support;

use cli_support::{fails, json, ok, submit};
use serde_json::json;

both_ways!(
    a_paused_kind_does_not_start_until_resumed,
    submit_takes_a_priority,
    the_actor_is_recorded_on_every_change,
    stats_count_by_several_keys_at_once,
    cleanup_by_states_and_last_run,
);

fn cleanup_by_states_and_last_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let done = submit(d, "done", &[]);
    ok(d, &["start", &done]);
    ok(d, &["complete", &done]);
    let failed = submit(d, "failed", &[]);
    ok(d, &["start", &failed]);
    ok(d, &["fail", &failed, "--error", "x"]);
    let cancelled = submit(d, "cancelled", &[]);
    ok(d, &["cancel", &cancelled]);
    let pending = submit(d, "pending", &[]);
    // The 30-day default removes nothing this young.
    let text = ok(d, &["cleanup"]);
    assert!(text.starts_with("removed 0 "), "{text}");
    // Seed 000's rule: completed and failed, by last run; cancelled and pending stay.
    let text = ok(
        d,
        &[
            "cleanup",
            "--older-than",
            "0",
            "--state",
            "completed,failed",
            "--by",
            "last-run",
        ],
    );
    assert!(text.starts_with("removed 2 "), "{text}");
    assert!(text.contains("last ran"), "{text}");
    fails(d, &["get", &done], 1);
    ok(d, &["get", &cancelled]);
    ok(d, &["get", &pending]);
    // Retention never takes pending or running tasks.
    fails(
        d,
        &["cleanup", "--older-than", "0", "--state", "pending"],
        1,
    );
    ok(d, &["get", &pending]);
    // Without --state: every terminal state, as before.
    let text = ok(d, &["cleanup", "--older-than", "0"]);
    assert!(text.starts_with("removed 1 "), "{text}");
}

fn stats_count_by_several_keys_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (op, cc) in [
        ("activate", "eng"),
        ("activate", "ops"),
        ("deactivate", "eng"),
    ] {
        submit(
            d,
            op,
            &[
                "--meta",
                &format!("operation_type={op}"),
                "--meta",
                &format!("cost_center={cc}"),
            ],
        );
    }
    let v = json(
        d,
        &[
            "stats",
            "--by",
            "operation_type",
            "--by",
            "cost_center",
            "--json",
        ],
    );
    assert_eq!(v["by_key"]["key"], "operation_type");
    assert_eq!(
        v["by_keys"],
        json!([
            {"key": "operation_type", "counts": {"activate": 2, "deactivate": 1}},
            {"key": "cost_center", "counts": {"eng": 2, "ops": 1}},
        ])
    );
    let text = ok(
        d,
        &["stats", "--by", "operation_type", "--by", "cost_center"],
    );
    assert!(text.contains("by operation_type: activate 2"), "{text}");
    assert!(text.contains("by cost_center: eng 2"), "{text}");
    // One key: the shape scripts know, without `by_keys`.
    let v = json(d, &["stats", "--by", "cost_center", "--json"]);
    assert!(v.get("by_keys").is_none(), "{v}");
    assert_eq!(v["by_key"]["counts"]["ops"], 1);
}

fn a_paused_kind_does_not_start_until_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "mail", &["--meta", "runtime.kind=mail"]);
    assert_eq!(ok(d, &["pause", "mail"]), "mail: paused\n");
    let err = fails(d, &["start", &id], 1);
    assert!(err.contains("paused"), "{err}");
    assert_eq!(
        json(d, &["kinds", "--json"]),
        json!({"kinds": {"mail": {"paused": true}}})
    );
    assert_eq!(ok(d, &["kinds"]), "mail: paused\n");
    // Other kinds, and tasks of no kind, are not held back.
    let other = submit(d, "other", &[]);
    ok(d, &["start", &other]);
    assert_eq!(ok(d, &["resume", "mail"]), "mail: resumed\n");
    ok(d, &["start", &id]);
    assert_eq!(json(d, &["kinds", "--json"]), json!({"kinds": {}}));
    assert_eq!(ok(d, &["kinds"]), "no kind has rules\n");
}

fn submit_takes_a_priority() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "urgent", &["--priority", "9"]);
    assert_eq!(json(d, &["get", &id, "--json"])["priority"], 9);
    let id = submit(d, "default", &[]);
    assert_eq!(json(d, &["get", &id, "--json"])["priority"], 0);
    fails(d, &["submit", "--title", "x", "--priority", "11"], 2);
}

fn the_actor_is_recorded_on_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "audited", &["--actor", "alice"]);
    ok(d, &["start", &id, "--actor", "bob"]);
    ok(d, &["progress", &id, "50", "--actor", "bob"]);
    ok(d, &["--actor", "carol", "complete", &id]);
    let history = json(d, &["history", &id, "--json"]);
    let actors: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("created", "alice"),
        ("started", "bob"),
        ("progress", "bob"),
        ("completed", "carol"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(actors, want);
}
