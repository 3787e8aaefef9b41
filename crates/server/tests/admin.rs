//! The maintenance routes under `/v1` over a real server: statistics in the shape of
//! `tasklog stats --json`, the streamed export (JSON and CSV) and its round trip through
//! import, import validation (every problem with its JSON path, nothing applied, dry runs that
//! change nothing), cleanup, snapshot, compact, verify (clean and damaged) and lease recovery;
//! and for every route, bad parameters and bodies answered 4xx problem+json, never 5xx.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Resp, TestServer};
use tasklog::NewTask;

/// Sends raw bytes (any body, any content type).
fn raw(server: &TestServer, method: &str, path: &str, body: &[u8], ctype: &str) -> Resp {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{}", server.base, path))
        .header("content-type", ctype)
        .body(body.to_vec())
        .unwrap();
    let resp = agent.run(req).unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    Resp {
        status,
        headers,
        text,
    }
}

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

/// Three tasks: one completed (role a, meta team=x), one failed, one pending.
fn seed(server: &TestServer) -> Vec<String> {
    let s = server.state.store();
    let a = s
        .submit(NewTask::new("alpha").role("a").meta("team", json!("x")))
        .unwrap();
    s.start(&a.id).unwrap();
    s.complete(&a.id, Some(json!({"ok": true}))).unwrap();
    let b = s.submit(NewTask::new("beta").provider("p")).unwrap();
    s.start(&b.id).unwrap();
    s.fail(&b.id, "boom").unwrap();
    let c = s
        .submit(NewTask::new("gamma").meta("team", json!("y")))
        .unwrap();
    vec![a.id, b.id, c.id]
}

// ----- stats ---------------------------------------------------------------------------------

#[test]
fn stats_has_the_shape_of_the_cli_json() {
    let server = TestServer::start();
    seed(&server);
    let store = server.state.store();
    let resp = server.client().get("/v1/stats?by=team");
    assert_eq!(resp.status, 200, "{}", resp.text);
    let got = resp.json();
    // What `tasklog stats --by team --json` builds (crates/cli/src/commands/read.rs).
    let mut want = serde_json::to_value(store.stats(Some("team")).unwrap()).unwrap();
    want["runtime"] =
        serde_json::to_value(tasklog::runtime::health_from_store(store).unwrap()).unwrap();
    // ... and the schedule figures (`scheduled`, `one_time`, `total_runs`, ...).
    let schedules = tasklog::runtime::schedule::stats(store).unwrap();
    if let Value::Object(extra) = serde_json::to_value(&schedules).unwrap() {
        want.as_object_mut().unwrap().extend(extra);
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&want), "same keys in the same order");
    for k in keys(&want) {
        if k != "health" {
            assert_eq!(got[&k], want[&k], "{k}");
        }
    }
    assert_eq!(keys(&got["health"]), keys(&want["health"]));
    assert_eq!(got["total"], 3);
    assert_eq!(got["by_state"]["completed"], 1);
    assert_eq!(got["by_state"]["cancelled"], 0);
    assert_eq!(got["by_key"]["key"], "team");
    assert_eq!(got["by_key"]["counts"]["x"], 1);
    assert_eq!(got["by_key"]["counts"]["(none)"], 1);
    // Without `by`, no by_key.
    let plain = server.client().get("/v1/stats").json();
    assert!(plain.get("by_key").is_none(), "{plain}");
}

#[test]
fn stats_refuses_bad_query_parameters() {
    let server = TestServer::start();
    let c = server.client();
    let p = assert_problem(&c.get("/v1/stats?by="), 400, "bad_request");
    assert_eq!(p["at"], "by");
    // A repeated `by` counts by each key (issue #19); more than 16 keys is refused.
    let r = c.get("/v1/stats?by=a&by=b");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["by_keys"][1]["key"], "b");
    let many: Vec<String> = (0..17).map(|i| format!("by=k{i}")).collect();
    let p = assert_problem(
        &c.get(&format!("/v1/stats?{}", many.join("&"))),
        400,
        "invalid_input",
    );
    assert_eq!(p["at"], "by");
    let p = assert_problem(&c.get("/v1/stats?bye=a"), 400, "bad_request");
    assert_eq!(p["at"], "bye");
}

// ----- export and import ---------------------------------------------------------------------

