//! The `tasklog schedule` commands and `submit --run-at/--delay`, end to end: a schedule is
//! added (cron in a time zone, or an interval), listed with its next fire times, paused,
//! resumed, removed; its runs listed; `stats --json` carries `scheduled`, `one_time` and the
//! run totals; bad definitions exit 1 naming the field, missing arguments exit 2. Each
//! scenario runs directly and through a `tasklog serve` on its store directory.

#[macro_use]
mod cli_support;

use cli_support::{fails, json, ok, submit};
use tasklog::task::Timestamp;

both_ways!(
    a_delayed_submit_records_its_time,
    a_schedule_is_added_listed_paused_resumed_and_removed,
    bad_schedules_exit_with_the_field_named,
    stats_carry_the_schedule_figures,
);

fn a_delayed_submit_records_its_time() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = submit(d, "later", &["--run-at", "2030-01-01T00:00:00Z"]);
    let t = json(d, &["get", &id, "--json"]);
    let at = Timestamp::parse("2030-01-01T00:00:00Z")
        .unwrap()
        .as_millis();
    assert_eq!(t["metadata"]["runtime.not_before"], at);
    let before = Timestamp::now().as_millis();
    let id = submit(d, "in an hour", &["--delay", "1h"]);
    let t = json(d, &["get", &id, "--json"]);
    let nb = t["metadata"]["runtime.not_before"].as_i64().unwrap();
    assert!(nb >= before + 3_600_000 && nb < before + 3_660_000, "{nb}");
    fails(d, &["submit", "--title", "x", "--delay", "soon"], 2);
    fails(
        d,
        &[
            "submit",
            "--title",
            "x",
            "--delay",
            "1h",
            "--run-at",
            "2030-01-01",
        ],
        2,
    );
}

fn a_schedule_is_added_listed_paused_resumed_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let v = json(
        d,
        &[
            "schedule",
            "add",
            "report",
            "--cron",
            "0 9 * * 1-5",
            "--tz",
            "Europe/Berlin",
            "--title",
            "weekday report",
            "--kind",
            "report",
            "--input",
            "{\"to\":\"ops\"}",
            "--overlap",
            "queue-one",
            "--catch-up",
            "all",
            "--catch-up-max",
            "3",
            "--jitter",
            "30s",
            "--json",
        ],
    );
    assert_eq!(v["name"], "report");
    assert_eq!(v["definition"]["timezone"], "Europe/Berlin");
    assert_eq!(v["definition"]["overlap"], "queue_one");
    assert_eq!(v["definition"]["catch_up"], "all");
    assert_eq!(v["definition"]["jitter_ms"], 30_000);
    assert_eq!(v["definition"]["task"]["input"]["to"], "ops");
    assert_eq!(v["next_fires"].as_array().unwrap().len(), 3);
    let text = ok(d, &["schedule", "add", "pulse", "--every", "1day"]);
    assert!(text.starts_with("pulse: next fire at "), "{text}");

    let list = json(d, &["schedule", "list", "--json"]);
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pulse", "report"]);
    let table = ok(d, &["schedule", "list"]);
    assert!(table.contains("0 9 * * 1-5 (Europe/Berlin)"), "{table}");
    assert!(table.contains("every 1day"), "{table}");

    let p = json(d, &["schedule", "pause", "report", "--json"]);
    assert_eq!(p["paused"], true);
    assert!(ok(d, &["schedule", "list"]).contains("paused"));
    let r = json(d, &["schedule", "resume", "report", "--json"]);
    assert_eq!(r["paused"], false);
    assert_eq!(ok(d, &["schedule", "runs", "report"]).trim(), "no runs");
    assert_eq!(
        json(d, &["schedule", "runs", "report", "--json"])["runs"],
        serde_json::json!([])
    );

    assert_eq!(ok(d, &["schedule", "remove", "report"]).trim(), "report");
    let err = fails(d, &["schedule", "remove", "report"], 1);
    assert!(err.contains("schedule:report"), "{err}");
    let left = json(d, &["schedule", "list", "--json"]);
    assert_eq!(left["schedules"].as_array().unwrap().len(), 1);
}

