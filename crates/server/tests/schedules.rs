//! The schedule routes: `POST/GET /v1/schedules`, `GET/DELETE /v1/schedules/{name}`,
//! `POST .../pause|resume`, `GET .../runs`; bad definitions answered 400 naming the JSON path;
//! a schedule record is never handed to a worker's claim; `/v1/stats` carries the schedule
//! figures; and `serve()` fires schedules itself, each fire time once.
//!
//! Method: a real server on a loopback port over a fresh store. Firing is driven either by a
//! `Scheduler` with a `ManualClock` over the server's store (so fire times are exact) or, for
//! `serve()`, by its own loop on the real clock with a 20 ms interval schedule. Every wait is
//! bounded.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TestServer;
use tasklog::runtime::schedule::{ManualClock, Scheduler};
use tasklog::task::Timestamp;
use tasklog_server::ServerOptions;

fn assert_problem(r: &support::Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text
    );
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    v
}

#[test]
fn a_schedule_is_created_listed_paused_resumed_and_removed() {
    let server = TestServer::start();
    let c = server.client();
    let body = json!({
        "name": "weekday-report",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "task": {"title": "report", "kind": "report", "input": {"to": "ops"}, "priority": 3},
        "overlap": "queue_one",
        "catch_up": "all",
        "catch_up_max": 5,
        "jitter_ms": 1000
    });
    let r = c.post("/v1/schedules", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    assert_eq!(v["name"], "weekday-report");
    assert_eq!(v["task_id"], "schedule:weekday-report");
    assert_eq!(v["paused"], false);
    assert_eq!(v["next_fires"].as_array().unwrap().len(), 3);
    assert_eq!(v["definition"]["overlap"], "queue_one");
    assert_eq!(v["counts"]["runs"], 0);
    // 09:00 in Berlin is 07:00 or 08:00 UTC, on a weekday.
    let next = Timestamp::parse(v["next_fire_at"].as_str().unwrap()).unwrap();
    let t = chrono::DateTime::from_timestamp_millis(next.as_millis()).unwrap();
    assert!(["07:00:00", "08:00:00"].contains(&t.format("%H:%M:%S").to_string().as_str()));

    assert_problem(&c.post("/v1/schedules", &body), 409, "already_exists");
    let list = c.get("/v1/schedules").json();
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);
    let got = c.get("/v1/schedules/weekday-report");
    assert_eq!(got.status, 200);

    let p = c
        .post("/v1/schedules/weekday-report/pause", &json!({}))
        .json();
    assert_eq!(p["paused"], true);
    assert_eq!(p["next_fire_at"], Value::Null);
    let p = c
        .post("/v1/schedules/weekday-report/resume", &json!({}))
        .json();
    assert_eq!(p["paused"], false);

    let d = c.delete("/v1/schedules/weekday-report");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_problem(&c.get("/v1/schedules/weekday-report"), 404, "not_found");
    assert_problem(&c.delete("/v1/schedules/weekday-report"), 404, "not_found");
    assert_problem(
        &c.post("/v1/schedules/nope/pause", &json!({})),
        404,
        "not_found",
    );
}