#[test]
fn export_streams_json_that_imports_into_another_server() {
    let a = TestServer::start();
    let ids = seed(&a);
    let resp = a.client().get("/v1/export");
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(
        resp.header("content-disposition")
            .unwrap()
            .contains(".json"),
        "{:?}",
        resp.headers
    );
    let doc = resp.json();
    assert_eq!(doc["format"], "tasklog");
    assert_eq!(doc["task_count"], 3);
    let events = |id: &str| doc["tasks"][id]["history"].as_array().unwrap().len();
    assert_eq!(
        (events(&ids[0]), events(&ids[1]), events(&ids[2])),
        (3, 3, 1),
        "{doc}"
    );

    let b = TestServer::start();
    let resp = raw(
        &b,
        "POST",
        "/v1/import",
        resp.text.as_bytes(),
        "application/json",
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let report = resp.json();
    assert_eq!(report["imported"], 3, "{report}");
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["format"], "tasklog");
    for id in &ids {
        let (x, y) = (
            a.state.store().get(id).unwrap(),
            b.state.store().get(id).unwrap(),
        );
        assert_eq!((x.title, x.state, x.result), (y.title, y.state, y.result));
    }
}

#[test]
fn export_without_history_and_as_csv() {
    let server = TestServer::start();
    seed(&server);
    let c = server.client();
    let doc = c.get("/v1/export?history=false").json();
    for (_, t) in doc["tasks"].as_object().unwrap() {
        assert!(t.get("history").is_none_or(Value::is_null), "{t}");
    }
    let resp = c.get("/v1/export?format=csv");
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = resp.text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows: {}", resp.text);
    assert!(lines[0].starts_with("id,"), "{}", lines[0]);
}

#[test]
fn export_refuses_bad_query_parameters() {
    let server = TestServer::start();
    let c = server.client();
    for (q, at) in [
        ("format=xml", "format"),
        ("format=JSON", "format"),
        ("history=maybe", "history"),
        ("format=json&format=csv", "format"),
        ("limit=3", "limit"),
    ] {
        let p = assert_problem(&c.get(&format!("/v1/export?{q}")), 400, "bad_request");
        assert_eq!(p["at"], at, "{q}: {p}");
    }
}

#[test]
fn import_dry_run_reports_and_changes_nothing() {
    let server = TestServer::start();
    seed(&server);
    let store = server.state.store();
    let (len, lsn) = (store.len(), store.last_lsn());
    let doc = json!({"version": "1.0", "exported_at": "2024-01-15T10:30:00", "cluster_name": "prod",
        "tasks": {"n1": {"title": "new", "status": "queued"}, "n2": {"title": "two", "status": "done"}}});
    let resp = server
        .client()
        .post("/v1/import?dry_run=true&mode=replace", &doc);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let r = resp.json();
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["imported"], 2);
    assert_eq!(
        r["removed"], 3,
        "replace would remove the three others: {r}"
    );
    assert_eq!(r["format"], "wrapped");
    assert_eq!(r["metadata"]["cluster_name"], "prod");
    assert_eq!(
        (store.len(), store.last_lsn()),
        (len, lsn),
        "nothing written"
    );
    assert!(store.get("n1").is_err());

    // The same without dry run applies it.
    let r = server.client().post("/v1/import?mode=replace", &doc).json();
    assert_eq!(r["imported"], 2, "{r}");
    assert_eq!(store.len(), 2);
    assert_eq!(
        store.get("n2").unwrap().state,
        tasklog::TaskState::Completed
    );
}

#[test]
fn import_of_an_invalid_document_lists_every_problem_and_applies_nothing() {
    let server = TestServer::start();
    seed(&server);
    let store = server.state.store();
    let lsn = store.last_lsn();
    let doc = json!({"tasks": {
        "ok": {"title": "fine", "status": "pending"},
        "bad1": {"title": "x", "status": "finished"},
        "bad2": {"status": "pending"}
    }});
    let resp = server.client().post("/v1/import", &doc);
    let p = assert_problem(&resp, 400, "invalid_document");
    let problems: Vec<String> = p["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        problems
            .iter()
            .any(|m| m.contains("bad1") && m.contains("finished")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|m| m.contains("bad2") && m.contains("title")),
        "{problems:?}"
    );
    assert_eq!(store.last_lsn(), lsn, "nothing applied");
    assert!(store.get("ok").is_err());

    // Not JSON at all.
    let resp = raw(
        &server,
        "POST",
        "/v1/import",
        b"{not json",
        "application/json",
    );
    assert_problem(&resp, 400, "invalid_document");
    assert_eq!(store.last_lsn(), lsn);
}

