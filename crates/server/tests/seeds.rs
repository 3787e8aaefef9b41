//! The endpoints of the systems tasklog replaces (seeds 000, 001 and 003) over a real server:
//! every field each seed promises is present with its type; seed 000's server-side paths stay
//! inside `files_dir` (no `..`, no absolute path, no symlink out, nothing at all without a
//! files directory); seed 001's filters, recovery and outputs; seed 003's health figures by
//! the stated rules (stuck, orphaned, recovery queue, recent failures, 24-hour recoveries).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Resp, TestServer};
use tasklog::{NewTask, Store, TaskState};
use tasklog_server::ServerOptions;

fn assert_problem(resp: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(resp.status, status, "{}", resp.text);
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{}",
        resp.text
    );
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    body
}

fn has_fields(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(f).is_some(), "no field {f:?} in {v}");
    }
}

/// A server with a files directory (`<tmp>/files`) beside the store.
fn with_files() -> (TestServer, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let server = TestServer::over(dir, store, ServerOptions::default().files_dir(&files));
    (server, files)
}

// ----- seed 000 ------------------------------------------------------------------------------

#[test]
fn scheduler_stats_have_the_seed_fields() {
    let server = TestServer::start();
    let s = server.state.store();
    let a = s
        .submit(
            NewTask::new("activate")
                .meta("operation_type", json!("activate"))
                .meta("cost_center", json!("engineering"))
                .meta("schedule", json!("0 * * * *")),
        )
        .unwrap();
    s.start(&a.id).unwrap();
    s.complete(&a.id, None).unwrap();
    let b = s
        .submit(NewTask::new("deactivate").meta("operation_type", json!("deactivate")))
        .unwrap();
    s.start(&b.id).unwrap();
    s.fail(&b.id, "no").unwrap();
    let c = s.submit(NewTask::new("run")).unwrap();
    s.start(&c.id).unwrap();
    let resp = server.client().get("/api/tasks/stats");
    assert_eq!(resp.status, 200, "{}", resp.text);
    let v = resp.json();
    assert_eq!(v["max_workers"], Value::Null);
    assert_eq!(v["running_tasks"], 1);
    assert_eq!(v["total"], 3);
    assert_eq!(v["by_status"]["completed"], 1);
    assert_eq!(v["by_status"]["failed"], 1);
    assert_eq!(v["by_status"]["pending"], 0);
    assert_eq!(
        v["by_operation_type"],
        json!({"activate": 1, "deactivate": 1})
    );
    assert_eq!(v["by_cost_center"], json!({"engineering": 1}));
    assert_eq!(v["scheduled"], 1);
    assert_eq!(v["one_time"], 2);
    assert_eq!(v["total_successes"], 1);
    assert_eq!(v["total_failures"], 1);
    assert_eq!(v["total_runs"], 2);
    assert_problem(
        &server.client().get("/api/tasks/stats?x=1"),
        400,
        "bad_request",
    );
}

