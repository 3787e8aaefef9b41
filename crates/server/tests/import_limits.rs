//! The HTTP API holds task bodies to the same limits as the library and import
//! (`tasklog::task::limits`): free-form values nested deeper than 64 levels, times outside the
//! years 0000 to 9999 and percentages above 100 are answered 400 problem+json, never stored;
//! `/v1/import` refuses a tasklog document without `tasks` and counts every problem.
//!
//! Method: a real server over a fresh store; each request is sent as a client would, and the
//! store is checked to hold nothing it refused.

mod support;

use serde_json::{Value, json};
use support::{Resp, TestServer};

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

fn problem(resp: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(resp.status, status, "{}", resp.text);
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    body
}

#[test]
fn task_bodies_over_the_limits_are_refused() {
    let server = TestServer::start();
    let c = server.client();
    let p = problem(
        &c.post(
            "/v1/tasks",
            &json!({"title": "deep", "metadata": {"k": nested(120)}}),
        ),
        400,
        "invalid_input",
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 64"),
        "{p}"
    );
    let ok = c.post(
        "/v1/tasks",
        &json!({"id": "r", "title": "at the limit", "metadata": {"k": nested(63)}}),
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(c.post("/v1/tasks/r/start", &json!({})).status, 200);
    let p = problem(
        &c.post(
            "/v1/tasks/r/checkpoint",
            &json!({"name": "c", "data": nested(65)}),
        ),
        400,
        "invalid_input",
    );
    assert!(p["detail"].as_str().unwrap().contains("data"), "{p}");
    problem(
        &c.post("/v1/tasks/r/complete", &json!({"result": nested(100)})),
        400,
        "invalid_input",
    );
    let t = c.get("/v1/tasks/r").json();
    assert_eq!(t["state"], "running", "{t}");
    assert!(t["checkpoint"].is_null(), "{t}");
}

#[test]
fn imports_without_tasks_or_with_many_problems_are_refused_whole() {
    let server = TestServer::start();
    let c = server.client();
    assert_eq!(
        c.post("/v1/tasks", &json!({"id": "keep", "title": "keep me"}))
            .status,
        201
    );
    let p = problem(
        &c.post(
            "/v1/import?mode=replace",
            &json!({"format": "tasklog", "version": 1, "task_count": 0}),
        ),
        400,
        "invalid_document",
    );
    assert!(p.to_string().contains("tasks: missing"), "{p}");
    assert_eq!(c.get("/v1/tasks/keep").status, 200, "nothing was removed");

    let tasks: Vec<Value> = (0..1500)
        .map(|i| json!({"id": format!("t{i}"), "title": "t", "state": "sleeping"}))
        .collect();
    let p = problem(
        &c.post("/v1/import", &Value::Array(tasks)),
        400,
        "invalid_document",
    );
    assert_eq!(p["detail"], "1500 problem(s) in the document", "{p}");
}