#[test]
fn import_conflicts_follow_on_conflict() {
    let server = TestServer::start();
    let ids = seed(&server);
    let doc = json!([{"id": ids[2], "title": "replaced", "status": "pending"}, {"id": "fresh", "title": "f", "status": "pending"}]);
    let c = server.client();
    let p = assert_problem(
        &c.post("/v1/import?on_conflict=fail", &doc),
        400,
        "invalid_document",
    );
    assert!(p["problems"].to_string().contains(&ids[2]), "{p}");
    let r = c.post("/v1/import", &doc).json();
    assert_eq!(
        (r["imported"].clone(), r["skipped"].clone()),
        (json!(1), json!(1)),
        "{r}"
    );
    assert_eq!(r["skipped_ids"], json!([ids[2]]));
    let r = c.post("/v1/import?on_conflict=overwrite", &doc).json();
    assert_eq!(r["overwritten"], 2, "both ids exist by now: {r}");
    assert_eq!(server.state.store().get(&ids[2]).unwrap().title, "replaced");
}

#[test]
fn import_refuses_bad_query_parameters() {
    let server = TestServer::start();
    let c = server.client();
    let doc = json!([]);
    for (q, at) in [
        ("mode=upsert", "mode"),
        ("on_conflict=ignore", "on_conflict"),
        ("dry_run=yes", "dry_run"),
        ("dry-run=true", "dry-run"),
    ] {
        let p = assert_problem(
            &c.post(&format!("/v1/import?{q}"), &doc),
            400,
            "bad_request",
        );
        assert_eq!(p["at"], at, "{q}: {p}");
    }
}

// ----- cleanup, snapshot, compact, verify, recover -------------------------------------------

#[test]
fn cleanup_removes_finished_tasks_older_than_asked() {
    let server = TestServer::start();
    let ids = seed(&server);
    let c = server.client();
    let r = c.post("/v1/cleanup", &json!({"older_than_secs": 3600.0}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"removed": 0}));
    std::thread::sleep(Duration::from_millis(1100));
    let r = c.post("/v1/cleanup", &json!({"older_than_secs": 1}));
    assert_eq!(
        r.json(),
        json!({"removed": 2}),
        "completed and failed go; pending stays"
    );
    let store = server.state.store();
    assert!(store.get(&ids[0]).is_err());
    assert!(store.get(&ids[2]).is_ok());
    assert!(!store.history(&ids[0]).unwrap().is_empty(), "history kept");
}

#[test]
fn cleanup_refuses_bad_bodies_naming_the_field() {
    let server = TestServer::start();
    let c = server.client();
    for (body, at) in [
        (json!({"older_than_secs": "10"}), "$.older_than_secs"),
        (json!({"older_than_secs": -1}), "$.older_than_secs"),
        (json!({"older_than_secs": 1.5}), "$.older_than_secs"),
        (json!({"older_than_secs": 1e30}), "$.older_than_secs"),
        (
            json!({"older_than_secs": 9_223_372_036_854_775_808_u64}),
            "$.older_than_secs",
        ),
        (json!({}), "$.older_than_secs"),
        (json!({"older_than_secs": 1, "extra": 2}), "$.extra"),
        (json!([1]), "$"),
    ] {
        let p = assert_problem(&c.post("/v1/cleanup", &body), 400, "invalid_input");
        assert_eq!(p["at"], at, "{body}: {p}");
    }
    let p = assert_problem(
        &raw(
            &server,
            "POST",
            "/v1/cleanup",
            b"{\"older_than_secs\": ",
            "application/json",
        ),
        400,
        "bad_request",
    );
    assert_eq!(
        p["at"], "$.older_than_secs",
        "the body ends where that value should be"
    );
    assert_problem(
        &raw(
            &server,
            "POST",
            "/v1/cleanup",
            b"{\"older_than_secs\": 1} x",
            "application/json",
        ),
        400,
        "bad_request",
    );
}

