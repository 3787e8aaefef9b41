//! The layers around every route and the running server: the bearer token (401 with
//! `WWW-Authenticate`, `/livez` open), the body limit (413 problem+json, with and without a
//! `Content-Length`), the request timeout (503, but not for long-poll and stream routes),
//! `serve` (lease supervision, graceful stop, the store closed after), and the OpenAPI
//! document (every operation answers its errors as `Problem`, every `$ref` resolves). Each test
//! drives a real server over loopback and checks status, content type and body.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Resp, TestServer};
use tasklog_server::{AppState, ServerOptions};

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
    p
}

#[test]
fn the_token_guards_every_route_but_livez() {
    let s = TestServer::with_options(ServerOptions::default().token("s3cret"));
    let mut c = s.client();
    for (m, path) in [
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/no/such/route"),
    ] {
        let r = c.send(m, path, Some(&json!({"title": "x"})), &[]);
        problem(&r, 401, "unauthorized");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{m} {path}"
        );
    }
    let r = c.send(
        "GET",
        "/v1/tasks",
        None,
        &[("authorization", "Bearer wrong")],
    );
    problem(&r, 401, "unauthorized");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let r = c.send(
        "GET",
        "/v1/tasks",
        None,
        &[("authorization", "Basic czNjcmV0")],
    );
    problem(&r, 401, "unauthorized");
    let r = c.send(
        "GET",
        "/v1/tasks",
        None,
        &[("authorization", "Bearer s3cret-and-more")],
    );
    problem(&r, 401, "unauthorized");
    // Nothing was created by the refused submit.
    assert_eq!(s.state.store().len(), 0);
    // `/livez` needs no token (whatever it answers, it is not 401).
    assert_ne!(c.get("/livez").status, 401);

    c.token = Some("s3cret".into());
    let r = c.post("/v1/tasks", &json!({"title": "x"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c.send("GET", "/v1/tasks", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.send(
        "GET",
        "/v1/tasks",
        None,
        &[("authorization", "bearer s3cret")],
    );
    assert_eq!(r.status, 200, "lower-case scheme: {}", r.text);
}

#[test]
fn no_token_configured_means_no_check() {
    let s = TestServer::start();
    let r = s.client().get("/v1/tasks");
    assert_eq!(r.status, 200, "{}", r.text);
}

fn small_body_server() -> TestServer {
    let mut o = ServerOptions::default();
    o.max_body_bytes = 1024;
    TestServer::with_options(o)
}

#[test]
fn bodies_over_the_limit_are_413_problems() {
    let s = small_body_server();
    let c = s.client();
    let big = json!({"title": "x".repeat(4096)});
    problem(&c.post("/v1/tasks", &big), 413, "too_large");
    problem(
        &c.send("PATCH", "/v1/tasks/x", Some(&big), &[]),
        413,
        "too_large",
    );
    // Under the limit: fine.
    assert_eq!(c.post("/v1/tasks", &json!({"title": "small"})).status, 201);
    assert_eq!(s.state.store().len(), 1);
}

/// Sends a raw HTTP/1.1 request and returns the status line and the rest.
fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    (head.to_string(), rest.to_string())
}

#[test]
fn chunked_bodies_over_the_limit_are_413_problems() {
    let s = small_body_server();
    let chunk = format!("{{\"title\": \"{}\"}}", "y".repeat(3000));
    let req = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, rest) = raw_http(s.addr, req.as_bytes());
    assert!(status.contains(" 413 "), "{status}\n{rest}");
    assert!(
        rest.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{rest}"
    );
    assert!(rest.contains("\"too_large\""), "{rest}");
    assert_eq!(s.state.store().len(), 0);
}

/// A server over `app` on a loopback port, in its own runtime; dropped with the returned guard.
struct AppServer {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AppServer {
    fn start(app: axum::Router) -> AppServer {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
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
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        AppServer {
            base: format!("http://{addr}"),
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn slow_requests_time_out_but_long_polls_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = tasklog::Store::open(dir.path()).unwrap();
    let mut o = ServerOptions::default();
    o.request_timeout = Duration::from_millis(100);
    let state = AppState::new(store, o);
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        "done"
    };
    let routes = axum::Router::new()
        .route("/v1/slow", axum::routing::get(slow))
        .route("/v1/workers/claim", axum::routing::post(slow))
        .route("/v1/events", axum::routing::get(slow))
        .route("/v1/fast", axum::routing::get(|| async { "fast" }));
    let app = tasklog_server::auth::layers(routes, state.clone()).with_state(state);
    let server = AppServer::start(app);
    let c = support::Client::new(&server.base);
    let r = c.get("/v1/slow");
    let p = problem(&r, 503, "timeout");
    assert!(r.header("retry-after").is_some(), "{p}");
    assert_eq!(c.get("/v1/fast").status, 200);
    let r = c.send("POST", "/v1/workers/claim", None, &[]);
    assert_eq!((r.status, r.text.as_str()), (200, "done"));
    let r = c.get("/v1/events");
    assert_eq!((r.status, r.text.as_str()), (200, "done"));
}

#[test]
fn serve_supervises_leases_and_closes_the_store_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = tasklog::Store::open(&store_dir).unwrap();
    let mut o = ServerOptions::default();
    o.lease_check_interval = Duration::from_millis(20);
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
        })
    });
    let addr = addr_rx.recv().unwrap();
    let c = support::Client::new(&format!("http://{addr}"));
    let r = c.post("/v1/tasks", &json!({"title": "leased", "id": "l"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c.post("/v1/tasks/l/start", &json!({"owner": "w", "lease_ms": 50}));
    assert_eq!(r.json()["state"], "running", "{}", r.text);
    // The supervisor applies the store's policy (failed) once the lease expires.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = c.get("/v1/tasks/l").json();
        if t["state"] == "failed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lease never recovered: {t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let h = c.get("/v1/tasks/l/history").json();
    assert_eq!(
        h.as_array().unwrap().last().unwrap()["actor"],
        "tasklog-recovery"
    );

    stop_tx.send(()).unwrap();
    thread.join().unwrap().unwrap();
    // The store was closed: it opens again (the lock is free) with the task.
    let reopened = tasklog::Store::open(&store_dir).unwrap();
    assert_eq!(reopened.get("l").unwrap().state, tasklog::TaskState::Failed);
    // And the server no longer answers.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s);
                    }
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_fits_the_server() {
    // Without a token: no security requirement, no 401; the page limit is the server's.
    let mut o = ServerOptions::default();
    o.max_page_size = 50;
    let s = TestServer::with_options(o);
    let doc = s.client().get("/openapi.json").json();
    assert!(doc.get("security").is_none(), "{}", doc["security"]);
    let list = &doc["paths"]["/v1/tasks"]["get"];
    assert!(list["responses"].get("401").is_none());
    let limit = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], 50);
    let p = problem(&s.client().get("/v1/tasks?limit=51"), 400, "invalid_input");
    assert_eq!(p["at"], "limit");
}

