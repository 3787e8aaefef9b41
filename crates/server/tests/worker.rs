//! The worker protocol over HTTP: `POST /v1/workers/claim` (order, kinds, `not_before`, long
//! poll, no double claims under concurrency) and the fenced calls on a claimed task (409
//! `lease_lost` once the claim lost its lease, 400 on bad tokens and bodies).
//!
//! Method: a real server on a loopback port over a fresh store; tasks are submitted through the
//! store itself (the task routes are another module's), claims and fenced calls go over HTTP,
//! and the outcome is checked in the store and in each task's history. Every wait is bounded.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, TestServer};
use tasklog::store::InterruptedPolicy;
use tasklog::{NewTask, Store, StoreOptions, TaskState};

const KIND: &str = "runtime.kind";

fn submit(server: &TestServer, id: &str, kind: Option<&str>, priority: u8) {
    let mut new = NewTask::new(format!("task {id}")).id(id).priority(priority);
    if let Some(k) = kind {
        new = new.meta(KIND, json!(k));
    }
    server.state.store().submit(new).unwrap();
}

fn claim(c: &Client, body: Value) -> support::Resp {
    c.post("/v1/workers/claim", &body)
}

/// Claims with `body`; panics unless 200. Returns (id, token).
fn claim_ok(c: &Client, body: Value) -> (String, String) {
    let r = claim(c, body);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    (
        v["task"]["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

fn call(c: &Client, id: &str, what: &str, body: Value) -> support::Resp {
    c.post(&format!("/v1/workers/tasks/{id}/{what}"), &body)
}

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
fn claims_by_priority_then_creation_order() {
    let server = TestServer::start();
    let c = server.client();
    for (id, prio) in [("a", 1), ("b", 5), ("c", 5), ("d", 9), ("e", 1)] {
        submit(&server, id, Some("k"), prio);
        // Distinct creation milliseconds: the order is creation time, not id.
        std::thread::sleep(Duration::from_millis(3));
    }
    let order: Vec<String> = (0..5)
        .map(|_| claim_ok(&c, json!({"owner": "w1"})).0)
        .collect();
    assert_eq!(order, ["d", "b", "c", "a", "e"]);
    assert_eq!(claim(&c, json!({"owner": "w1"})).status, 204);
}

#[test]
fn claim_answer_carries_the_lease_and_token() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let r = claim(&c, json!({"owner": "w1", "lease_ms": 5000}));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let task = server.state.store().get("t").unwrap();
    let lease = task.lease.clone().unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(lease.owner, "w1");
    assert_eq!(v["token"], format!("{}.{}", task.attempt, lease.claim_lsn));
    assert_eq!(v["lease_expires_at"], json!(lease.expires_at));
    assert_eq!(v["checkpoint"], Value::Null);
    assert_eq!(v["task"]["state"], "running");
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", task.version).as_str())
    );
    let history = server.state.store().history("t").unwrap();
    let started = history.iter().find(|e| e.kind == "started").unwrap();
    assert_eq!(started.actor.as_deref(), Some("w1"));
}

#[test]
fn kinds_filter_what_is_claimed() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "x1", Some("x"), 9);
    submit(&server, "y1", Some("y"), 0);
    submit(&server, "none", None, 5);
    let (id, _) = claim_ok(&c, json!({"owner": "w", "kinds": ["y"]}));
    assert_eq!(id, "y1");
    assert_eq!(
        claim(&c, json!({"owner": "w", "kinds": ["y", "z"]})).status,
        204
    );
    let (id, _) = claim_ok(&c, json!({"owner": "w", "kinds": ["z", "x"]}));
    assert_eq!(id, "x1");
    // Without kinds, any task, even one of no kind.
    let (id, _) = claim_ok(&c, json!({"owner": "w"}));
    assert_eq!(id, "none");
}

