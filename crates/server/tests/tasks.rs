//! The task routes over a real server on a loopback port: every route's success answer and
//! every error status it documents (400 bad JSON / types / query, 404, 409, 412, 415), ETags
//! and If-Match, idempotent submits, batch atomicity, cursor pagination while tasks change,
//! history of removed tasks, and 16 threads submitting at once. Each test checks the answer's
//! status and body, then reads back through another route (or the reopened store) that the
//! change is really there, or really absent.

mod support;

use serde_json::{Value, json};
use support::{Client, Resp, TestServer};

/// Sends a raw body with a content type (the support client only sends JSON values).
fn raw(c: &Client, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Resp {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{}", c.base, path));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = agent.run(req.body(body.to_vec()).unwrap()).unwrap();
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

/// Asserts a problem+json answer with this status and code; returns the problem.
#[track_caller]
fn problem(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text
    );
    let p = r.json();
    assert_eq!(p["code"], code, "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p
}

fn submit(c: &Client, body: Value) -> Value {
    let r = c.post("/v1/tasks", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn post(c: &Client, path: &str, body: Value) -> Resp {
    c.post(path, &body)
}

#[test]
fn submit_then_get_with_etag_and_location() {
    let s = TestServer::start();
    let c = s.client();
    let r = c.post(
        "/v1/tasks",
        &json!({"title": "resize", "role": "dev", "tags": ["a", "a", "b"], "priority": 7,
                "kind": "resize", "input": {"files": 3}, "metadata": {"team": "x"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let t = r.json();
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/tasks/{id}").as_str())
    );
    assert_eq!(t["state"], "pending");
    assert_eq!(t["tags"], json!(["a", "b"]));
    assert_eq!(t["priority"], 7);
    assert_eq!(t["metadata"]["runtime.kind"], "resize");
    assert_eq!(t["metadata"]["runtime.input"], json!({"files": 3}));
    assert_eq!(t["metadata"]["team"], "x");

    let g = c.get(&format!("/v1/tasks/{id}"));
    assert_eq!(g.status, 200);
    assert_eq!(g.header("etag"), Some("\"1\""));
    assert_eq!(g.json(), t);

    let nm = c.send(
        "GET",
        &format!("/v1/tasks/{id}"),
        None,
        &[("if-none-match", "\"1\"")],
    );
    assert_eq!(nm.status, 304);
    let changed = c.send(
        "GET",
        &format!("/v1/tasks/{id}"),
        None,
        &[("if-none-match", "\"9\"")],
    );
    assert_eq!(changed.status, 200);
}

#[test]
fn submit_rejects_bad_bodies_naming_where() {
    let s = TestServer::start();
    let c = s.client();
    let r = raw(
        &c,
        "POST",
        "/v1/tasks",
        Some("application/json"),
        b"{\"title\": ",
    );
    problem(&r, 400, "bad_request");
    let r = raw(
        &c,
        "POST",
        "/v1/tasks",
        Some("application/json"),
        b"{\"title\": \"x\"} trailing",
    );
    problem(&r, 400, "bad_request");
    let r = raw(&c, "POST", "/v1/tasks", Some("application/json"), b"");
    problem(&r, 400, "bad_request");
    let r = raw(
        &c,
        "POST",
        "/v1/tasks",
        Some("text/plain"),
        b"{\"title\": \"x\"}",
    );
    problem(&r, 415, "unsupported_media_type");
    let r = raw(&c, "POST", "/v1/tasks", None, b"{\"title\": \"x\"}");
    problem(&r, 415, "unsupported_media_type");

    let cases = [
        (json!({"title": "x", "priority": "high"}), "$.priority"),
        (json!({"title": "x", "priority": 11}), "$.priority"),
        (json!({"title": "x", "priority": -1}), "$.priority"),
        (json!({"title": 5}), "$.title"),
        (json!({"title": "  "}), "$.title"),
        (json!({"title": "x", "tags": ["a", 3]}), "$.tags[1]"),
        (json!({"title": "x", "actor": "a".repeat(257)}), "$.actor"),
        (
            json!({"title": "x", "request_id": "r".repeat(257)}),
            "$.request_id",
        ),
        (json!({"title": "x", "metadata": []}), "$.metadata"),
    ];
    for (body, at) in cases {
        let p = problem(&c.post("/v1/tasks", &body), 400, "invalid_input");
        assert_eq!(p["at"], at, "{body}: {p}");
    }
    // Missing and unknown fields name the field in the detail.
    let p = problem(&c.post("/v1/tasks", &json!({})), 400, "invalid_input");
    assert!(p["detail"].as_str().unwrap().contains("title"), "{p}");
    let p = problem(
        &c.post("/v1/tasks", &json!({"title": "x", "colour": 1})),
        400,
        "invalid_input",
    );
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");
    // Nothing was created by any of them.
    assert_eq!(c.get("/v1/tasks/count").json()["count"], 0);
}

#[test]
fn whole_numbers_may_be_written_as_floats() {
    let s = TestServer::start();
    let c = s.client();
    let t = submit(&c, json!({"title": "f", "id": "f", "priority": 3.0}));
    assert_eq!(t["priority"], 3);
    c.send("POST", "/v1/tasks/f/start", None, &[]);
    let r = post(&c, "/v1/tasks/f/progress", json!({"percent": 50.0}));
    assert_eq!(r.json()["progress"]["percent"], 50, "{}", r.text);
    let big = json!({"kind": "log", "content": "c", "size_bytes": 9_223_372_036_854_775_808u64});
    let p = problem(&post(&c, "/v1/tasks/f/outputs", big), 400, "invalid_input");
    assert_eq!(p["at"], "$.size_bytes");
    let p = problem(
        &post(&c, "/v1/tasks/f/progress", json!({"percent": 50.5})),
        400,
        "invalid_input",
    );
    assert_eq!(p["at"], "$.percent");
    let body = json!({"mutations": [{"op": "progress", "task_id": "f", "percent": 60, "expected_version": 3.0}]});
    let r = c.post("/v1/batch", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = json!({"mutations": [{"op": "progress", "task_id": "f", "percent": 60, "expected_version": 3.5}]});
    let p = problem(&c.post("/v1/batch", &body), 400, "invalid_input");
    assert_eq!(p["at"], "$.mutations[0].expected_version");
}

#[test]
fn explicit_id_twice_is_a_conflict() {
    let s = TestServer::start();
    let c = s.client();
    submit(&c, json!({"title": "a", "id": "job-1"}));
    let p = problem(
        &c.post("/v1/tasks", &json!({"title": "b", "id": "job-1"})),
        409,
        "already_exists",
    );
    assert_eq!(p["task_id"], "job-1");
    assert_eq!(c.get("/v1/tasks/job-1").json()["title"], "a");
}

#[test]
fn idempotent_submits_create_one_task() {
    let s = TestServer::start();
    let c = s.client();
    let body = json!({"title": "once"});
    let a = c.send(
        "POST",
        "/v1/tasks",
        Some(&body),
        &[("idempotency-key", "k-1")],
    );
    let b = c.send(
        "POST",
        "/v1/tasks",
        Some(&body),
        &[("idempotency-key", "k-1")],
    );
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(a.json()["id"], b.json()["id"]);
    // The body's request_id is the same key.
    let c2 = c.post("/v1/tasks", &json!({"title": "once", "request_id": "k-1"}));
    assert_eq!(c2.json()["id"], a.json()["id"]);
    assert_eq!(c.get("/v1/tasks/count").json()["count"], 1);
    // A different key is another task; a header and a body that disagree are refused.
    c.send(
        "POST",
        "/v1/tasks",
        Some(&body),
        &[("idempotency-key", "k-2")],
    );
    assert_eq!(c.get("/v1/tasks/count").json()["count"], 2);
    // With both, the body's request id wins.
    let r = c.send(
        "POST",
        "/v1/tasks",
        Some(&json!({"title": "x", "request_id": "k-1"})),
        &[("idempotency-key", "k-9")],
    );
    assert_eq!(r.json()["id"], a.json()["id"]);
    assert_eq!(c.get("/v1/tasks/count").json()["count"], 2);
}

#[test]
fn unknown_tasks_are_404_on_every_task_route() {
    let s = TestServer::start();
    let c = s.client();
    for (m, path) in [
        ("GET", "/v1/tasks/nope"),
        ("GET", "/v1/tasks/nope/history"),
        ("GET", "/v1/tasks/nope/outputs"),
        ("DELETE", "/v1/tasks/nope"),
        ("POST", "/v1/tasks/nope/start"),
        ("POST", "/v1/tasks/nope/complete"),
        ("POST", "/v1/tasks/nope/cancel"),
        ("POST", "/v1/tasks/nope/retry"),
        ("POST", "/v1/tasks/nope/requeue"),
    ] {
        let p = problem(&c.send(m, path, None, &[]), 404, "not_found");
        assert_eq!(p["task_id"], "nope", "{m} {path}");
    }
    let with_body = [
        ("PATCH", "/v1/tasks/nope", json!({"title": "t"})),
        ("POST", "/v1/tasks/nope/progress", json!({"percent": 1})),
        (
            "POST",
            "/v1/tasks/nope/checkpoint",
            json!({"name": "n", "data": 1}),
        ),
        ("POST", "/v1/tasks/nope/fail", json!({"error": "e"})),
        (
            "POST",
            "/v1/tasks/nope/outputs",
            json!({"kind": "log", "content": "c"}),
        ),
    ];
    for (m, path, body) in with_body {
        problem(&c.send(m, path, Some(&body), &[]), 404, "not_found");
    }
}

#[test]
fn a_task_through_every_transition() {
    let s = TestServer::start();
    let c = s.client();
    let id = submit(&c, json!({"title": "life", "id": "t1"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/v1/tasks/{id}");

    // complete before start: 409, nothing changed.
    let p = problem(
        &post(&c, &format!("{base}/complete"), json!({})),
        409,
        "invalid_transition",
    );
    assert_eq!(p["task_id"], "t1");
    assert_eq!(c.get(&base).json()["version"], 1);

    // start with an empty body, under a lease with a body.
    let r = c.send(
        "POST",
        &format!("{base}/start"),
        None,
        &[("x-tasklog-actor", "ops")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "running");
    assert_eq!(r.header("etag"), Some("\"2\""));

    let p = problem(
        &post(&c, &format!("{base}/progress"), json!({"percent": 101})),
        400,
        "invalid_input",
    );
    assert_eq!(p["at"], "$.percent");
    problem(
        &post(&c, &format!("{base}/progress"), json!({})),
        400,
        "invalid_input",
    );
    let r = post(
        &c,
        &format!("{base}/progress"),
        json!({"percent": 40, "step": "resize", "actor": "w1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["progress"],
        json!({"percent": 40, "step": "resize"})
    );

    let r = post(
        &c,
        &format!("{base}/checkpoint"),
        json!({"name": "half", "data": {"done": 5}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["checkpoint"]["data"], json!({"done": 5}));
    assert_eq!(r.json()["checkpoint"]["progress"], 40);
    problem(
        &post(&c, &format!("{base}/checkpoint"), json!({"name": "x"})),
        400,
        "invalid_input",
    );

    let r = post(
        &c,
        &format!("{base}/outputs"),
        json!({"kind": "artifact", "content": "out.png", "path": "/tmp/out.png", "size_bytes": 10}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let p = problem(
        &post(
            &c,
            &format!("{base}/outputs"),
            json!({"kind": "video", "content": "x"}),
        ),
        400,
        "invalid_input",
    );
    assert_eq!(p["at"], "$.kind");
    let outs = c.get(&format!("{base}/outputs"));
    assert_eq!(outs.status, 200);
    assert_eq!(outs.json()[0]["content"], "out.png");
    assert_eq!(outs.json().as_array().unwrap().len(), 1);

    // requeue (running -> pending), start again, fail, retry, start, complete.
    let r = post(&c, &format!("{base}/requeue"), json!({"reason": "move"}));
    assert_eq!(r.json()["state"], "pending", "{}", r.text);
    post(
        &c,
        &format!("{base}/start"),
        json!({"owner": "w2", "lease_ms": 60000}),
    );
    assert_eq!(c.get(&base).json()["lease"]["owner"], "w2");
    problem(
        &post(&c, &format!("{base}/fail"), json!({})),
        400,
        "invalid_input",
    );
    let r = post(&c, &format!("{base}/fail"), json!({"error": "boom"}));
    assert_eq!(r.json()["state"], "failed", "{}", r.text);
    assert_eq!(r.json()["last_error"], "boom");
    let r = c.send("POST", &format!("{base}/retry"), None, &[]);
    assert_eq!(r.json()["state"], "pending", "{}", r.text);
    assert_eq!(r.json()["attempt"], 2);
    c.send("POST", &format!("{base}/start"), None, &[]);
    let r = post(
        &c,
        &format!("{base}/complete"),
        json!({"result": {"ok": true}}),
    );
    assert_eq!(r.json()["state"], "completed", "{}", r.text);
    assert_eq!(r.json()["result"], json!({"ok": true}));
    // Terminal: no cancel, no retry.
    problem(
        &c.send("POST", &format!("{base}/cancel"), None, &[]),
        409,
        "invalid_transition",
    );
    problem(
        &c.send("POST", &format!("{base}/retry"), None, &[]),
        409,
        "invalid_transition",
    );

    // The history records every step with its actor.
    let h = c.get(&format!("{base}/history")).json();
    let kinds: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "started",
            "progress",
            "checkpoint",
            "output",
            "requeued",
            "started",
            "failed",
            "retried",
            "started",
            "completed"
        ]
    );
    assert_eq!(h[1]["actor"], "ops");
    assert_eq!(h[2]["actor"], "w1");
}

#[test]
fn start_checks_its_lease() {
    let s = TestServer::start();
    let c = s.client();
    submit(&c, json!({"title": "x", "id": "l"}));
    let p = problem(
        &post(
            &c,
            "/v1/tasks/l/start",
            json!({"owner": "w", "lease_ms": 0}),
        ),
        400,
        "invalid_input",
    );
    assert_eq!(p["at"], "$.lease_ms");
    problem(
        &post(
            &c,
            "/v1/tasks/l/start",
            json!({"owner": "w", "lease_ms": 86_400_001}),
        ),
        400,
        "invalid_input",
    );
    problem(
        &post(
            &c,
            "/v1/tasks/l/start",
            json!({"owner": "w", "lease_ms": u64::MAX}),
        ),
        400,
        "invalid_input",
    );
    problem(
        &post(&c, "/v1/tasks/l/start", json!({"owner": 3})),
        400,
        "invalid_input",
    );
    problem(
        &raw(
            &c,
            "POST",
            "/v1/tasks/l/start",
            Some("application/json"),
            b"[1]",
        ),
        400,
        "invalid_input",
    );
    assert_eq!(c.get("/v1/tasks/l").json()["state"], "pending");
    // Without an owner there is no lease; `null` is the same as no body.
    let r = raw(
        &c,
        "POST",
        "/v1/tasks/l/start",
        Some("application/json"),
        b"null",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["lease"], Value::Null);
    submit(&c, json!({"title": "x", "id": "m"}));
    let r = post(&c, "/v1/tasks/m/start", json!({"lease_ms": 1000}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["lease"], Value::Null);
}

#[test]
fn cancel_a_pending_task() {
    let s = TestServer::start();
    let c = s.client();
    submit(&c, json!({"title": "x", "id": "c"}));
    let r = post(&c, "/v1/tasks/c/cancel", json!({"reason": "not needed"}));
    assert_eq!(r.json()["state"], "cancelled", "{}", r.text);
    problem(
        &c.send("POST", "/v1/tasks/c/requeue", None, &[]),
        409,
        "invalid_transition",
    );
}

#[test]
fn if_match_makes_changes_conditional() {
    let s = TestServer::start();
    let c = s.client();
    submit(&c, json!({"title": "x", "id": "v"}));
    let body = json!({"title": "y"});
    let p = problem(
        &c.send(
            "PATCH",
            "/v1/tasks/v",
            Some(&body),
            &[("if-match", "\"7\"")],
        ),
        412,
        "version_mismatch",
    );
    assert_eq!(p["task_id"], "v");
    assert_eq!(c.get("/v1/tasks/v").json()["title"], "x");
    problem(
        &c.send(
            "PATCH",
            "/v1/tasks/v",
            Some(&body),
            &[("if-match", "seven")],
        ),
        400,
        "invalid_input",
    );

    let r = c.send(
        "PATCH",
        "/v1/tasks/v",
        Some(&body),
        &[("if-match", "\"1\"")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("etag"), Some("\"2\""));
    // The same precondition again is stale now: a transition and a removal refuse it.
    problem(
        &c.send("POST", "/v1/tasks/v/start", None, &[("if-match", "\"1\"")]),
        412,
        "version_mismatch",
    );
    problem(
        &c.send("DELETE", "/v1/tasks/v", None, &[("if-match", "\"1\"")]),
        412,
        "version_mismatch",
    );
    let r = c.send("POST", "/v1/tasks/v/start", None, &[("if-match", "\"2\"")]);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.send("POST", "/v1/tasks/v/cancel", None, &[("if-match", "*")]);
    assert_eq!(r.status, 200, "{}", r.text);
    problem(
        &c.send("POST", "/v1/tasks/v/start", None, &[("if-match", "")]),
        400,
        "invalid_input",
    );
    // A precondition on a task that does not exist is a 404.
    problem(
        &c.send(
            "POST",
            "/v1/tasks/none/start",
            None,
            &[("if-match", "\"1\"")],
        ),
        404,
        "not_found",
    );
    let big = c.send(
        "POST",
        "/v1/tasks/v/retry",
        None,
        &[("if-match", "\"99999999999999999999999\"")],
    );
    problem(&big, 412, "version_mismatch");
    // An empty actor header is no actor.
    let r = c.send(
        "POST",
        "/v1/tasks/v/retry",
        None,
        &[("x-tasklog-actor", "")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn update_changes_descriptive_fields() {
    let s = TestServer::start();
    let c = s.client();
    submit(
        &c,
        json!({"title": "x", "id": "u", "tags": ["a"], "metadata": {"k": 1}}),
    );
    let r = c.send(
        "PATCH",
        "/v1/tasks/u",
        Some(
            &json!({"title": "new", "priority": 3, "add_tags": ["b"], "remove_tags": ["a"],
                     "set_metadata": {"j": "v"}, "remove_metadata": ["k"], "role": "qa"}),
        ),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let t = c.get("/v1/tasks/u").json();
    assert_eq!(t["title"], "new");
    assert_eq!(t["priority"], 3);
    assert_eq!(t["tags"], json!(["b"]));
    assert_eq!(t["metadata"], json!({"j": "v"}));
    assert_eq!(t["role"], "qa");
    for bad in [
        json!({"priority": 11}),
        json!({"title": ""}),
        json!({"state": "completed"}),
        json!({"add_tags": "x"}),
    ] {
        problem(
            &c.send("PATCH", "/v1/tasks/u", Some(&bad), &[]),
            400,
            "invalid_input",
        );
    }
    assert_eq!(c.get("/v1/tasks/u").json()["version"], 2);
}

#[test]
fn removed_tasks_keep_their_history() {
    let s = TestServer::start();
    let c = s.client();
    submit(&c, json!({"title": "x", "id": "r"}));
    let r = c.send(
        "DELETE",
        "/v1/tasks/r?reason=done%20with%20it",
        None,
        &[("x-tasklog-actor", "admin")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], "r");
    problem(&c.get("/v1/tasks/r"), 404, "not_found");
    problem(&c.get("/v1/tasks/r/outputs"), 404, "not_found");
    let h = c.get("/v1/tasks/r/history");
    assert_eq!(h.status, 200, "{}", h.text);
    let events = h.json();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "removed");
    assert_eq!(last["actor"], "admin");
    assert!(
        last["details"].to_string().contains("done with it"),
        "{last}"
    );
    problem(
        &c.send("DELETE", "/v1/tasks/r?colour=red", None, &[]),
        400,
        "invalid_input",
    );
    problem(
        &c.send("DELETE", "/v1/tasks/r", None, &[]),
        404,
        "not_found",
    );
}

#[test]
fn list_and_count_with_every_filter() {
    let s = TestServer::start();
    let c = s.client();
    let specs = [
        ("a", "dev", "openai", "gpt", vec!["x"], 1),
        ("b", "qa", "local", "llama", vec!["x", "y"], 2),
        ("c", "ops", "openai", "gpt", vec![], 3),
        ("d", "dev", "anthropic", "claude", vec!["y"], 4),
    ];
    for (id, role, provider, model, tags, cost) in &specs {
        submit(
            &c,
            json!({"title": format!("task {id}"), "id": id, "role": role, "provider": provider,
                          "model": model, "tags": tags, "metadata": {"cost": cost},
                          "description": if *id == "c" { "Needle here" } else { "" }}),
        );
    }
    c.send("POST", "/v1/tasks/b/start", None, &[]);
    c.send("POST", "/v1/tasks/d/cancel", None, &[]);
    let ids = |q: &str| -> Vec<String> {
        let r = c.get(&format!("/v1/tasks{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        r.json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let count = |q: &str| -> u64 {
        let r = c.get(&format!("/v1/tasks/count{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        r.json()["count"].as_u64().unwrap()
    };
    assert_eq!(ids(""), ["a", "b", "c", "d"]);
    assert_eq!(ids("?order=desc"), ["d", "c", "b", "a"]);
    assert_eq!(ids("?states=running,cancelled"), ["b", "d"]);
    assert_eq!(ids("?roles=dev,ops"), ["a", "c", "d"]);
    assert_eq!(ids("?roles=dev&roles=qa"), ["a", "b", "d"]);
    assert_eq!(ids("?providers=openai,local&states=pending"), ["a", "c"]);
    assert_eq!(ids("?models=claude,llama"), ["b", "d"]);
    assert_eq!(ids("?tag=x"), ["a", "b"]);
    assert_eq!(ids("?tag=x&tag=y"), ["b"]);
    assert_eq!(ids("?meta=cost%3D3"), ["c"]);
    assert_eq!(ids("?q=needle"), ["c"]);
    assert_eq!(
        ids("?created_until=2000-01-01T00:00:00Z"),
        Vec::<String>::new()
    );
    assert_eq!(
        ids("?created_since=2000-01-01T00:00:00Z&limit=2"),
        ["a", "b"]
    );
    assert_eq!(
        ids(
            "?updated_since=2000-01-01T00:00:00Z&updated_until=2999-01-01T00:00:00%2B02:00&offset=3"
        ),
        ["d"]
    );
    assert_eq!(ids("?sort=updated&order=desc&limit=1"), ["d"]);
    assert_eq!(count(""), 4);
    assert_eq!(count("?states=pending"), 2);
    assert_eq!(count("?roles=dev,qa&tag=y"), 2);
    assert_eq!(count("?providers=nobody"), 0);

    for (q, at) in [
        ("?states=done", "states"),
        ("?limit=1001", "limit"),
        ("?limit=-1", "limit"),
        ("?offset=x", "offset"),
        ("?offset=9223372036854775808", "offset"),
        ("?sort=title", "sort"),
        ("?order=up", "order"),
        ("?created_since=yesterday", "created_since"),
        ("?updated_until=2000-01-01", "updated_until"),
        ("?states=pending,", "states"),
        ("?states=PENDING", "states"),
        ("?cursor=garbage", "cursor"),
        ("?meta=novalue", "meta"),
        ("?colour=red", "colour"),
        ("?q=a&q=b", "q"),
    ] {
        let p = problem(&c.get(&format!("/v1/tasks{q}")), 400, "invalid_input");
        assert_eq!(p["at"], at, "{q}");
    }
    problem(&c.get("/v1/tasks/count?limit=3"), 400, "invalid_input");
}

#[test]
fn cursor_pages_stay_correct_while_tasks_change() {
    let s = TestServer::start();
    let c = s.client();
    for i in 0..25 {
        submit(&c, json!({"title": "p", "id": format!("t{i:02}")}));
        // Distinct creation times keep the expected order unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(cur) => format!("/v1/tasks?limit=10&cursor={}", urlencode(cur)),
            None => "/v1/tasks?limit=10".to_string(),
        };
        let r = c.get(&q);
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        seen.extend(
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        pages += 1;
        if pages == 1 {
            // Between pages: change seen tasks, remove an unseen one, add new ones.
            c.send(
                "PATCH",
                "/v1/tasks/t03",
                Some(&json!({"title": "changed"})),
                &[],
            );
            c.send("POST", "/v1/tasks/t05/start", None, &[]);
            c.delete("/v1/tasks/t15");
            submit(&c, json!({"title": "late", "id": "z-late"}));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    let mut want: Vec<String> = (0..25)
        .filter(|i| *i != 15)
        .map(|i| format!("t{i:02}"))
        .collect();
    want.push("z-late".into());
    assert_eq!(seen, want);
    // Newest first, the same way.
    let mut seen_desc: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!("/v1/tasks?order=desc&limit=7&cursor={}", urlencode(cur)),
            None => "/v1/tasks?order=desc&limit=7".to_string(),
        };
        let page = c.get(&q).json();
        seen_desc.extend(
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    want.reverse();
    assert_eq!(seen_desc, want);
    // A cursor far past every task gives an empty last page, not an error.
    let r = c.get("/v1/tasks?cursor=99999999999999999999999:x");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"tasks": [], "next_cursor": null}));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The batch limit is exact: 10,000 mutations apply as one commit, one more is refused whole
/// (400 at `$.mutations`, nothing applied). Kills the limit's `>` turned `>=` or `==`
/// (session 14, the server's acknowledgement path under cargo-mutants).
#[test]
fn a_batch_of_exactly_the_limit_applies_and_one_more_is_refused_whole() {
    let s = TestServer::start();
    let c = s.client();
    let ops = |n: usize, prefix: &str| {
        let m: Vec<_> = (0..n)
            .map(|i| json!({"op": "submit", "id": format!("{prefix}{i}"), "title": "t"}))
            .collect();
        json!({ "mutations": m })
    };
    let over = tasklog_server::tasks::BATCH_MUTATIONS_MAX + 1;
    let p = problem(&c.post("/v1/batch", &ops(over, "o")), 400, "invalid_input");
    assert_eq!(p["at"], "$.mutations");
    problem(&c.get("/v1/tasks/o0"), 404, "not_found");
    let r = c.post("/v1/batch", &ops(over - 1, "a"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), over - 1);
    assert_eq!(c.get("/v1/stats").json()["total"], over - 1);
}

#[test]
fn batches_apply_all_or_nothing() {
    let s = TestServer::start();
    let c = s.client();
    submit(&c, json!({"title": "existing", "id": "e"}));
    // A failing third mutation leaves nothing applied.
    let body = json!({"mutations": [
        {"op": "submit", "id": "new", "title": "n"},
        {"op": "start", "task_id": "e"},
        {"op": "complete", "task_id": "missing"},
    ]});
    let p = problem(&c.post("/v1/batch", &body), 404, "not_found");
    assert_eq!(p["at"], "$.mutations[2]");
    problem(&c.get("/v1/tasks/new"), 404, "not_found");
    assert_eq!(c.get("/v1/tasks/e").json()["state"], "pending");
    // An invalid transition, or a stale expected version, likewise.
    let body = json!({"mutations": [
        {"op": "start", "task_id": "e"},
        {"op": "retry", "task_id": "e"},
    ]});
    problem(&c.post("/v1/batch", &body), 409, "invalid_transition");
    let body = json!({"mutations": [
        {"op": "update", "task_id": "e", "title": "t"},
        {"op": "start", "task_id": "e", "expected_version": 5},
    ]});
    problem(&c.post("/v1/batch", &body), 412, "version_mismatch");
    assert_eq!(c.get("/v1/tasks/e").json()["version"], 1);

    // A good batch: every op, in order.
    let body = json!({"mutations": [
        {"op": "submit", "id": "b1", "title": "one", "kind": "k"},
        {"op": "start", "task_id": "b1", "owner": "w", "lease_ms": 60000, "actor": "batcher"},
        {"op": "progress", "task_id": "b1", "percent": 50},
        {"op": "checkpoint", "task_id": "b1", "name": "c", "data": [1]},
        {"op": "output", "task_id": "b1", "kind": "log", "content": "hi"},
        {"op": "update", "task_id": "b1", "priority": 9},
        {"op": "complete", "task_id": "b1", "result": 1},
        {"op": "start", "task_id": "e", "expected_version": 1},
        {"op": "fail", "task_id": "e", "error": "x"},
        {"op": "retry", "task_id": "e"},
        {"op": "cancel", "task_id": "e", "reason": "r"},
        {"op": "submit", "id": "b2", "title": "two"},
        {"op": "start", "task_id": "b2"},
        {"op": "requeue", "task_id": "b2"},
        {"op": "remove", "task_id": "b2"},
    ]});
    let r = c.send(
        "POST",
        "/v1/batch",
        Some(&body),
        &[("x-tasklog-actor", "hdr")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let tasks = r.json()["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 15);
    let b1 = c.get("/v1/tasks/b1").json();
    assert_eq!(b1["state"], "completed");
    assert_eq!(b1["priority"], 9);
    assert_eq!(b1["metadata"]["runtime.kind"], "k");
    assert_eq!(c.get("/v1/tasks/e").json()["state"], "cancelled");
    problem(&c.get("/v1/tasks/b2"), 404, "not_found");
    let h = c.get("/v1/tasks/b1/history").json();
    assert_eq!(h[1]["actor"], "batcher");
    assert_eq!(h[2]["actor"], "hdr");

    // Bad mutations are named by their JSON path.
    for (m, at) in [
        (json!({"op": "fly", "task_id": "e"}), "$.mutations[0].op"),
        (json!({"task_id": "e"}), "$.mutations[0].op"),
        (json!({"op": "start"}), "$.mutations[0].task_id"),
        (
            json!({"op": "progress", "task_id": "b1", "percent": 300}),
            "$.mutations[0].percent",
        ),
        (
            json!({"op": "progress", "task_id": "b1", "percent": "x"}),
            "$.mutations[0].percent",
        ),
        (
            json!({"op": "start", "task_id": "e", "expected_version": -1}),
            "$.mutations[0].expected_version",
        ),
        (
            json!({"op": "submit", "task_id": "e", "title": "t"}),
            "$.mutations[0].task_id",
        ),
        (json!("start"), "$.mutations[0]"),
    ] {
        let p = problem(
            &c.post("/v1/batch", &json!({"mutations": [m]})),
            400,
            "invalid_input",
        );
        assert_eq!(p["at"], at, "{m}: {p}");
    }
    let p = problem(
        &c.post(
            "/v1/batch",
            &json!({"mutations": [{"op": "cancel", "task_id": "e", "why": 1}]}),
        ),
        400,
        "invalid_input",
    );
    assert!(p["detail"].as_str().unwrap().contains("why"), "{p}");
    problem(
        &c.post("/v1/batch", &json!({"ops": []})),
        400,
        "invalid_input",
    );
    // A struct is never read from an array of its fields.
    problem(&c.post("/v1/batch", &json!([[]])), 400, "invalid_input");
    for (m, path) in [
        ("PATCH", "/v1/tasks/e"),
        ("POST", "/v1/tasks/e/cancel"),
        ("POST", "/v1/tasks/e/start"),
        ("POST", "/v1/tasks"),
    ] {
        problem(
            &c.send(m, path, Some(&json!([null, null])), &[]),
            400,
            "invalid_input",
        );
    }
    problem(
        &c.send(
            "POST",
            "/v1/batch",
            Some(&json!({"mutations": []})),
            &[("if-match", "\"1\"")],
        ),
        400,
        "invalid_input",
    );
    let r = c.post("/v1/batch", &json!({"mutations": []}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["tasks"], json!([]));
}

#[test]
fn concurrent_submits_are_all_durable() {
    let s = TestServer::start();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = s.client();
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        let r = c.post(
                            "/v1/tasks",
                            &json!({"title": "c", "id": format!("c-{t}-{i}")}),
                        );
                        assert_eq!(r.status, 201, "{}", r.text);
                        r.json()["id"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 320);
    let c = s.client();
    assert_eq!(c.get("/v1/tasks/count").json()["count"], 320);
    // Durable: the store reopened from disk has every one of them.
    s.state.store().close().unwrap();
    let reopened = tasklog::Store::open(s.store_dir()).unwrap();
    for id in &ids {
        assert!(reopened.get(id).is_ok(), "{id} lost");
    }
    assert_eq!(reopened.len(), 320);
}

#[test]
fn unknown_routes_and_methods_answer_problems() {
    let s = TestServer::start();
    let c = s.client();
    problem(&c.get("/v1/nothing/here"), 404, "not_found");
    submit(&c, json!({"title": "x", "id": "m"}));
    let r = c.send("PUT", "/v1/tasks/m", Some(&json!({})), &[]);
    let p = problem(&r, 405, "method_not_allowed");
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?} {p}",
        r.headers
    );
    problem(
        &c.send("GET", "/v1/tasks/m/start", None, &[]),
        405,
        "method_not_allowed",
    );
}