#[test]
fn snapshot_then_compact_report_what_they_wrote_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = tasklog::StoreOptions::new()
        .segment_bytes_max(4096)
        .preallocate(false)
        .snapshots_kept(1)
        .open(dir.path().join("store"))
        .unwrap();
    let server = TestServer::over(dir, store, tasklog_server::ServerOptions::default());
    for i in 0..60 {
        server
            .state
            .store()
            .submit(NewTask::new(format!(
                "task {i} with a longer title to fill segments"
            )))
            .unwrap();
    }
    let c = server.client();
    let snap = c.send("POST", "/v1/snapshot", None, &[]);
    assert_eq!(snap.status, 200, "{}", snap.text);
    let snap = snap.json();
    assert_eq!(snap["lsn"], server.state.store().last_lsn());
    assert!(snap["bytes"].as_u64().unwrap() > 0);
    assert!(std::path::Path::new(snap["path"].as_str().unwrap()).is_file());
    assert!(snap["segments_removed"].is_u64());

    server
        .state
        .store()
        .submit(NewTask::new("one more"))
        .unwrap();
    let first = snap["path"].as_str().unwrap().to_string();
    let comp = c.send("POST", "/v1/compact", None, &[]);
    assert_eq!(comp.status, 200, "{}", comp.text);
    let comp = comp.json();
    assert!(comp["snapshot"]["lsn"].as_u64().unwrap() > snap["lsn"].as_u64().unwrap());
    let removed = comp["removed"].as_array().unwrap();
    assert!(
        removed.iter().any(|f| f["path"] == first.as_str()),
        "the older snapshot is pruned (snapshots_kept 1): {comp}"
    );
    let total: u64 = removed.iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert_eq!(comp["removed_bytes"], total);
    for f in removed {
        assert!(!std::path::Path::new(f["path"].as_str().unwrap()).exists());
    }
}

#[test]
fn verify_reports_a_clean_store_beside_the_running_one() {
    let server = TestServer::start();
    seed(&server);
    let resp = server.client().get("/v1/verify");
    assert_eq!(resp.status, 200, "{}", resp.text);
    let r = resp.json();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["problems"], json!([]));
    assert!(r["log"]["segments"].as_u64().unwrap() >= 1);
    assert_eq!(r["replay"]["tasks"], 3);
    assert_eq!(r["dir"], server.store_dir().display().to_string());
    // The running store still works.
    server.state.store().submit(NewTask::new("after")).unwrap();
}

#[test]
fn verify_reports_a_damaged_snapshot() {
    let server = TestServer::start();
    seed(&server);
    let info = server.state.store().snapshot().unwrap();
    let mut bytes = std::fs::read(&info.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&info.path, bytes).unwrap();
    let r = server.client().get("/v1/verify").json();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["snapshots"][0]["ok"], false, "{r}");
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["check"] == "snapshot" && p["torn_tail"] == false),
        "{r}"
    );
}

#[test]
fn recover_interrupts_running_tasks_whose_lease_expired() {
    let server = TestServer::start();
    let store = server.state.store();
    let held = store.submit(NewTask::new("held")).unwrap();
    store.claim(&held.id, "w1", 60_000).unwrap();
    let lapsed = store.submit(NewTask::new("lapsed")).unwrap();
    store.claim(&lapsed.id, "w2", 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let resp = server.client().send("POST", "/v1/recover", None, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let r = resp.json();
    assert_eq!(r["recovered"], json!([lapsed.id]));
    assert_eq!(r["policy"], "MarkFailed");
    assert_eq!(r["applied"], true);
    assert_eq!(
        store.get(&lapsed.id).unwrap().state,
        tasklog::TaskState::Failed
    );
    assert_eq!(
        store.get(&held.id).unwrap().state,
        tasklog::TaskState::Running
    );
    let again = server
        .client()
        .send("POST", "/v1/recover", None, &[])
        .json();
    assert_eq!(again["recovered"], json!([]));
}

#[test]
fn maintenance_writes_are_503_while_shutting_down() {
    let server = TestServer::start();
    server.state.begin_shutdown();
    let c = server.client();
    for path in ["/v1/snapshot", "/v1/compact", "/v1/recover"] {
        let resp = c.send("POST", path, None, &[]);
        assert_problem(&resp, 503, "shutting_down");
        assert!(resp.header("retry-after").is_some());
    }
    assert_problem(
        &c.post("/v1/cleanup", &json!({"older_than_secs": 1})),
        503,
        "shutting_down",
    );
    assert_problem(&c.get("/v1/export"), 503, "shutting_down");
}

#[test]
fn every_maintenance_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    for (path, method) in [
        ("/v1/stats", "get"),
        ("/v1/export", "get"),
        ("/v1/import", "post"),
        ("/v1/cleanup", "post"),
        ("/v1/snapshot", "post"),
        ("/v1/compact", "post"),
        ("/v1/verify", "get"),
        ("/v1/recover", "post"),
        ("/livez", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"]["200"].is_object(),
            "{method} {path}: no 200"
        );
    }
    let params: Vec<&str> = doc["paths"]["/v1/import"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["mode", "on_conflict", "dry_run"]);
}

#[test]
fn the_openapi_document_has_unique_operation_ids_and_resolvable_refs() {
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                assert!(
                    ids.insert(id.to_string()),
                    "operationId {id} twice ({method} {path})"
                );
            }
        }
    }
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
}