#[test]
fn a_task_is_not_claimed_before_its_not_before() {
    let server = TestServer::start();
    let c = server.client();
    // Far enough ahead that the submit and the first claim (which may wait for the event hub
    // to catch up) end before it on a loaded machine.
    let due = tasklog::task::Timestamp::now().0 + 3000;
    let new = NewTask::new("later")
        .id("later")
        .meta(KIND, json!("k"))
        .meta("runtime.not_before", json!(due));
    server.state.store().submit(new).unwrap();
    assert_eq!(claim(&c, json!({"owner": "w"})).status, 204);
    let started = Instant::now();
    let (id, _) = claim_ok(&c, json!({"owner": "w", "wait_ms": 10_000}));
    assert_eq!(id, "later");
    assert!(tasklog::task::Timestamp::now().0 >= due);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke at its due time"
    );
}

#[test]
fn any_not_before_is_handled() {
    let server = TestServer::start();
    let c = server.client();
    let never = NewTask::new("never")
        .id("never")
        .meta("runtime.not_before", json!(i64::MAX));
    server.state.store().submit(never).unwrap();
    let r = claim(&c, json!({"owner": "w", "wait_ms": 200}));
    assert_eq!(r.status, 204, "{}", r.text);
    // Not a number of milliseconds: not held back (as the Rust runtime reads it).
    let odd = NewTask::new("odd")
        .id("odd")
        .meta("runtime.not_before", json!("tomorrow"));
    server.state.store().submit(odd).unwrap();
    let (id, _) = claim_ok(&c, json!({"owner": "w"}));
    assert_eq!(id, "odd");
}

#[test]
fn an_empty_queue_answers_204_after_the_wait() {
    let server = TestServer::start();
    let c = server.client();
    let started = Instant::now();
    let r = claim(&c, json!({"owner": "w", "wait_ms": 300}));
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn the_wait_is_cut_to_the_server_limit() {
    let mut options = tasklog_server::ServerOptions::default();
    options.max_claim_wait = Duration::from_millis(200);
    let server = TestServer::with_options(options);
    let started = Instant::now();
    let r = claim(&server.client(), json!({"owner": "w", "wait_ms": 60_000}));
    assert_eq!(r.status, 204);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_long_poll_wakes_up_when_a_task_is_submitted() {
    let server = TestServer::start();
    let c = server.client();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = claim(&c, json!({"owner": "w", "kinds": ["k"], "wait_ms": 30_000}));
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    submit(&server, "other", Some("not-k"), 0);
    submit(&server, "new", Some("k"), 0);
    let (r, took) = waiter.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["task"]["id"], "new");
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
}

#[test]
fn two_long_polling_workers_never_claim_one_task_twice() {
    const TASKS: usize = 200;
    let server = TestServer::start();
    let claimed = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|owner| {
            let c = server.client();
            let claimed = claimed.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while claimed.lock().unwrap().len() < TASKS && Instant::now() < deadline {
                    let r = claim(&c, json!({"owner": owner, "kinds": ["k"], "wait_ms": 300}));
                    if r.status == 204 {
                        continue;
                    }
                    assert_eq!(r.status, 200, "{}", r.text);
                    let v = r.json();
                    let id = v["task"]["id"].as_str().unwrap().to_string();
                    let token = v["token"].as_str().unwrap();
                    claimed.lock().unwrap().push(id.clone());
                    let done = call(&c, &id, "complete", json!({"owner": owner, "token": token}));
                    assert_eq!(done.status, 200, "{}", done.text);
                }
            })
        })
        .collect();
    // Submitted while the workers poll: they are woken, not only finding work queued.
    for i in 0..TASKS {
        submit(&server, &format!("t{i:03}"), Some("k"), (i % 3) as u8);
    }
    for w in workers {
        w.join().unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), TASKS, "every task claimed once");
    assert_eq!(unique.len(), TASKS, "no task claimed twice");
    for i in 0..TASKS {
        let id = format!("t{i:03}");
        let history = server.state.store().history(&id).unwrap();
        let starts = history.iter().filter(|e| e.kind == "started").count();
        assert_eq!(starts, 1, "{id}: {history:?}");
        assert_eq!(
            server.state.store().get(&id).unwrap().state,
            TaskState::Completed
        );
    }
}

