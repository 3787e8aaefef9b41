//! `/livez`, `/readyz` and `/metrics` over a real server: liveness always, readiness refused
//! (503 problem with `Retry-After`) once the store is poisoned or the server shuts down, and a
//! metrics exposition that names every family with HELP and TYPE, counts what it should, and
//! passes `promtool check metrics` when promtool is installed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::TestServer;
use tasklog::wal::sim::SimStorage;
use tasklog::{NewTask, Store, StoreOptions};
use tasklog_server::ServerOptions;

fn assert_problem(resp: &support::Resp, status: u16, code: &str) -> Value {
    assert_eq!(resp.status, status, "{}", resp.text);
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{}",
        resp.text
    );
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    body
}

#[test]
fn livez_answers_and_readyz_is_ready_on_an_open_store() {
    let server = TestServer::start();
    let c = server.client();
    let live = c.get("/livez");
    assert_eq!(live.status, 200, "{}", live.text);
    assert_eq!(live.json()["status"], "ok");
    let ready = c.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["status"], "ready");
}

#[test]
fn readyz_is_503_with_retry_after_while_shutting_down_and_livez_stays_200() {
    let server = TestServer::start();
    server.state.begin_shutdown();
    let c = server.client();
    let resp = c.get("/readyz");
    assert_problem(&resp, 503, "shutting_down");
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    assert_eq!(c.get("/livez").status, 200);
}

#[test]
fn readyz_is_503_poisoned_after_a_failed_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(7);
    let store = Store::open_with(
        dir.path().join("store"),
        StoreOptions::new().storage(Arc::new(sim.clone())),
    )
    .unwrap();
    sim.fail_nth_sync(1);
    assert!(store.submit(NewTask::new("doomed")).is_err());
    assert!(store.poisoned().is_some());
    let server = TestServer::over(dir, store, ServerOptions::default());
    let c = server.client();
    let resp = c.get("/readyz");
    assert_problem(&resp, 503, "poisoned");
    assert_eq!(resp.header("retry-after"), Some("30"));
    let metrics = c.get("/metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    assert!(
        metrics.text.contains("\ntasklog_poisoned 1\n"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("\ntasklog_store_readable 0\n"),
        "{}",
        metrics.text
    );
}

/// Every sample's family has `# HELP` and `# TYPE` lines before it.
fn check_families(text: &str) {
    let mut helped = std::collections::HashSet::new();
    let mut typed = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            typed.insert(name, parts.next().unwrap().to_string());
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|f| {
                        typed
                            .get(*f)
                            .is_some_and(|t| t == "histogram" || t == "summary")
                    })
                })
                .unwrap_or(name);
            assert!(helped.contains(family), "no HELP for {family}: {line}");
            assert!(typed.contains_key(family), "no TYPE for {family}: {line}");
        }
    }
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_expose_requests_store_and_runtime_figures() {
    let server = TestServer::start();
    let store = server.state.store();
    let a = store
        .submit(NewTask::new("a").meta("runtime.kind", "email".into()))
        .unwrap();
    store.claim(&a.id, "w", 60_000).unwrap();
    store.complete(&a.id, None).unwrap();
    let b = store
        .submit(NewTask::new("b").meta("runtime.kind", "email".into()))
        .unwrap();
    store.start(&b.id).unwrap();
    store.fail(&b.id, "boom").unwrap();
    store.submit(NewTask::new("c")).unwrap();
    store.snapshot().unwrap();
    let m = server.state.metrics();
    m.record_request("GET", "/v1/tasks/{id}", 200, Duration::from_millis(3));
    m.record_request("GET", "/v1/tasks/{id}", 200, Duration::from_millis(300));
    m.record_request("POST", "/v1/tasks", 400, Duration::from_micros(200));

    let resp = server.client().get("/metrics");
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let t = &resp.text;
    check_families(t);
    assert_eq!(
        sample(
            t,
            "tasklog_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"200\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            t,
            "tasklog_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"400\"}"
        ),
        1.0
    );
    let h = "tasklog_http_request_duration_seconds";
    let l = "method=\"GET\",route=\"/v1/tasks/{id}\"";
    assert_eq!(sample(t, &format!("{h}_bucket{{{l},le=\"0.001\"}}")), 0.0);
    assert_eq!(sample(t, &format!("{h}_bucket{{{l},le=\"0.005\"}}")), 1.0);
    assert_eq!(sample(t, &format!("{h}_bucket{{{l},le=\"0.5\"}}")), 2.0);
    assert_eq!(sample(t, &format!("{h}_bucket{{{l},le=\"+Inf\"}}")), 2.0);
    assert_eq!(sample(t, &format!("{h}_count{{{l}}}")), 2.0);
    assert!((sample(t, &format!("{h}_sum{{{l}}}")) - 0.303).abs() < 1e-9);
    assert_eq!(sample(t, "tasklog_tasks{state=\"pending\"}"), 1.0);
    assert_eq!(sample(t, "tasklog_tasks{state=\"completed\"}"), 1.0);
    assert_eq!(sample(t, "tasklog_tasks{state=\"failed\"}"), 1.0);
    assert_eq!(sample(t, "tasklog_tasks{state=\"running\"}"), 0.0);
    assert_eq!(
        sample(
            t,
            "tasklog_runtime_runs{kind=\"email\",outcome=\"completed\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(t, "tasklog_runtime_runs{kind=\"email\",outcome=\"failed\"}"),
        1.0
    );
    let last = store.last_lsn() as f64;
    assert_eq!(sample(t, "tasklog_last_lsn"), last);
    assert!(sample(t, "tasklog_events_appended_total") >= 7.0);
    assert!(sample(t, "tasklog_fsyncs_total") >= 1.0);
    assert!(sample(t, "tasklog_log_segments") >= 1.0);
    assert!(sample(t, "tasklog_log_bytes") > 0.0);
    assert!(sample(t, "tasklog_snapshot_age_seconds") >= 0.0);
    assert_eq!(sample(t, "tasklog_snapshots"), 1.0);
    assert!(sample(t, "tasklog_fsync_duration_seconds{quantile=\"0.99\"}") >= 0.0);
    assert_eq!(sample(t, "tasklog_poisoned"), 0.0);

    promtool_check(t);
}

#[test]
fn metrics_label_values_are_escaped() {
    let server = TestServer::start();
    server.state.metrics().record_request(
        "GET",
        "/odd\"route\\x\ny",
        404,
        Duration::from_millis(1),
    );
    let resp = server.client().get("/metrics");
    assert!(
        resp.text.contains("route=\"/odd\\\"route\\\\x\\ny\""),
        "{}",
        resp.text
    );
    promtool_check(&resp.text);
}

#[test]
fn metrics_refuse_query_parameters() {
    let server = TestServer::start();
    let resp = server.client().get("/metrics?x=1");
    assert_problem(&resp, 400, "bad_request");
}

/// Runs `promtool check metrics` on `text`; skipped (with a notice) when promtool is absent.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("NOTICE: promtool not found; skipping `promtool check metrics`");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
