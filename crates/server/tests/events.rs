//! `GET /v1/events` (Server-Sent Events): catch-up from the log then live events, resuming
//! with `Last-Event-ID` (exactly the events after it, once each, in LSN order), `follow=false`,
//! the subscriber limit (503) and the release of a place when a client goes, streams ending at
//! shutdown, and bad parameters (400).
//!
//! Method: a real server over a fresh store; events are made through the store (and claims
//! over HTTP); the stream is read raw over a TCP socket (HTTP/1.1, chunked) by a reader thread
//! that parses SSE lines into events sent on a channel, so every wait is a bounded
//! `recv_timeout` and a test can drop its connection.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use serde_json::{Value, json};
use support::TestServer;
use tasklog::NewTask;
use tasklog_server::ServerOptions;

const WAIT: Duration = Duration::from_secs(10);

/// One SSE event as read.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Sse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
    fn lsn(&self) -> u64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }
}

/// What the reader thread reports.
#[derive(Debug)]
enum Item {
    Event(Sse),
    Comment,
    End,
}

/// An open event stream (or the refusal of one).
struct Stream {
    status: u16,
    headers: Vec<(String, String)>,
    /// The body of a refusal.
    body: String,
    items: Option<Receiver<Item>>,
    socket: TcpStream,
}

impl Stream {
    fn open(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Stream {
        Stream::open_gated(addr, target, headers, None)
    }

    /// Like `open`, but the body is not read (the client lags) until `go` receives.
    fn open_gated(
        addr: SocketAddr,
        target: &str,
        headers: &[(&str, &str)],
        go: Option<Receiver<()>>,
    ) -> Stream {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut req =
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        socket.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let mut stream = Stream {
            status,
            headers,
            body: String::new(),
            items: None,
            socket,
        };
        if status != 200 {
            let len: usize = stream
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            stream.body = String::from_utf8(body).unwrap();
            return stream;
        }
        assert!(chunked, "an event stream is chunked: {:?}", stream.headers);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            if let Some(go) = go {
                let _ = go.recv();
            }
            let mut parser = Parser::default();
            while let Some(bytes) = read_chunk(&mut reader) {
                for item in parser.feed(&bytes) {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Item::End);
        });
        stream.items = Some(rx);
        stream
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next item, within `WAIT`.
    fn next_item(&self) -> Item {
        let rx = self.items.as_ref().expect("an open stream");
        rx.recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no SSE item within {WAIT:?}: {e}"))
    }

    /// The next event (skipping comments), within `WAIT`.
    fn next_event(&self) -> Sse {
        loop {
            match self.next_item() {
                Item::Event(e) => return e,
                Item::Comment => continue,
                Item::End => panic!("the stream ended"),
            }
        }
    }

    /// True when nothing but comments arrives for `d`.
    fn quiet_for(&self, d: Duration) -> bool {
        let rx = self.items.as_ref().expect("an open stream");
        let until = std::time::Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Item::Comment) => continue,
                Ok(other) => panic!("expected quiet, got {other:?}"),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => panic!("reader gone"),
            }
        }
    }

    /// Waits for the end of the stream (skipping comments); panics on an event.
    fn expect_end(&self) {
        loop {
            match self.next_item() {
                Item::End => return,
                Item::Comment => continue,
                Item::Event(e) => panic!("expected the end, got {e:?}"),
            }
        }
    }

    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// Reads one chunk of a chunked body; `None` at the end or on a closed socket.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data).ok()?;
    data.truncate(size);
    Some(data)
}

/// An SSE line parser (fields `id`, `event`, `data`; comments; blank line dispatches).
#[derive(Default)]
struct Parser {
    pending: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let line = String::from_utf8(line).unwrap();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || self.id.is_some() || self.event.is_some() {
                    out.push(Item::Event(Sse {
                        id: self.id.take(),
                        event: self.event.take(),
                        data: std::mem::take(&mut self.data).join("\n"),
                    }));
                }
            } else if line.starts_with(':') {
                out.push(Item::Comment);
            } else {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                match field {
                    "id" => self.id = Some(value),
                    "event" => self.event = Some(value),
                    "data" => self.data.push(value),
                    _ => {}
                }
            }
        }
        out
    }
}

fn submit(server: &TestServer, id: &str) -> u64 {
    let task = server
        .state
        .store()
        .submit(NewTask::new(format!("title {id}")).id(id))
        .unwrap();
    task.last_lsn
}