#[test]
fn scheduler_export_writes_inside_files_dir_and_import_reads_it_back() {
    let (server, files) = with_files();
    let s = server.state.store();
    for i in 0..3 {
        s.submit(NewTask::new(format!("t{i}"))).unwrap();
    }
    let c = server.client();
    // No body at all: the default name in files_dir.
    let resp = c.send("POST", "/api/tasks/export", None, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let v = resp.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["task_count"], 3);
    assert_eq!(v["message"], "Tasks exported successfully");
    let name = v["path"].as_str().unwrap();
    assert!(
        name.starts_with("tasks_export_") && name.ends_with(".json"),
        "{v}"
    );
    assert!(files.join(name).is_file());

    std::fs::create_dir(files.join("sub")).unwrap();
    let v = c
        .post("/api/tasks/export", &json!({"path": "sub/mine.json"}))
        .json();
    assert_eq!(v["path"], "sub/mine.json", "{v}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(files.join("sub/mine.json")).unwrap()).unwrap();
    assert_eq!(doc["task_count"], 3);
    // A directory: the default name inside it.
    let v = c.post("/api/tasks/export", &json!({"path": "sub"})).json();
    assert!(
        v["path"].as_str().unwrap().starts_with("sub/tasks_export_"),
        "{v}"
    );

    // Replace (the default): the store becomes the file's tasks.
    s.submit(NewTask::new("extra")).unwrap();
    let resp = c.post("/api/tasks/import", &json!({"path": "sub/mine.json"}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    let v = resp.json();
    has_fields(
        &v,
        &[
            "success",
            "message",
            "imported_count",
            "total_tasks",
            "merge",
        ],
    );
    assert_eq!(v["merge"], false);
    assert_eq!(v["total_tasks"], 3, "{v}");
    assert_eq!(v["imported_count"], 3);
    assert_eq!(v["message"], "Successfully imported 3 tasks");

    // Merge: a seed-format file adds its tasks, keeping the others.
    std::fs::write(
        files.join("old.json"),
        json!({"version": "1.0", "exported_at": "2024-01-15T10:30:00", "task_count": 1, "cluster_name": "c",
            "tasks": {"task-123": {"title": "Activate namespace", "status": "pending", "operation_type": "activate"}}})
        .to_string(),
    )
    .unwrap();
    let v = c
        .post(
            "/api/tasks/import",
            &json!({"path": "old.json", "merge": true}),
        )
        .json();
    assert_eq!(
        (
            v["imported_count"].clone(),
            v["total_tasks"].clone(),
            v["merge"].clone()
        ),
        (json!(1), json!(4), json!(true)),
        "{v}"
    );
    assert_eq!(
        s.get("task-123").unwrap().metadata["operation_type"],
        "activate"
    );
}

#[test]
#[cfg(unix)] // symlinks need privileges on Windows
fn scheduler_paths_cannot_leave_files_dir() {
    let (server, files) = with_files();
    let outside = files.parent().unwrap().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.json"), "[]").unwrap();
    std::os::unix::fs::symlink(&outside, files.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.json"), files.join("file-link.json")).unwrap();
    std::os::unix::fs::symlink(outside.join("nowhere.json"), files.join("dangling.json")).unwrap();
    let c = server.client();
    let abs = outside.join("x.json").display().to_string();
    for path in [
        "../outside/x.json",
        "sub/../../x.json",
        "..",
        abs.as_str(),
        "/etc/passwd",
        "",
    ] {
        let p = assert_problem(
            &c.post("/api/tasks/export", &json!({"path": path})),
            400,
            "invalid_input",
        );
        assert_eq!(p["at"], "$.path", "{path}: {p}");
        let p = assert_problem(
            &c.post("/api/tasks/import", &json!({"path": path})),
            400,
            "invalid_input",
        );
        assert_eq!(p["at"], "$.path", "{path}: {p}");
    }
    for path in ["link/x.json", "link", "file-link.json", "dangling.json"] {
        assert_problem(
            &c.post("/api/tasks/export", &json!({"path": path})),
            403,
            "path_not_allowed",
        );
    }
    for path in ["link/secret.json", "file-link.json"] {
        assert_problem(
            &c.post("/api/tasks/import", &json!({"path": path})),
            403,
            "path_not_allowed",
        );
    }
    assert!(!outside.join("x.json").exists());
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing written outside"
    );
    assert_problem(
        &c.post("/api/tasks/import", &json!({"path": "missing.json"})),
        404,
        "not_found",
    );
    assert_problem(
        &c.post("/api/tasks/export", &json!({"path": "nodir/x.json"})),
        404,
        "not_found",
    );
    let long = "n".repeat(64);
    for path in [long.as_str(), &"a/".repeat(600), "a//b", "a/", "a\u{0}b"] {
        assert_problem(
            &c.post("/api/tasks/export", &json!({"path": path})),
            400,
            "invalid_input",
        );
    }
}

#[test]
fn scheduler_files_are_refused_without_a_files_dir() {
    let server = TestServer::start();
    let c = server.client();
    assert_problem(
        &c.send("POST", "/api/tasks/export", None, &[]),
        403,
        "files_disabled",
    );
    assert_problem(
        &c.post("/api/tasks/export", &json!({"path": "x.json"})),
        403,
        "files_disabled",
    );
    assert_problem(
        &c.post("/api/tasks/import", &json!({"path": "x.json"})),
        403,
        "files_disabled",
    );
}

#[test]
fn scheduler_import_of_a_bad_file_is_400_and_changes_nothing() {
    let (server, files) = with_files();
    let s = server.state.store();
    s.submit(NewTask::new("keep")).unwrap();
    std::fs::write(
        files.join("bad.json"),
        json!({"a": {"title": "x", "status": "finished"}}).to_string(),
    )
    .unwrap();
    let lsn = s.last_lsn();
    let p = assert_problem(
        &server
            .client()
            .post("/api/tasks/import", &json!({"path": "bad.json"})),
        400,
        "invalid_document",
    );
    assert!(p["problems"].to_string().contains("finished"), "{p}");
    assert_eq!(s.last_lsn(), lsn);
    let c = server.client();
    for body in [
        json!({}),
        json!({"path": 5}),
        json!({"path": "bad.json", "merge": "yes"}),
        json!({"path": "x", "other": 1}),
    ] {
        assert_problem(&c.post("/api/tasks/import", &body), 400, "invalid_input");
    }
}

#[test]
fn scheduler_cleanup_takes_days() {
    let server = TestServer::start();
    let s = server.state.store();
    let a = s.submit(NewTask::new("done")).unwrap();
    s.start(&a.id).unwrap();
    s.complete(&a.id, None).unwrap();
    s.submit(NewTask::new("pending")).unwrap();
    let c = server.client();
    let v = c.send("POST", "/api/tasks/cleanup", None, &[]).json();
    assert_eq!(
        v,
        json!({"success": true, "message": "Cleaned up 0 old tasks", "removed_count": 0, "remaining_tasks": 2})
    );
    std::thread::sleep(Duration::from_millis(50));
    let v = c
        .post("/api/tasks/cleanup", &json!({"days": 0.0000001}))
        .json();
    assert_eq!(v["removed_count"], 1, "{v}");
    assert_eq!(v["remaining_tasks"], 1);
    for body in [
        json!({"days": -1}),
        json!({"days": "30"}),
        json!({"days": 1e300}),
        json!({"weeks": 1}),
    ] {
        let p = assert_problem(&c.post("/api/tasks/cleanup", &body), 400, "invalid_input");
        assert!(p["at"].as_str().unwrap().starts_with("$."), "{body}: {p}");
    }
}

// ----- seed 001 ------------------------------------------------------------------------------

#[test]
fn autodev_history_has_the_record_fields() {
    let server = TestServer::start();
    let s = server.state.store();
    let t = s
        .submit(NewTask::new("h").provider("claude").model("m1"))
        .unwrap();
    s.start(&t.id).unwrap();
    s.fail(&t.id, "it broke").unwrap();
    let resp = server.client().get(&format!("/api/tasks/history/{}", t.id));
    assert_eq!(resp.status, 200, "{}", resp.text);
    let v = resp.json();
    assert_eq!(v["task_id"], t.id.as_str());
    assert_eq!(v["count"], 3);
    let h = v["history"].as_array().unwrap();
    for r in h {
        has_fields(
            r,
            &[
                "id",
                "task_id",
                "state_from",
                "state_to",
                "timestamp",
                "provider",
                "model",
                "error_message",
                "details",
                "user_id",
                "event",
            ],
        );
        assert_eq!(r["provider"], "claude");
        assert_eq!(r["user_id"], "default");
    }
    assert_eq!(h[0]["state_from"], Value::Null);
    assert_eq!(h[0]["state_to"], "pending");
    assert_eq!(h[2]["state_from"], "running");
    assert_eq!(h[2]["state_to"], "failed");
    assert_eq!(h[2]["error_message"], "it broke");
    assert!(h[0]["id"].as_u64().unwrap() < h[2]["id"].as_u64().unwrap());
    // Removed tasks keep their history.
    s.remove(&t.id, Some("gone")).unwrap();
    let v = server
        .client()
        .get(&format!("/api/tasks/history/{}", t.id))
        .json();
    assert_eq!(v["count"], 4, "{v}");
    assert_problem(
        &server.client().get("/api/tasks/history/nope"),
        404,
        "not_found",
    );
}

#[test]
fn autodev_persistent_filters_by_every_parameter() {
    let server = TestServer::start();
    let s = server.state.store();
    let mk = |title: &str, role: &str, provider: &str| {
        s.submit(NewTask::new(title).role(role).provider(provider))
            .unwrap()
    };
    let a = mk("login page", "frontend", "claude");
    let b = mk("login api", "backend", "claude");
    let _c = mk("billing", "backend", "openai");
    let d = mk("docs", "writer", "claude");
    s.start(&b.id).unwrap();
    let c = server.client();
    let ids = |q: &str| -> Vec<String> {
        let resp = c.get(&format!("/api/tasks/persistent{q}"));
        assert_eq!(resp.status, 200, "{q}: {}", resp.text);
        let v = resp.json();
        has_fields(&v, &["tasks", "total", "limit", "offset"]);
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("").len(), 4);
    assert_eq!(ids("?states=").len(), 4, "empty: any state");
    assert_eq!(
        ids("?states=running,queued&roles=backend,frontend&providers=claude&search=login"),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(ids("?states=processing"), vec![b.id.clone()]);
    assert_eq!(ids("?roles=writer"), vec![d.id.clone()]);
    assert_eq!(ids("?providers=openai,nobody").len(), 1);
    assert_eq!(ids("?search=LOGIN&limit=1"), vec![a.id.clone()]);
    assert_eq!(ids("?search=login&limit=1&offset=1"), vec![b.id.clone()]);
    assert_eq!(
        ids("?roles=backend,frontend&limit=1&offset=1"),
        vec![b.id.clone()]
    );
    let v = c
        .get("/api/tasks/persistent?roles=backend,frontend&limit=1")
        .json();
    assert_eq!(v["total"], 3);
    assert_eq!(v["limit"], 1);
    assert_eq!(
        ids("?date_from=2000-01-01T00:00:00Z&date_to=2999-12-31T23:59:59Z").len(),
        4
    );
    assert_eq!(ids("?date_to=2000-01-01T00:00:00Z").len(), 0);
    assert_eq!(ids("?date_from=2000-01-01T00:00:00.5%2B02:00").len(), 4);
    let created = s.get(&a.id).unwrap().created_at.to_rfc3339();
    assert!(
        ids(&format!("?date_to={created}")).contains(&a.id),
        "date_to is inclusive"
    );
    for (q, at) in [
        ("states=finished", "states"),
        ("states=RUNNING", "states"),
        ("states=running,", "states"),
        ("date_to=", "date_to"),
        ("date_to=0.5", "date_to"),
        ("date_from=2024-01-01", "date_from"),
        ("date_from=2024-01-01T00:00:00", "date_from"),
        ("date_from=2024-13-01T00:00:00Z", "date_from"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=100000", "limit"),
        ("offset=x", "offset"),
        ("date_from=yesterday", "date_from"),
        ("date_to=1/2/2024", "date_to"),
        ("state=running", "state"),
        ("search=a&search=b", "search"),
    ] {
        let p = assert_problem(
            &c.get(&format!("/api/tasks/persistent?{q}")),
            400,
            "bad_request",
        );
        assert_eq!(p["at"], at, "{q}: {p}");
    }
}

#[test]
fn autodev_recover_interrupts_stuck_and_orphaned_tasks_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    // A task left running (no lease) by an earlier session that closed cleanly: orphaned.
    let earlier = Store::open(&path).unwrap();
    let orphan = earlier.submit(NewTask::new("orphan")).unwrap();
    earlier.start(&orphan.id).unwrap();
    earlier.close().unwrap();
    drop(earlier);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&orphan.id).unwrap().state, TaskState::Running);
    let server = TestServer::over(dir, store, ServerOptions::default());
    let s = server.state.store();
    let stuck = s.submit(NewTask::new("stuck")).unwrap();
    s.claim(&stuck.id, "w", 1).unwrap();
    let held = s.submit(NewTask::new("held")).unwrap();
    s.claim(&held.id, "w", 60_000).unwrap();
    let here = s.submit(NewTask::new("here")).unwrap();
    s.start(&here.id).unwrap();
    let idle = s.submit(NewTask::new("idle")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let c = server.client();
    let post = |id: &str| c.send("POST", &format!("/api/tasks/{id}/recover"), None, &[]);

    let v = post(&stuck.id).json();
    has_fields(
        &v,
        &[
            "success",
            "task_id",
            "recovered",
            "action",
            "message",
            "task",
        ],
    );
    assert_eq!(
        (v["recovered"].clone(), v["action"].clone()),
        (json!(true), json!("failed")),
        "MarkFailed is the default policy: {v}"
    );
    assert_eq!(v["task"]["state"], "failed");
    let v = post(&orphan.id).json();
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(s.get(&orphan.id).unwrap().state, TaskState::Failed);
    let v = post(&idle.id).json();
    assert_eq!(
        (v["recovered"].clone(), v["action"].clone()),
        (json!(false), json!("none")),
        "{v}"
    );
    assert_problem(&post(&held.id), 409, "still_running");
    assert_problem(&post(&here.id), 409, "still_running");
    assert_eq!(s.get(&held.id).unwrap().state, TaskState::Running);
    assert_problem(&post("nope"), 404, "not_found");
}

#[test]
fn autodev_outputs_round_trip_with_the_seed_fields() {
    let server = TestServer::start();
    let s = server.state.store();
    let t = s
        .submit(NewTask::new("o").meta("branch", json!("main")))
        .unwrap();
    s.start(&t.id).unwrap();
    let c = server.client();
    let path = format!("/api/tasks/outputs/{}", t.id);
    let resp = c.post(&path, &json!({"output_type": "artifact", "content": "report", "file_path": "out/r.pdf", "file_size": 1234, "mime_type": "application/pdf"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let r = resp.json();
    assert_eq!(r["id"], 1);
    assert_eq!(r["output_type"], "artifact");
    assert_eq!(r["file_size"], 1234);
    assert_eq!(r["branch"], "main");
    let r = c
        .post(
            &path,
            &json!({"output_type": "commit", "content": "abc123"}),
        )
        .json();
    assert_eq!(
        (r["id"].clone(), r["commit_hash"].clone()),
        (json!(2), json!("abc123")),
        "{r}"
    );
    let v = c.get(&path).json();
    assert_eq!(v["count"], 2);
    for o in v["outputs"].as_array().unwrap() {
        has_fields(
            o,
            &[
                "id",
                "task_id",
                "output_type",
                "content",
                "timestamp",
                "file_path",
                "file_size",
                "mime_type",
                "commit_hash",
                "branch",
            ],
        );
    }
    assert_eq!(v["outputs"][0]["mime_type"], "application/pdf");
    for body in [
        json!({"output_type": "video", "content": "x"}),
        json!({"output_type": "log"}),
        json!({"output_type": "log", "content": "x", "file_size": -3}),
        json!({"output_type": "log", "content": "x", "commit_hash": "y"}),
    ] {
        let p = assert_problem(&c.post(&path, &body), 400, "invalid_input");
        assert!(p["at"].as_str().unwrap().starts_with('$'), "{p}");
    }
    assert_problem(
        &c.post(
            "/api/tasks/outputs/nope",
            &json!({"output_type": "log", "content": "x"}),
        ),
        404,
        "not_found",
    );
    assert_problem(&c.get("/api/tasks/outputs/nope"), 404, "not_found");
}

#[test]
fn autodev_persistence_stats_have_counts_storage_and_recovery() {
    let server = TestServer::start();
    let s = server.state.store();
    let t = s.submit(NewTask::new("x").role("r")).unwrap();
    s.remove(&t.id, None).unwrap();
    s.submit(NewTask::new("y").provider("p")).unwrap();
    let v = server.client().get("/api/persistence/stats").json();
    has_fields(
        &v,
        &[
            "total_tasks",
            "by_state",
            "by_role",
            "by_provider",
            "history_events",
            "removed_tasks",
            "storage",
            "recovery_at_open",
            "healthy",
        ],
    );
    assert_eq!(v["total_tasks"], 1);
    assert_eq!(v["removed_tasks"], 1);
    assert_eq!(v["history_events"], 3);
    assert_eq!(v["by_provider"]["p"], 1);
    assert_eq!(v["healthy"], true);
    assert!(v["storage"]["log_bytes"].as_u64().unwrap() > 0);
    assert!(v["recovery_at_open"]["events_replayed"].is_u64());
}

// ----- seed 003 ------------------------------------------------------------------------------

#[test]
fn recovery_health_counts_by_the_stated_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let earlier = Store::open(&path).unwrap();
    let orphan = earlier.submit(NewTask::new("orphan")).unwrap();
    earlier.start(&orphan.id).unwrap();
    earlier.close().unwrap();
    drop(earlier);
    let store = Store::open(&path).unwrap();
    let server = TestServer::over(dir, store, ServerOptions::default());
    let s = server.state.store();
    let c = server.client();

    let v = c.get("/health/recovery").json();
    has_fields(
        &v,
        &[
            "overall_health",
            "recovery_queue_depth",
            "recent_failure_count",
            "orphaned_task_count",
            "stuck_task_count",
            "timestamp",
        ],
    );
    assert_eq!(v["overall_health"], "degraded", "{v}");
    assert_eq!(v["orphaned_task_count"], 1);
    assert_eq!(v["stuck_task_count"], 0);

    let stuck = s.submit(NewTask::new("stuck")).unwrap();
    s.claim(&stuck.id, "w", 1).unwrap();
    let failed = s.submit(NewTask::new("f")).unwrap();
    s.start(&failed.id).unwrap();
    s.fail(&failed.id, "x").unwrap();
    s.retry(&failed.id).unwrap();
    s.submit(NewTask::new("fresh")).unwrap();
    let gone = s.submit(NewTask::new("g")).unwrap();
    s.start(&gone.id).unwrap();
    s.fail(&gone.id, "y").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let v = c.get("/health/recovery").json();
    assert_eq!(v["stuck_task_count"], 1, "{v}");
    assert_eq!(v["recovery_queue_depth"], 1, "only the retried task: {v}");
    assert_eq!(v["recent_failure_count"], 1, "{v}");

    // Recover both (MarkFailed), then a 24-hour recovery that succeeds: requeue after an
    // interruption needs a retry; the retried task completes.
    c.send(
        "POST",
        &format!("/api/tasks/{}/recover", orphan.id),
        None,
        &[],
    );
    c.send("POST", "/v1/recover", None, &[]);
    let v = c.get("/health/recovery").json();
    assert_eq!(v["overall_health"], "healthy", "{v}");
    s.retry(&stuck.id).unwrap();
    s.start(&stuck.id).unwrap();
    s.complete(&stuck.id, None).unwrap();
    let m = c.get("/health/recovery/metrics").json();
    has_fields(
        &m,
        &[
            "task_state_distribution",
            "recovery_success_rate_24h",
            "total_recovery_attempts_24h",
            "successful_recoveries_24h",
            "average_recovery_time_seconds",
        ],
    );
    assert_eq!(m["total_recovery_attempts_24h"], 2, "{m}");
    assert_eq!(m["successful_recoveries_24h"], 1, "{m}");
    assert_eq!(m["recovery_success_rate_24h"], 50.0);
    assert!(m["average_recovery_time_seconds"].as_f64().unwrap() >= 0.0);
    let d = &m["task_state_distribution"];
    assert_eq!(d["processing"], d["running"]);
    has_fields(
        d,
        &[
            "pending",
            "running",
            "completed",
            "failed",
            "cancelled",
            "orphaned",
            "stuck",
        ],
    );

    let v = c.get("/health/detailed").json();
    has_fields(
        &v,
        &[
            "status",
            "timestamp",
            "ready",
            "reason",
            "tasks",
            "store",
            "recovery",
            "recovery_at_open",
        ],
    );
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["ready"], true);
    assert_eq!(v["recovery"]["overall_health"], "healthy");
}

#[test]
fn recovery_metrics_with_no_recoveries_are_null_rates() {
    let server = TestServer::start();
    let m = server.client().get("/health/recovery/metrics").json();
    assert_eq!(m["total_recovery_attempts_24h"], 0);
    assert_eq!(m["recovery_success_rate_24h"], Value::Null);
    assert_eq!(m["average_recovery_time_seconds"], Value::Null);
}

#[test]
fn health_documents_answer_while_shutting_down_and_say_unhealthy() {
    let server = TestServer::start();
    server.state.begin_shutdown();
    let c = server.client();
    let v = c.get("/health/detailed").json();
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["ready"], false);
    assert!(v["reason"].as_str().unwrap().contains("shutting down"));
    assert_eq!(
        c.get("/health/recovery").json()["overall_health"],
        "unhealthy"
    );
    for p in [
        "/health/recovery?x=1",
        "/health/detailed?x=1",
        "/health/recovery/metrics?x=1",
        "/api/persistence/stats?x=1",
    ] {
        assert_problem(&c.get(p), 400, "bad_request");
    }
}

#[test]
fn every_seed_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    for (path, method) in [
        ("/api/tasks/stats", "get"),
        ("/api/tasks/export", "post"),
        ("/api/tasks/import", "post"),
        ("/api/tasks/cleanup", "post"),
        ("/api/tasks/history/{task_id}", "get"),
        ("/api/tasks/persistent", "get"),
        ("/api/tasks/{task_id}/recover", "post"),
        ("/api/tasks/outputs/{task_id}", "get"),
        ("/api/tasks/outputs/{task_id}", "post"),
        ("/api/persistence/stats", "get"),
        ("/health/recovery", "get"),
        ("/health/recovery/metrics", "get"),
        ("/health/detailed", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
}

#[test]
fn the_documented_path_pattern_is_the_one_the_server_enforces() {
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    for s in ["SchedulerImportRequest", "SchedulerExportRequest"] {
        let path = &schemas[s]["properties"]["path"];
        assert_eq!(
            path["pattern"],
            tasklog_server::seeds::files::PATH_PATTERN,
            "{s}"
        );
        assert_eq!(path["maxLength"], 1024, "{s}");
    }
}

#[test]
fn the_state_spellings_match_the_library_and_the_documented_pattern() {
    use tasklog_server::seeds::persistent::STATE_SPELLINGS;
    for (name, state) in STATE_SPELLINGS {
        assert_eq!(tasklog::export::state_alias(name), Some(state), "{name}");
    }
    let alt = STATE_SPELLINGS.map(|(n, _)| n).join("|");
    let want = format!("^(({alt})(,({alt}))*)?$");
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    let params = doc["paths"]["/api/tasks/persistent"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let states = params.iter().find(|p| p["name"] == "states").unwrap();
    assert_eq!(states["schema"]["pattern"], want.as_str());
}