#[test]
fn bad_definitions_are_400_naming_the_json_path_and_write_nothing() {
    let server = TestServer::start();
    let c = server.client();
    let cases = [
        (json!({"name": "x", "cron": "0 25 * * *"}), "$.cron"),
        (
            json!({"name": "x", "cron": "0 9 * * *", "timezone": "Europe/Atlantis"}),
            "$.timezone",
        ),
        (json!({"name": "x y", "every_ms": 60000}), "$.name"),
        (
            json!({"name": "x", "every_ms": 60000, "cron": "* * * * *"}),
            "$.every_ms",
        ),
        (json!({"name": "x", "every_ms": 0}), "$.every_ms"),
        (
            json!({"name": "x", "every_ms": 60000, "catch_up_max": 100000}),
            "$.catch_up_max",
        ),
        (
            json!({"name": "x", "every_ms": 60000, "task": {"priority": 11}}),
            "$.task.priority",
        ),
    ];
    for (body, at) in cases {
        let v = assert_problem(&c.post("/v1/schedules", &body), 400, "invalid_input");
        assert_eq!(v["at"], at, "{body}: {v}");
    }
    // Unknown fields and wrong types are refused by the JSON reader, also naming the path.
    let v = assert_problem(
        &c.post(
            "/v1/schedules",
            &json!({"name": "x", "every_ms": 60000, "ovrlap": "skip"}),
        ),
        400,
        "invalid_input",
    );
    assert_eq!(v["at"], "$.ovrlap", "{v}");
    let r = c.post(
        "/v1/schedules",
        &json!({"name": "x", "every_ms": 60000, "overlap": "sometimes"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_problem(&c.get("/v1/schedules/a%20b"), 400, "invalid_input");
    let r = c.get("/v1/schedules/x/runs?limit=0");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(server.state.store().len(), 0, "nothing written");
}

#[test]
fn runs_are_listed_counted_in_stats_and_a_record_is_never_claimed() {
    let server = TestServer::start();
    let c = server.client();
    // Created ten minutes ago (through the library, which takes the time), so that its runs
    // are due by the real clock that the claim reads.
    let store = server.state.store().clone();
    let spec = serde_json::from_value(
        json!({"name": "tick", "every_ms": 60000, "overlap": "allow", "task": {"kind": "k"}}),
    )
    .unwrap();
    let created = Timestamp::now().plus_millis(-600_000);
    tasklog::runtime::schedule::add(&store, &spec, created).unwrap();
    let clock = ManualClock::at(created);
    let s = Scheduler::new(store.clone(), Arc::new(clock.clone()));
    for _ in 0..3 {
        clock.advance_ms(60_000);
        s.tick().unwrap();
    }
    let runs = c.get("/v1/schedules/tick/runs?limit=2").json();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let first = runs[0]["id"].as_str().unwrap().to_string();
    assert!(first.starts_with("tick@"), "{first}");
    // A claim of any kind gets the runs, never the schedule's record.
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let r = c.post("/v1/workers/claim", &json!({"owner": "w"}));
        if r.status == 200 {
            claimed.push(r.json()["task"]["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    assert!(claimed.iter().all(|id| id.starts_with("tick@")));
    for id in &claimed[..2] {
        store.complete(id, None).unwrap();
    }
    store.fail(&claimed[2], "boom").unwrap();
    let st = c.get("/v1/stats").json();
    assert_eq!(st["scheduled"], 1);
    assert_eq!(st["one_time"], 0);
    assert_eq!(st["total_runs"], 3);
    assert_eq!(st["total_successes"], 2);
    assert_eq!(st["total_failures"], 1);
    assert_eq!(st["schedules"]["tick"]["runs"], 3);
    assert!(st["by_state"].is_object(), "the documented shape is kept");
    let v = c.get("/v1/schedules/tick").json();
    assert_eq!(v["counts"]["failures"], 1);
}

#[test]
fn openapi_documents_every_schedule_route() {
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/schedules", "post"),
        ("/v1/schedules", "get"),
        ("/v1/schedules/{name}", "get"),
        ("/v1/schedules/{name}", "delete"),
        ("/v1/schedules/{name}/pause", "post"),
        ("/v1/schedules/{name}/resume", "post"),
        ("/v1/schedules/{name}/runs", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} documented"
        );
    }
    assert!(doc["components"]["schemas"]["ScheduleSpec"].is_object());
    assert!(doc["components"]["schemas"]["ScheduleView"].is_object());
}

/// Runs `serve()` over the store at `dir` until the returned sender fires.
fn serve(
    dir: std::path::PathBuf,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let store = tasklog::Store::open(&dir).unwrap();
    let o = ServerOptions::default().schedule_tick_interval(Duration::from_millis(10));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tasklog_server::serve(listener, store, o, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    (
        format!("http://{}", addr_rx.recv().unwrap()),
        stop_tx,
        thread,
    )
}

#[test]
fn serve_fires_schedules_each_fire_time_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (base, stop, thread) = serve(store_dir.clone());
    let c = support::Client::new(&base);
    let r = c.post(
        "/v1/schedules",
        &json!({"name": "fast", "every_ms": 20, "overlap": "allow", "catch_up": "all", "catch_up_max": 1000}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = c.get("/v1/schedules/fast").json();
        if v["counts"]["runs"].as_u64().unwrap() >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "serve never fired: {v}");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.send(()).unwrap();
    thread.join().unwrap();
    // Every fire time from the first to the record's mark, once.
    let store = tasklog::Store::open(&store_dir).unwrap();
    let rec = tasklog::runtime::schedule::Record::from_task(&store.get("schedule:fast").unwrap())
        .unwrap();
    let mut at: Vec<i64> = tasklog::runtime::schedule::runs(&store, "fast", usize::MAX)
        .unwrap()
        .iter()
        .map(|t| t.metadata["schedule.fire_at"].as_i64().unwrap())
        .collect();
    at.sort_unstable();
    let expected: Vec<i64> = (1..)
        .map(|k| rec.anchor_ms + k * 20)
        .take_while(|t| *t <= rec.state.fired_through)
        .collect();
    assert_eq!(at, expected);
}

#[test]
fn an_imported_scheduler_file_keeps_its_run_counters_in_the_scheduler_stats() {
    // Seed 000: 5/5/0 and 5/4/1 on two scheduled tasks, one one-time task completed.
    let server = TestServer::start();
    let c = server.client();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/import/scheduler_000_schedules.json");
    let body: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let r = c.post("/v1/import", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = c.get("/api/tasks/stats").json();
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(v["scheduled"], 2);
    assert_eq!(v["one_time"], 1);
    assert_eq!(v["total_runs"], 11);
    assert_eq!(v["total_successes"], 10);
    assert_eq!(v["total_failures"], 1);
    assert_eq!(
        v["by_status"]["pending"], 0,
        "a schedule's record is not a pending task"
    );
    let list = c.get("/v1/schedules").json();
    assert_eq!(list["schedules"].as_array().unwrap().len(), 2);
    // A dry run adopts nothing.
    let server = TestServer::start();
    let r = server
        .client()
        .send("POST", "/v1/import?dry_run=true", Some(&body), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(server.state.store().len(), 0);
}