#[test]
fn the_claim_holder_reports_and_finishes() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, token) = claim_ok(&c, json!({"owner": "w", "lease_ms": 1000}));
    let before = server
        .state
        .store()
        .get(&id)
        .unwrap()
        .lease
        .unwrap()
        .expires_at;
    std::thread::sleep(Duration::from_millis(5));
    let r = call(
        &c,
        &id,
        "heartbeat",
        json!({"owner": "w", "token": token, "lease_ms": 60_000}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        server
            .state
            .store()
            .get(&id)
            .unwrap()
            .lease
            .unwrap()
            .expires_at
            .0
            > before.0 + 50_000
    );
    let r = call(
        &c,
        &id,
        "progress",
        json!({"owner": "w", "token": token, "percent": 40, "step": "s1", "message": "m"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["progress"]["percent"], 40);
    let r = call(
        &c,
        &id,
        "checkpoint",
        json!({"owner": "w", "token": token, "name": "half", "data": {"n": 1}, "progress": 50}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["checkpoint"]["data"], json!({"n": 1}));
    let r = call(
        &c,
        &id,
        "output",
        json!({"owner": "w", "token": token, "kind": "log", "content": "hello", "mime": "text/plain"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["outputs"][0]["content"], "hello");
    let r = call(
        &c,
        &id,
        "complete",
        json!({"owner": "w", "token": token, "result": {"ok": true}, "actor": "someone"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "completed");
    assert_eq!(r.json()["result"], json!({"ok": true}));
    let history = server.state.store().history(&id).unwrap();
    assert_eq!(history.last().unwrap().actor.as_deref(), Some("someone"));
    // Finished: the claim is over.
    let r = call(&c, &id, "heartbeat", json!({"owner": "w", "token": token}));
    assert_problem(&r, 409, "lease_lost");
}

#[test]
fn fail_fails_or_requeues_and_a_requeued_task_resumes_from_its_checkpoint() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, token) = claim_ok(&c, json!({"owner": "w"}));
    let r = call(
        &c,
        &id,
        "checkpoint",
        json!({"owner": "w", "token": token, "name": "step2", "data": [1, 2]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &c,
        &id,
        "fail",
        json!({"owner": "w", "token": token, "error": "busy", "requeue": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "pending");
    // The old claim is over; the task is claimable again, with its checkpoint.
    let r = call(&c, &id, "complete", json!({"owner": "w", "token": token}));
    assert_problem(&r, 409, "lease_lost");
    let r = claim(&c, json!({"owner": "w2"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["checkpoint"]["name"], "step2");
    assert_eq!(v["checkpoint"]["data"], json!([1, 2]));
    let token2 = v["token"].as_str().unwrap();
    let r = call(
        &c,
        &id,
        "fail",
        json!({"owner": "w2", "token": token2, "error": "boom"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "failed");
    assert_eq!(r.json()["last_error"], "boom");
}

#[test]
fn a_worker_whose_lease_expired_and_was_recovered_is_fenced_out() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, token) = claim_ok(&c, json!({"owner": "w", "lease_ms": 50}));
    std::thread::sleep(Duration::from_millis(120));
    let recovered = server.state.store().recover_expired_leases().unwrap();
    assert_eq!(recovered, ["t"]);
    for (what, body) in [
        ("heartbeat", json!({"owner": "w", "token": token})),
        ("complete", json!({"owner": "w", "token": token})),
        (
            "progress",
            json!({"owner": "w", "token": token, "percent": 5}),
        ),
        (
            "output",
            json!({"owner": "w", "token": token, "kind": "stdout", "content": "x"}),
        ),
    ] {
        let r = call(&c, &id, what, body);
        let p = assert_problem(&r, 409, "lease_lost");
        assert_eq!(p["task_id"], "t", "{what}");
    }
    // Nothing was written by the refused calls.
    let task = server.state.store().get(&id).unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.outputs.is_empty());
}

#[test]
fn a_stale_claim_by_the_same_owner_is_fenced_out_after_a_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::default()
        .interrupted_policy(InterruptedPolicy::Requeue)
        .open(dir.path().join("store"))
        .unwrap();
    let server = TestServer::over(dir, store, tasklog_server::ServerOptions::default());
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, old) = claim_ok(&c, json!({"owner": "w", "lease_ms": 50}));
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(
        server.state.store().recover_expired_leases().unwrap(),
        ["t"]
    );
    // Same owner, same attempt, a new claim: only the new token holds.
    let (again, new) = claim_ok(&c, json!({"owner": "w"}));
    assert_eq!(again, id);
    assert_ne!(old, new);
    let r = call(&c, &id, "complete", json!({"owner": "w", "token": old}));
    assert_problem(&r, 409, "lease_lost");
    let r = call(&c, &id, "heartbeat", json!({"owner": "w", "token": old}));
    assert_problem(&r, 409, "lease_lost");
    let r = call(&c, &id, "complete", json!({"owner": "w", "token": new}));
    assert_eq!(r.status, 200, "{}", r.text);
    // Another owner with the right token is not the holder either.
    let r = call(&c, &id, "heartbeat", json!({"owner": "x", "token": new}));
    assert_problem(&r, 409, "lease_lost");
}

#[test]
fn a_task_interrupted_back_to_pending_wakes_a_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::default()
        .interrupted_policy(InterruptedPolicy::Requeue)
        .open(dir.path().join("store"))
        .unwrap();
    let server = TestServer::over(dir, store, tasklog_server::ServerOptions::default());
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (_, old) = claim_ok(&c, json!({"owner": "a", "lease_ms": 50}));
    let c2 = server.client();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = claim(
            &c2,
            json!({"owner": "b", "kinds": ["k"], "wait_ms": 30_000}),
        );
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.state.store().recover_expired_leases().unwrap(),
        ["t"]
    );
    let (r, took) = waiter.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["task"]["lease"]["owner"], "b");
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
    let r = call(&c, "t", "complete", json!({"owner": "a", "token": old}));
    assert_problem(&r, 409, "lease_lost");
}

#[test]
fn bad_tokens_are_400() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, token) = claim_ok(&c, json!({"owner": "w"}));
    for bad in ["", "abc", "1", "1.", "1.x", "-1.2", "01.5", "1.2.3", " 1.2"] {
        let r = call(&c, &id, "complete", json!({"owner": "w", "token": bad}));
        let p = assert_problem(&r, 400, "invalid_input");
        assert_eq!(p["at"], "$.token", "{bad:?}");
    }
    let r = call(&c, &id, "complete", json!({"owner": "w", "token": 5}));
    let p = assert_problem(&r, 400, "invalid_input");
    assert_eq!(p["at"], "$.token");
    // Well formed but never issued: the fence refuses it.
    let r = call(
        &c,
        &id,
        "complete",
        json!({"owner": "w", "token": "1.999999"}),
    );
    assert_problem(&r, 409, "lease_lost");
    let r = call(
        &c,
        "nope",
        "complete",
        json!({"owner": "w", "token": token}),
    );
    assert_problem(&r, 404, "not_found");
    assert_eq!(
        server.state.store().get(&id).unwrap().state,
        TaskState::Running
    );
}

#[test]
fn bad_bodies_are_400_naming_the_field() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    for (body, at) in [
        (json!({}), "$.owner"),
        (json!({"owner": ""}), "$.owner"),
        (json!({"owner": 7}), "$.owner"),
        (json!({"owner": "w", "lease_ms": 0}), "$.lease_ms"),
        (
            json!({"owner": "w", "lease_ms": 86_400_001u64}),
            "$.lease_ms",
        ),
        (json!({"owner": "w", "lease_ms": -5}), "$.lease_ms"),
        (json!({"owner": "w", "wait_ms": "soon"}), "$.wait_ms"),
        (json!({"owner": "w", "kinds": []}), "$.kinds"),
        (json!({"owner": "w", "kinds": ["k", 3]}), "$.kinds[1]"),
        (json!({"owner": "x".repeat(257)}), "$.owner"),
        (json!({"owner": " \t"}), "$.owner"),
        (json!({"owner": "w", "actor": "a\u{7}b"}), "$.actor"),
        (json!({"owner": "w", "lease": 5}), "$.lease"),
        (json!([1]), "$"),
    ] {
        let r = claim(&c, body.clone());
        let p = assert_problem(&r, 400, "invalid_input");
        assert_eq!(p["at"], at, "{body}: {p}");
    }
    let r = c.send(
        "POST",
        "/v1/workers/claim",
        None,
        &[("content-type", "application/json")],
    );
    assert_problem(&r, 400, "bad_request");
    let r = c.send("POST", "/v1/workers/claim", None, &[]);
    assert_problem(&r, 415, "unsupported_media_type");
    let r = c.send(
        "POST",
        "/v1/workers/claim",
        Some(&json!({"owner": "w"})),
        &[("x-tasklog-actor", " ")],
    );
    let p = assert_problem(&r, 400, "invalid_input");
    assert_eq!(p["at"], "X-Tasklog-Actor");
    // Nothing above claimed the task.
    assert_eq!(
        server.state.store().get("t").unwrap().state,
        TaskState::Pending
    );

    let (id, token) = claim_ok(&c, json!({"owner": "w"}));
    for (what, body, at) in [
        (
            "progress",
            json!({"owner": "w", "token": token, "percent": 101}),
            "$.percent",
        ),
        (
            "progress",
            json!({"owner": "w", "token": token, "percent": 300}),
            "$.percent",
        ),
        (
            "progress",
            json!({"owner": "w", "token": token}),
            "$.percent",
        ),
        (
            "checkpoint",
            json!({"owner": "w", "token": token, "name": "n"}),
            "$.data",
        ),
        (
            "checkpoint",
            json!({"owner": "w", "token": token, "name": "n", "data": 1, "progress": 101}),
            "$.progress",
        ),
        (
            "output",
            json!({"owner": "w", "token": token, "kind": "movie", "content": "x"}),
            "$.kind",
        ),
        ("fail", json!({"owner": "w", "token": token}), "$.error"),
        (
            "fail",
            json!({"owner": "w", "token": token, "error": "e", "requeue": "yes"}),
            "$.requeue",
        ),
        (
            "heartbeat",
            json!({"owner": "w", "token": token, "lease_ms": 0}),
            "$.lease_ms",
        ),
        ("complete", json!({"token": token}), "$.owner"),
    ] {
        let r = call(&c, &id, what, body.clone());
        let p = assert_problem(&r, 400, "invalid_input");
        assert_eq!(p["at"], at, "{what} {body}: {p}");
    }
    let r = c.send(
        "POST",
        &format!("/v1/workers/tasks/{id}/complete"),
        None,
        &[("content-type", "application/json")],
    );
    assert_problem(&r, 400, "bad_request");
    assert_eq!(
        server.state.store().get(&id).unwrap().version,
        2,
        "nothing written"
    );
}

#[test]
fn the_actor_header_is_recorded() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let body = json!({"owner": "w"});
    let r = c.send(
        "POST",
        "/v1/workers/claim",
        Some(&body),
        &[("x-tasklog-actor", "ops")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let history = server.state.store().history("t").unwrap();
    assert_eq!(history.last().unwrap().actor.as_deref(), Some("ops"));
}

#[test]
fn claims_answer_503_at_shutdown_and_a_long_poll_ends() {
    let server = TestServer::start();
    let c = server.client();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = claim(&c, json!({"owner": "w", "wait_ms": 30_000}));
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    server.state.begin_shutdown();
    let (r, took) = waiter.join().unwrap();
    assert_problem(&r, 503, "shutting_down");
    assert!(r.header("retry-after").is_some());
    assert!(took < Duration::from_secs(10), "{took:?}");
    let r = claim(&server.client(), json!({"owner": "w"}));
    assert_problem(&r, 503, "shutting_down");
}

#[test]
fn pending_tasks_from_before_the_server_started_are_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    store
        .submit(NewTask::new("old").id("old").meta(KIND, json!("k")))
        .unwrap();
    let server = TestServer::over(dir, store, tasklog_server::ServerOptions::default());
    let (id, _) = claim_ok(&server.client(), json!({"owner": "w", "kinds": ["k"]}));
    assert_eq!(id, "old");
}

#[test]
fn a_retried_or_reprioritized_task_is_queued_again() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "a", Some("k"), 1);
    submit(&server, "b", Some("k"), 2);
    let store = server.state.store();
    store.cancel("a", None).unwrap();
    store.retry("a").unwrap();
    let update = tasklog::task::TaskUpdate {
        priority: Some(9),
        ..Default::default()
    };
    store.update("a", update).unwrap();
    // A claim sees every change committed before it: the retried task, at its new priority.
    let (first, _) = claim_ok(&c, json!({"owner": "w"}));
    assert_eq!(first, "a");
    let (second, _) = claim_ok(&c, json!({"owner": "w"}));
    assert_eq!(second, "b");
    assert_eq!(claim(&c, json!({"owner": "w"})).status, 204);
}