#[test]
fn the_openapi_document_is_complete() {
    let s = TestServer::with_options(ServerOptions::default().token("t"));
    let mut c = s.client();
    c.token = Some("t".into());
    let r = c.get("/openapi.json");
    assert_eq!(r.status, 200, "{}", r.text);
    let doc = r.json();
    if let Ok(path) = std::env::var("TASKLOG_OPENAPI_OUT") {
        std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["info"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/tasks",
        "/v1/tasks/count",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/history",
        "/v1/tasks/{id}/outputs",
        "/v1/tasks/{id}/start",
        "/v1/tasks/{id}/progress",
        "/v1/tasks/{id}/checkpoint",
        "/v1/tasks/{id}/complete",
        "/v1/tasks/{id}/fail",
        "/v1/tasks/{id}/cancel",
        "/v1/tasks/{id}/retry",
        "/v1/tasks/{id}/requeue",
        "/v1/batch",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no 2xx"
            );
            if path != "/livez" {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            for (status, resp) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        resp["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status}: not a problem"
                    );
                }
            }
            // Every `{param}` of the path is declared.
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    declared.contains(&name),
                    "{method} {path}: {name} undeclared"
                );
            }
        }
    }
    // Operation ids are unique across every module's routes.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"start_task") && ids.contains(&"submit_task"),
        "{ids:?}"
    );
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "repeated operationId: {ids:?}");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    // The batch's mutations are described op by op.
    let items = &doc["components"]["schemas"]["BatchBody"]["properties"]["mutations"]["items"];
    assert_eq!(items["$ref"], "#/components/schemas/BatchMutation");
    let ops = doc["components"]["schemas"]["BatchMutation"]["oneOf"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = ops
        .iter()
        .map(|o| o["properties"]["op"]["enum"][0].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    for o in ops {
        assert!(
            o["required"].as_array().unwrap().contains(&json!("op")),
            "{o}"
        );
    }
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = tasklog::Store::open(dir.path()).unwrap();
    let state = AppState::new(store, ServerOptions::default());
    let routes = axum::Router::new()
        .route(
            "/v1/boom",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .route("/v1/fine", axum::routing::get(|| async { "fine" }));
    let app = tasklog_server::auth::layers(routes, state.clone()).with_state(state);
    let server = AppServer::start(app);
    let c = support::Client::new(&server.base);
    problem(&c.get("/v1/boom"), 500, "internal");
    let r = c.get("/v1/fine");
    assert_eq!((r.status, r.text.as_str()), (200, "fine"));
    // Axum's own text answers become problems too.
    let r = c.send("POST", "/v1/fine", None, &[]);
    problem(&r, 405, "method_not_allowed");
}

#[test]
fn shutdown_answers_the_request_in_flight_then_closes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = tasklog::Store::open(&store_dir).unwrap();
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
            tasklog_server::serve(listener, store, ServerOptions::default(), async move {
                let _ = stop_rx.await;
            })
            .await
        })
    });
    let addr = addr_rx.recv().unwrap();
    // A request whose body is still arriving when the shutdown begins.
    let body = br#"{"title": "late"}"#;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(&body[5..]).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    // It is answered (not reset): refused with 503 and Retry-After, since new work stops at
    // the shutdown.
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("\"shutting_down\""), "{text}");
    thread.join().unwrap().unwrap();
    let reopened = tasklog::Store::open(&store_dir).unwrap();
    assert_eq!(reopened.len(), 0);
}