#[test]
fn a_large_export_is_streamed_not_sized_up_front() {
    let server = TestServer::start();
    let tasks: Vec<tasklog::store::Mutation> = (0..3000)
        .map(|i| {
            tasklog::store::Mutation::submit(
                NewTask::new(format!("task number {i}")).description("x".repeat(200)),
            )
        })
        .collect();
    server.state.store().batch(tasks).unwrap();
    let resp = server.client().get("/v1/export");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-length").is_none(),
        "{:?}",
        resp.headers
    );
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert!(resp.text.len() > 1 << 20, "{} bytes", resp.text.len());
    assert_eq!(resp.json()["tasks"].as_object().unwrap().len(), 3000);
}

#[test]
fn an_import_larger_than_the_body_limit_is_413() {
    let mut options = tasklog_server::ServerOptions::default();
    options.max_body_bytes = 1024;
    let server = TestServer::with_options(options);
    let doc: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("t{i}"), "title": "a title", "status": "pending"}))
        .collect();
    let resp = server.client().post("/v1/import", &Value::Array(doc));
    assert_problem(&resp, 413, "too_large");
    assert_eq!(server.state.store().len(), 0);
}

/// A document of 4,096 tasks or more goes through the import's staging segment (validated
/// whole first): the same answers as a small one, all or nothing, and a replacing import keeps
/// the removed task's history.
#[test]
fn a_large_import_is_staged_and_still_all_or_nothing() {
    let server = TestServer::start();
    seed(&server);
    let store = server.state.store();
    let (len, lsn) = (store.len(), store.last_lsn());
    const TASKS: usize = 5_000;
    let mut tasks = serde_json::Map::new();
    for i in 0..TASKS {
        tasks.insert(
            format!("big-{i:05}"),
            json!({"title": format!("t{i}"), "status": "pending"}),
        );
    }
    // One bad task at the end: nothing of the 4,999 good ones may land.
    let mut bad = tasks.clone();
    bad.insert("big-zz".into(), json!({"title": "x", "status": "finished"}));
    let resp = server
        .client()
        .post("/v1/import", &json!({"tasks": Value::Object(bad)}));
    let p = assert_problem(&resp, 400, "invalid_document");
    assert!(p["problems"].to_string().contains("big-zz"), "{p}");
    assert_eq!(
        (store.len(), store.last_lsn()),
        (len, lsn),
        "nothing applied"
    );

    let doc = json!({"tasks": Value::Object(tasks)});
    let r = server.client().post("/v1/import?dry_run=true", &doc).json();
    assert_eq!(
        (r["imported"].as_u64(), r["dry_run"].as_bool()),
        (Some(TASKS as u64), Some(true))
    );
    assert_eq!(
        (store.len(), store.last_lsn()),
        (len, lsn),
        "a dry run writes nothing"
    );

    let r = server.client().post("/v1/import?mode=replace", &doc).json();
    assert_eq!(r["imported"], TASKS, "{r}");
    assert_eq!(r["removed"].as_u64(), Some(len as u64), "{r}");
    assert_eq!(store.len(), TASKS);
    assert_eq!(store.get("big-04999").unwrap().title, "t4999");
    assert_eq!(
        store.last_lsn(),
        lsn + (TASKS + len) as u64,
        "one event per imported and per removed task"
    );
}