fn bad_schedules_exit_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let err = fails(d, &["schedule", "add", "x", "--cron", "0 9 * * 8"], 1);
    assert!(err.contains("cron"), "{err}");
    let err = fails(
        d,
        &[
            "schedule",
            "add",
            "x",
            "--cron",
            "0 9 * * *",
            "--tz",
            "Moon/Base",
        ],
        1,
    );
    assert!(err.contains("Moon/Base"), "{err}");
    let err = fails(d, &["schedule", "add", "no spaces", "--every", "1m"], 1);
    assert!(err.contains("name"), "{err}");
    fails(d, &["schedule", "add", "x"], 2);
    fails(
        d,
        &[
            "schedule",
            "add",
            "x",
            "--cron",
            "* * * * *",
            "--every",
            "1m",
        ],
        2,
    );
    ok(d, &["schedule", "add", "x", "--every", "1m"]);
    let err = fails(d, &["schedule", "add", "x", "--every", "1m"], 1);
    assert!(err.contains("schedule:x"), "{err}");
    fails(d, &["schedule", "pause", "nope"], 1);
}

fn stats_carry_the_schedule_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    submit(d, "one-off", &[]);
    ok(d, &["schedule", "add", "daily", "--cron", "0 3 * * *"]);
    let s = json(d, &["stats", "--json"]);
    assert_eq!(s["scheduled"], 1);
    assert_eq!(s["one_time"], 1);
    assert_eq!(s["total_runs"], 0);
    assert_eq!(s["total_successes"], 0);
    assert_eq!(s["total_failures"], 0);
    assert_eq!(s["schedules"]["daily"]["runs"], 0);
    assert!(
        s["by_state"].is_object() && s["total"].is_number(),
        "the documented keys stay"
    );
    let text = ok(d, &["stats"]);
    assert!(text.contains("schedules 1, one-time tasks 1"), "{text}");
}

both_ways!(an_imported_scheduler_file_keeps_its_schedules_and_run_counters);

/// Seed 000's scheduler file: two tasks with a cron `schedule` and their run counters (5/5/0
/// and 5/4/1), one one-time task that completed: 11 runs, 10 successes, 1 failure in all.
fn an_imported_scheduler_file_keeps_its_schedules_and_run_counters() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/import/scheduler_000_schedules.json");
    ok(d, &["import", file.to_str().unwrap()]);
    let list = json(d, &["schedule", "list", "--json"]);
    let schedules = list["schedules"].as_array().unwrap();
    let names: Vec<&str> = schedules
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["task-daily", "task-halfhour"]);
    assert_eq!(schedules[0]["definition"]["cron"], "0 9 * * 1-5");
    assert_eq!(
        schedules[0]["definition"]["task"]["title"],
        "Activate namespace"
    );
    assert_eq!(
        schedules[0]["definition"]["task"]["metadata"]["cost_center"],
        "engineering"
    );
    let c = &schedules[1]["counts"];
    assert_eq!(
        (
            c["runs"].as_u64(),
            c["successes"].as_u64(),
            c["failures"].as_u64()
        ),
        (Some(5), Some(4), Some(1))
    );
    let s = json(d, &["stats", "--json"]);
    assert_eq!(s["scheduled"], 2);
    assert_eq!(s["one_time"], 1);
    assert_eq!(s["total_runs"], 10, "the schedules' runs");
    assert_eq!(s["total_successes"], 9);
    assert_eq!(s["total_failures"], 1);
    // The imported task is the schedule's first run, counted once.
    let runs = json(d, &["schedule", "runs", "task-daily", "--json"]);
    assert_eq!(runs["runs"][0]["id"], "task-daily");
    // Importing the same file again (skip) adopts nothing twice.
    ok(d, &["import", file.to_str().unwrap()]);
    let again = json(d, &["schedule", "list", "--json"]);
    assert_eq!(again["schedules"].as_array().unwrap().len(), 2);
    assert_eq!(json(d, &["stats", "--json"])["total_runs"], 10);
}

/// `tasklog serve` fires the store's schedules itself: a 50 ms interval schedule gains runs,
/// each fire time once, without any other process.
#[test]
fn tasklog_serve_fires_schedules() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let server = cli_support::Server::start(d, &[]);
    ok(
        d,
        &[
            "schedule",
            "add",
            "fast",
            "--every",
            "50ms",
            "--overlap",
            "allow",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v = json(d, &["schedule", "list", "--json"]);
        if v["schedules"][0]["counts"]["runs"].as_u64().unwrap() >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve never fired: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let runs = json(
        d,
        &["schedule", "runs", "fast", "--limit", "1000", "--json"],
    );
    let mut ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "one task per fire time");
    drop(server);
}