#[test]
fn catches_up_from_the_log_then_follows_live_events() {
    let server = TestServer::start();
    let l1 = submit(&server, "a");
    let l2 = submit(&server, "b");
    let s = Stream::open(server.addr, &format!("/v1/events?from={l1}"), &[]);
    assert_eq!(s.status, 200, "{}", s.body);
    assert!(
        s.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let e1 = s.next_event();
    assert_eq!(e1.lsn(), l1);
    assert_eq!(e1.event.as_deref(), Some("created"));
    let d = e1.json();
    assert_eq!(d["lsn"], l1);
    assert_eq!(d["task_id"], "a");
    assert_eq!(d["kind"], "created");
    assert_eq!(d["from"], Value::Null);
    assert_eq!(d["to"], "pending");
    assert_eq!(d["actor"], Value::Null);
    assert_eq!(d["details"]["title"], "title a");
    assert!(d["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s.next_event().lsn(), l2);
    // Live: a claim over HTTP, then a cancel.
    let r = server
        .client()
        .post("/v1/workers/claim", &json!({"owner": "w1", "kinds": null}));
    assert_eq!(r.status, 200, "{}", r.text);
    let started = s.next_event();
    assert_eq!(started.event.as_deref(), Some("started"));
    let d = started.json();
    assert_eq!(d["task_id"], "a");
    assert_eq!(d["from"], "pending");
    assert_eq!(d["to"], "running");
    assert_eq!(d["actor"], "w1");
    assert_eq!(d["details"]["owner"], "w1");
    server.state.store().cancel("a", Some("enough")).unwrap();
    let cancelled = s.next_event().json();
    assert_eq!(cancelled["kind"], "cancelled");
    assert_eq!(cancelled["from"], "running");
    assert_eq!(cancelled["to"], "cancelled");
    server.state.store().remove("b", None).unwrap();
    let removed = s.next_event().json();
    assert_eq!(removed["from"], "pending");
    assert_eq!(removed["to"], Value::Null);
    // Each event's fields are those of the task's history.
    let history = server.state.store().history("a").unwrap();
    let last = history.last().unwrap();
    assert_eq!(cancelled["lsn"], last.lsn);
    assert_eq!(cancelled["details"], last.details);
}

#[test]
fn the_states_of_a_task_first_seen_mid_history_come_from_its_history() {
    let server = TestServer::start();
    submit(&server, "a");
    let store = server.state.store();
    store.start("a").unwrap();
    let failed = store.fail("a", "e").unwrap().last_lsn;
    store.retry("a").unwrap();
    let s = Stream::open(server.addr, &format!("/v1/events?from={failed}"), &[]);
    let f = s.next_event().json();
    assert_eq!(
        (f["from"].as_str(), f["to"].as_str()),
        (Some("running"), Some("failed"))
    );
    let r = s.next_event().json();
    assert_eq!(r["kind"], "retried");
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("failed"), Some("pending"))
    );
}

#[test]
fn without_from_the_stream_starts_with_the_next_event() {
    let server = TestServer::start();
    submit(&server, "old");
    let s = Stream::open(server.addr, "/v1/events", &[]);
    assert_eq!(s.status, 200);
    assert!(s.quiet_for(Duration::from_millis(300)));
    let l = submit(&server, "new");
    let e = s.next_event();
    assert_eq!(e.lsn(), l);
    assert_eq!(e.json()["task_id"], "new");
}

#[test]
fn resuming_with_last_event_id_sends_exactly_the_events_after_it() {
    let server = TestServer::start();
    let lsns: Vec<u64> = (0..6).map(|i| submit(&server, &format!("t{i}"))).collect();
    let after = lsns[2];
    let s = Stream::open(
        server.addr,
        "/v1/events?from=1",
        &[("Last-Event-ID", &after.to_string())],
    );
    assert_eq!(s.status, 200, "{}", s.body);
    let got: Vec<u64> = (0..3).map(|_| s.next_event().lsn()).collect();
    assert_eq!(got, lsns[3..]);
    assert!(
        s.quiet_for(Duration::from_millis(300)),
        "nothing more, nothing twice"
    );
    let l = submit(&server, "live");
    assert_eq!(s.next_event().lsn(), l);
    // Many events: every one, once, in order, across catch-up and live.
    let s2 = Stream::open(
        server.addr,
        "/v1/events",
        &[("Last-Event-ID", &lsns[0].to_string())],
    );
    let more: Vec<u64> = (0..300)
        .map(|i| submit(&server, &format!("m{i}")))
        .collect();
    let mut want: Vec<u64> = lsns[1..].to_vec();
    want.push(l);
    want.extend(&more);
    let got: Vec<u64> = want.iter().map(|_| s2.next_event().lsn()).collect();
    assert_eq!(got, want);
    assert!(s2.quiet_for(Duration::from_millis(200)));
}

#[test]
fn a_lagging_client_gets_every_event_once_in_order() {
    let server = TestServer::start();
    let (go, gate) = channel();
    let s = Stream::open_gated(server.addr, "/v1/events", &[], Some(gate));
    assert_eq!(s.status, 200);
    // Far more than the server buffers and the socket holds, while the client reads nothing.
    let title = "x".repeat(2000);
    let mut want = Vec::new();
    for batch in 0..8 {
        let muts = (0..500)
            .map(|i| {
                let new = NewTask::new(title.clone()).id(format!("t{batch}-{i}"));
                tasklog::store::Mutation::submit(new)
            })
            .collect();
        let last = server.state.store().write_batch(muts).unwrap();
        want.extend(last - 499..=last);
    }
    std::thread::sleep(Duration::from_millis(500));
    go.send(()).unwrap();
    let got: Vec<u64> = want.iter().map(|_| s.next_event().lsn()).collect();
    assert_eq!(got, want);
    assert!(s.quiet_for(Duration::from_millis(200)));
}

#[test]
fn follow_false_ends_once_caught_up() {
    let server = TestServer::start();
    let a = submit(&server, "a");
    let b = submit(&server, "b");
    let s = Stream::open(server.addr, "/v1/events?from=0&follow=false", &[]);
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.next_event().lsn(), a);
    assert_eq!(s.next_event().lsn(), b);
    s.expect_end();
    let s = Stream::open(
        server.addr,
        &format!("/v1/events?from={}&follow=false", b + 1),
        &[],
    );
    assert_eq!(s.status, 200);
    s.expect_end();
}