#[test]
fn the_routes_are_in_the_openapi_document() {
    let server = TestServer::start();
    let doc = server.client().get("/openapi.json").json();
    for path in [
        "/v1/workers/claim",
        "/v1/workers/tasks/{id}/heartbeat",
        "/v1/workers/tasks/{id}/progress",
        "/v1/workers/tasks/{id}/checkpoint",
        "/v1/workers/tasks/{id}/output",
        "/v1/workers/tasks/{id}/complete",
        "/v1/workers/tasks/{id}/fail",
    ] {
        let op = &doc["paths"][path]["post"];
        assert!(op.is_object(), "{path} missing");
        assert!(op["requestBody"].is_object(), "{path}");
        assert!(op["responses"]["400"].is_object(), "{path}");
    }
    let claim = &doc["paths"]["/v1/workers/claim"]["post"]["responses"];
    assert!(claim["204"].is_object());
    let conflict = &doc["paths"]["/v1/workers/tasks/{id}/complete"]["post"]["responses"]["409"];
    assert!(
        conflict["content"]["application/problem+json"].is_object(),
        "{conflict}"
    );
}

#[test]
fn whole_numbers_with_a_zero_fraction_are_accepted_and_a_bad_actor_header_is_refused() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", None, 0);
    // JSON Schema's integers include `2000.0`; a fraction is still refused.
    let r = claim(&c, json!({"owner": "w", "lease_ms": 2000.5}));
    let p = assert_problem(&r, 400, "invalid_input");
    assert_eq!(p["at"], "$.lease_ms", "{p}");
    // A malformed header is refused even when the body names the actor.
    let r = c.send(
        "POST",
        "/v1/workers/claim",
        Some(&json!({"owner": "w", "actor": "a"})),
        &[("x-tasklog-actor", " ")],
    );
    let p = assert_problem(&r, 400, "invalid_input");
    assert_eq!(p["at"], "X-Tasklog-Actor", "{p}");
    let (id, token) = claim_ok(
        &c,
        json!({"owner": "w", "lease_ms": 2000.0, "wait_ms": 0.0}),
    );
    let r = call(
        &c,
        &id,
        "progress",
        json!({"owner": "w", "token": token, "percent": 40.0}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &c,
        &id,
        "output",
        json!({"owner": "w", "token": token, "kind": "stdout", "content": "x", "size_bytes": 1670.0}),
    );
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(server.state.store().get("t").unwrap().progress.percent, 40);
}

