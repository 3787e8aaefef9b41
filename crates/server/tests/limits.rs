//! Per-kind admission rules over HTTP (issue #19): `/v1/kinds` sets, lists, pauses and resumes;
//! a concurrency limit holds across HTTP workers and the library's runtime workers over the
//! same store (measured from the durable history); a paused kind is passed over by claims and
//! a direct start answers 429 `throttled`; bad rules are 400 naming the JSON path.
//!
//! Method: a real server on a loopback port; HTTP workers are threads claiming and completing
//! in a loop while a `Runtime` over the same store runs the same kind. Afterwards every
//! history is merged in LSN order and swept to find the most tasks ever running at once.
//! Every wait is bounded; nothing is timed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TestServer;
use tasklog::runtime::{Kind, Runtime, RuntimeOptions, TaskContext};
use tasklog::{NewTask, TaskState};

const KIND: &str = "runtime.kind";

fn put(c: &support::Client, path: &str, body: &Value) -> support::Resp {
    c.send("PUT", path, Some(body), &[])
}

#[test]
fn a_limit_holds_across_http_and_runtime_workers() {
    let server = TestServer::start();
    let store = server.state.store().clone();
    let c = server.client();
    let r = put(&c, "/v1/kinds/render", &json!({"max_running": 2}));
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<String> = (0..150)
        .map(|i| {
            store
                .submit(NewTask::new(format!("r{i}")).meta(KIND, json!("render")))
                .unwrap()
                .id
        })
        .collect();
    // The library's runtime, over the same store, competes for the same kind.
    let mut rt = Runtime::new(
        store.clone(),
        RuntimeOptions {
            workers: 3,
            ..RuntimeOptions::default()
        },
    );
    rt.register(
        "render",
        Kind::new(|ctx: &TaskContext, _| {
            ctx.wait_cancelled(Duration::from_micros(300));
            Ok(json!("runtime"))
        }),
    );
    rt.start().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (base, done) = (server.base.clone(), done.clone());
            std::thread::spawn(move || {
                let c = support::Client::new(&base);
                while !done.load(Ordering::SeqCst) {
                    let r = c.post(
                        "/v1/workers/claim",
                        &json!({"owner": format!("http-{w}"), "kinds": ["render"], "wait_ms": 50}),
                    );
                    if r.status == 204 {
                        continue;
                    }
                    assert_eq!(r.status, 200, "{}", r.text);
                    let v = r.json();
                    let id = v["task"]["id"].as_str().unwrap().to_string();
                    let token = v["token"].as_str().unwrap().to_string();
                    let r = c.post(
                        &format!("/v1/workers/tasks/{id}/complete"),
                        &json!({"owner": format!("http-{w}"), "token": token, "result": "http"}),
                    );
                    assert_eq!(r.status, 200, "{}", r.text);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ids
        .iter()
        .all(|id| store.get(id).is_ok_and(|t| t.state == TaskState::Completed))
    {
        assert!(Instant::now() < deadline, "tasks did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    // Sweep the merged histories in LSN order.
    let mut edges = Vec::new();
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let t = store.get(id).unwrap();
        *by.entry(t.result.unwrap().as_str().unwrap().to_string())
            .or_default() += 1;
        for e in store.history(id).unwrap() {
            match (e.kind, e.from) {
                ("started", _) => edges.push((e.lsn, 1i64)),
                (_, Some(TaskState::Running)) if e.to != Some(TaskState::Running) => {
                    edges.push((e.lsn, -1))
                }
                _ => {}
            }
        }
    }
    edges.sort();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    eprintln!("peak {peak}, completed by {by:?}");
    assert!(peak <= 2, "limit exceeded: {peak}");
    assert!(by.contains_key("http"), "no HTTP worker ran a task: {by:?}");
    rt.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn pause_resume_and_listing_over_http() {
    let server = TestServer::start();
    let store = server.state.store().clone();
    let c = server.client();
    let t = store
        .submit(NewTask::new("mail").meta(KIND, json!("mail")))
        .unwrap();
    let r = c.send("POST", "/v1/kinds/mail/pause", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["paused"], true);
    let r = c.post(
        "/v1/workers/claim",
        &json!({"owner": "w", "kinds": ["mail"], "wait_ms": 0}),
    );
    assert_eq!(r.status, 204, "a paused kind was handed out: {}", r.text);
    // A direct start is refused, nothing written.
    let r = c.post(&format!("/v1/tasks/{}/start", t.id), &json!({}));
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["code"], "throttled");
    assert_eq!(store.get(&t.id).unwrap().version, t.version);
    let r = c.get("/v1/kinds");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"kinds": {"mail": {"paused": true}}}));
    // Resume (with an empty JSON body, which some clients send): claimable again.
    let r = c.post("/v1/kinds/mail/resume", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.post(
        "/v1/workers/claim",
        &json!({"owner": "w", "kinds": ["mail"], "wait_ms": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.get("/v1/kinds").json(), json!({"kinds": {}}));
}

#[test]
fn a_rate_limited_start_says_when_to_retry() {
    let server = TestServer::start();
    let store = server.state.store().clone();
    let c = server.client();
    let r = put(
        &c,
        "/v1/kinds/sms",
        &json!({"rate": {"starts": 1, "per_ms": 3_600_000}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<String> = (0..2)
        .map(|i| {
            store
                .submit(NewTask::new(format!("s{i}")).meta(KIND, json!("sms")))
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(
        c.post(&format!("/v1/tasks/{}/start", ids[0]), &json!({}))
            .status,
        200
    );
    let r = c.post(&format!("/v1/tasks/{}/start", ids[1]), &json!({}));
    assert_eq!(r.status, 429, "{}", r.text);
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3_600).contains(&after), "{after}");
    // A claim passes over it without waiting out the window.
    let r = c.post(
        "/v1/workers/claim",
        &json!({"owner": "w", "kinds": ["sms"], "wait_ms": 0}),
    );
    assert_eq!(r.status, 204, "{}", r.text);
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let server = TestServer::start();
    let c = server.client();
    for (body, at) in [
        (
            json!({"rate": {"starts": 0, "per_ms": 10}}),
            "$.rate.starts",
        ),
        (json!({"rate": {"starts": 1, "per_ms": 0}}), "$.rate.per_ms"),
        (json!({"max_running": 0}), "$.max_running"),
        (
            json!({"per_key": {"field": "c", "max_running": 0}}),
            "$.per_key.max_running",
        ),
    ] {
        let r = put(&c, "/v1/kinds/k", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.json()["at"], at, "{body}: {}", r.text);
    }
    let r = put(&c, "/v1/kinds/k", &json!({"max_running": 1, "extra": 1}));
    assert_eq!(r.status, 400, "{}", r.text);
    let long = "k".repeat(300);
    let r = c.send("POST", &format!("/v1/kinds/{long}/pause"), None, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(c.get("/v1/kinds").json(), json!({"kinds": {}}));
}