#[test]
fn subscribers_beyond_the_limit_get_503_and_a_place_frees_when_a_client_goes() {
    let mut options = ServerOptions::default();
    options.max_sse_subscribers = 2;
    let server = TestServer::with_options(options);
    let s1 = Stream::open(server.addr, "/v1/events", &[]);
    let s2 = Stream::open(server.addr, "/v1/events", &[]);
    assert_eq!((s1.status, s2.status), (200, 200));
    let s3 = Stream::open(server.addr, "/v1/events", &[]);
    assert_eq!(s3.status, 503);
    assert!(s3.header("retry-after").is_some());
    assert_eq!(s3.problem()["code"], "too_many_subscribers");
    drop(s1);
    // The server notices the client went (its thread stops within a poll) and frees the place.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = Stream::open(server.addr, "/v1/events", &[]);
        if s.status == 200 {
            break;
        }
        assert_eq!(s.status, 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The other stream was not disturbed.
    let l = submit(&server, "x");
    assert_eq!(s2.next_event().lsn(), l);
}

#[test]
fn streams_end_at_shutdown() {
    let server = TestServer::start();
    let s = Stream::open(server.addr, "/v1/events?from=1", &[]);
    assert_eq!(s.status, 200);
    let l = submit(&server, "a");
    assert_eq!(s.next_event().lsn(), l);
    server.state.begin_shutdown();
    s.expect_end();
    let refused = Stream::open(server.addr, "/v1/events", &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.problem()["code"], "shutting_down");
}

#[test]
fn bad_parameters_are_400_naming_them() {
    let server = TestServer::start();
    for (target, headers, at) in [
        ("/v1/events?from=abc", vec![], "from"),
        ("/v1/events?from=-1", vec![], "from"),
        ("/v1/events?from=", vec![], "from"),
        ("/v1/events?from=99999999999999999999999", vec![], "from"),
        ("/v1/events?follow=maybe", vec![], "follow"),
        ("/v1/events?frm=1", vec![], "frm"),
        ("/v1/events", vec![("Last-Event-ID", "x1")], "Last-Event-ID"),
    ] {
        let s = Stream::open(server.addr, target, &headers);
        assert_eq!(s.status, 400, "{target}: {}", s.body);
        let p = s.problem();
        assert_eq!(p["at"], at, "{target}: {p}");
    }
    // The refusals took no subscriber places.
    assert_eq!(server.state.hub().sse_subscribers(), 0);
}

#[test]
fn a_from_that_was_compacted_away_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let store = tasklog::StoreOptions::new()
        .snapshot_every_records(0)
        .segment_bytes_max(4096)
        .open(dir.path().join("store"))
        .unwrap();
    for round in 0..4 {
        for i in 0..30 {
            let id = format!("t{round}-{i}");
            store
                .submit(NewTask::new(format!("task {id}")).id(&id))
                .unwrap();
            store.cancel(&id, Some("churn")).unwrap();
        }
        store.snapshot().unwrap();
    }
    let first = store.log_stats().first_lsn;
    assert!(first > 2, "the test needs early segments compacted away");
    let server = TestServer::over(dir, store, ServerOptions::default());
    let s = Stream::open(server.addr, "/v1/events?from=1", &[]);
    assert_eq!(s.status, 400, "{}", s.body);
    assert_eq!(s.problem()["at"], "from");
    let s = Stream::open(server.addr, "/v1/events", &[("Last-Event-ID", "1")]);
    assert_eq!(s.status, 400, "{}", s.body);
    assert_eq!(s.problem()["at"], "Last-Event-ID");
    // From where the log starts, it streams.
    let s = Stream::open(server.addr, &format!("/v1/events?from={first}"), &[]);
    assert_eq!(s.status, 200, "{}", s.body);
    assert!(s.next_event().lsn() >= first);
    assert_eq!(server.state.hub().sse_subscribers(), 1);
}

#[test]
fn the_stream_is_in_the_openapi_document() {
    let server = TestServer::start();
    let doc = server.client().get("/openapi.json").json();
    let op = &doc["paths"]["/v1/events"]["get"];
    assert!(
        op["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{op}"
    );
    assert!(op["responses"]["503"]["content"]["application/problem+json"].is_object());
    let names: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["from", "follow", "Last-Event-ID"]);
    let schema = &doc["components"]["schemas"]["EventData"];
    for field in [
        "lsn", "task_id", "kind", "at", "from", "to", "actor", "details",
    ] {
        assert!(schema["properties"][field].is_object(), "{field}: {schema}");
    }
}