/// Issue #19: with `max_attempts` a fail retries the task (in the same batch) until the last
/// attempt, whose failure discards it; both failures stay in the history; a retry by hand
/// (`POST /v1/tasks/{id}/retry`) brings it back; `GET /v1/tasks?states=discarded` finds it.
#[test]
fn fail_with_max_attempts_retries_then_discards_and_a_manual_retry_revives() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, token) = claim_ok(&c, json!({"owner": "w"}));
    let r = call(
        &c,
        &id,
        "fail",
        json!({"owner": "w", "token": token, "error": "first", "max_attempts": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["state"], "pending", "{v}");
    assert_eq!(v["attempt"], 2);
    let (id2, token) = claim_ok(&c, json!({"owner": "w"}));
    assert_eq!(id2, id);
    assert!(token.starts_with("2."), "{token}");
    let r = call(
        &c,
        &id,
        "fail",
        json!({"owner": "w", "token": token, "error": "second", "max_attempts": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["state"], "discarded", "{v}");
    assert_eq!(v["last_error"], "second");
    assert_eq!(v["error_count"], 2);
    assert_eq!(
        claim(&c, json!({"owner": "w"})).status,
        204,
        "nothing to claim"
    );

    let store = server.state.store();
    let kinds: Vec<&str> = store.history(&id).unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "started",
            "failed",
            "retried",
            "updated",
            "started",
            "failed",
            "discarded"
        ]
    );
    let listed = c.get("/v1/tasks?states=discarded").json();
    assert_eq!(listed["tasks"][0]["id"], json!(id), "{listed}");
    let stats = c.get("/v1/stats").json();
    assert_eq!(stats["by_state"]["discarded"], 1, "{stats}");

    let r = c.post(&format!("/v1/tasks/{id}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "pending");
    assert_eq!(r.json()["attempt"], 3);
    assert_eq!(claim_ok(&c, json!({"owner": "w"})).0, id);
}

/// The retry delay is written as `runtime.not_before`, so the retry is not claimed early; and
/// `max_attempts: 1` discards at once.
#[test]
fn fail_with_a_retry_delay_holds_the_retry_back_and_one_attempt_discards_at_once() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "a", Some("k"), 0);
    submit(&server, "b", Some("k"), 0);
    let (a, token) = claim_ok(&c, json!({"owner": "w", "kinds": ["k"]}));
    let before = tasklog::task::Timestamp::now().as_millis();
    let r = call(
        &c,
        &a,
        "fail",
        json!({"owner": "w", "token": token, "error": "e", "max_attempts": 3, "retry_delay_ms": 3_600_000}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let nb = r.json()["metadata"]["runtime.not_before"].as_i64().unwrap();
    assert!(nb >= before + 3_600_000, "{nb}");
    let (b, token) = claim_ok(&c, json!({"owner": "w"}));
    assert_ne!(b, a, "the delayed retry is not handed out");
    let r = call(
        &c,
        &b,
        "fail",
        json!({"owner": "w", "token": token, "error": "e", "max_attempts": 1}),
    );
    assert_eq!(r.json()["state"], "discarded", "{}", r.text);
}

#[test]
fn fail_retry_policy_is_checked_before_anything_is_written() {
    let server = TestServer::start();
    let c = server.client();
    submit(&server, "t", Some("k"), 0);
    let (id, token) = claim_ok(&c, json!({"owner": "w"}));
    let before = server.state.store().last_lsn();
    for (body, at) in [
        (json!({"max_attempts": 0}), "$.max_attempts"),
        (json!({"max_attempts": 1001}), "$.max_attempts"),
        (
            json!({"max_attempts": 2, "requeue": true}),
            "$.max_attempts",
        ),
        (json!({"retry_delay_ms": 5}), "$.retry_delay_ms"),
        (
            json!({"max_attempts": 2, "retry_delay_ms": 86_400_001u64}),
            "$.retry_delay_ms",
        ),
    ] {
        let mut body = body;
        body["owner"] = json!("w");
        body["token"] = json!(token);
        body["error"] = json!("e");
        let r = call(&c, &id, "fail", body.clone());
        let v = assert_problem(&r, 400, "invalid_input");
        assert_eq!(v["at"], at, "{body} -> {v}");
    }
    assert_eq!(server.state.store().last_lsn(), before, "nothing written");
    assert_eq!(
        server.state.store().get(&id).unwrap().state,
        TaskState::Running
    );
}

#[test]
fn the_openapi_state_enum_lists_discarded() {
    let server = TestServer::start();
    let doc = server.client().get("/openapi.json").json();
    let states = &doc["components"]["schemas"]["TaskState"]["enum"];
    assert!(
        states.as_array().unwrap().contains(&json!("discarded")),
        "{states}"
    );
    let fail = &doc["components"]["schemas"]["FailRequest"]["properties"];
    assert!(fail["max_attempts"].is_object(), "{fail}");
}
