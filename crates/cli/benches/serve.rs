//! `tasklog serve` measured against the library in the same run (issue #13, point 7).
//!
//! `cargo bench -p tasklog-cli --bench serve` prints a Markdown table:
//! - durable submits/s over HTTP with 1, 8 and 64 keep-alive clients, against the library
//!   with as many threads (each submit answered only once its event is fsynced);
//! - end-to-end durable jobs/s: producers submit, 20 HTTP workers claim and complete (every
//!   step durable), against Faktory's published 5,000 jobs/s (Redis-backed, not fsync-durable);
//! - CLI command latency on a 100,000-task store, through a server against direct;
//! - the server's resident memory at 100,000 tasks.
//!
//! Environment: `TASKLOG_BENCH_SECS` (each throughput phase, default 5),
//! `TASKLOG_BENCH_TASKS` (the large store, default 100000), `TASKLOG_BENCH_DIR` (where stores
//! are made; default a temporary directory on the same disk as the target directory).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tasklog::store::{Change, Mutation};
use tasklog::{NewTask, Store};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_root() -> tempfile::TempDir {
    match std::env::var_os("TASKLOG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
    }
}

/// A `tasklog serve` child process.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tasklog"))
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tasklog serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of serve: {line:?}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        Server { child, url }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A minimal keep-alive HTTP/1.1 client: one write per request (head and body together), the
/// answer read by its Content-Length. The benchmark measures the server, so the client does as
/// little as it can (a general-purpose client here added milliseconds per request).
struct Conn {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(base: &str) -> Conn {
        Conn {
            addr: base.trim_start_matches("http://").to_string(),
            stream: None,
        }
    }

    fn post(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        if self.stream.is_none() {
            let tcp = TcpStream::connect(&self.addr).expect("connect");
            tcp.set_nodelay(true).unwrap();
            self.stream = Some(BufReader::new(tcp));
        }
        let stream = self.stream.as_mut().unwrap();
        stream.get_mut().write_all(&req).expect("send");
        let mut line = String::new();
        stream.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut len = 0usize;
        loop {
            line.clear();
            stream.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        stream.read_exact(&mut buf).expect("body");
        (status, serde_json::from_slice(&buf).unwrap_or(Value::Null))
    }
}

/// Runs `threads` loops of `op` for `secs`; returns operations per second.
fn throughput(threads: usize, secs: u64, op: impl Fn(usize, u64) + Send + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, done, op) = (&stop, &done, &op);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn submits(root: &Path, secs: u64) -> Vec<(usize, f64, f64)> {
    let mut rows = Vec::new();
    for clients in [1usize, 8, 64] {
        let lib_dir = root.join(format!("lib-{clients}"));
        let store = Store::open(&lib_dir).unwrap();
        let lib = throughput(clients, secs, |t, i| {
            store
                .submit(NewTask::new(format!("t{t}-{i}")).role("bench"))
                .unwrap();
        });
        store.close().unwrap();

        let server = Server::start(&root.join(format!("http-{clients}")));
        let conns: Vec<std::sync::Mutex<Conn>> = (0..clients)
            .map(|_| std::sync::Mutex::new(Conn::new(&server.url)))
            .collect();
        let http = throughput(clients, secs, |t, i| {
            let (status, _) = conns[t].lock().unwrap().post(
                "/v1/tasks",
                &json!({"title": format!("t{t}-{i}"), "role": "bench"}),
            );
            assert!(status == 201 || status == 200, "submit answered {status}");
        });
        server.stop();
        rows.push((clients, lib, http));
    }
    rows
}

/// Producers submit `jobs` tasks of kind `job`; 20 HTTP workers claim and complete them.
fn end_to_end(root: &Path, jobs: u64) -> (f64, f64) {
    let server = Server::start(&root.join("e2e"));
    let base = server.url.clone();
    let submitted = AtomicU64::new(0);
    let completed = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..4u64 {
            let (base, submitted) = (&base, &submitted);
            s.spawn(move || {
                let mut conn = Conn::new(base);
                loop {
                    let n = submitted.fetch_add(1, Ordering::Relaxed);
                    if n >= jobs {
                        break;
                    }
                    let body =
                        json!({"title": format!("job {p}-{n}"), "kind": "job", "input": {"n": n}});
                    let (status, _) = conn.post("/v1/tasks", &body);
                    assert!(status == 201 || status == 200, "submit answered {status}");
                }
            });
        }
        for w in 0..20 {
            let (base, completed) = (&base, &completed);
            s.spawn(move || {
                let mut conn = Conn::new(base);
                let owner = format!("w{w}");
                while completed.load(Ordering::Relaxed) < jobs {
                    let (status, claim) = conn.post(
                        "/v1/workers/claim",
                        &json!({"owner": owner, "kinds": ["job"], "lease_ms": 30000, "wait_ms": 200}),
                    );
                    if status == 204 {
                        continue;
                    }
                    assert_eq!(status, 200, "claim answered {status}: {claim}");
                    let id = claim["task"]["id"].as_str().unwrap().to_string();
                    let token = claim["token"].as_str().unwrap().to_string();
                    let (status, body) = conn.post(
                        &format!("/v1/workers/tasks/{id}/complete"),
                        &json!({"owner": owner, "token": token, "result": {"ok": true}}),
                    );
                    assert_eq!(status, 200, "complete answered {status}: {body}");
                    completed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let rss = server.rss_mib();
    server.stop();
    (jobs as f64 / secs, rss)
}

/// Builds a store of `tasks` tasks (a third completed) with the library, fast.
fn large_store(dir: &Path, tasks: u64) -> String {
    let store = Store::open(dir).unwrap();
    let mut some_id = String::new();
    for chunk in 0..tasks.div_ceil(1000) {
        let mut muts = Vec::new();
        for i in 0..1000u64 {
            let n = chunk * 1000 + i;
            if n >= tasks {
                break;
            }
            let id = format!("task-{n:07}");
            muts.push(Mutation::submit(
                NewTask::new(format!("task {n}"))
                    .id(id.clone())
                    .role(["build", "test", "deploy"][(n % 3) as usize]),
            ));
            if n % 3 == 0 {
                muts.push(Mutation::new(
                    id.clone(),
                    Change::Start {
                        owner: None,
                        lease_ms: None,
                    },
                ));
                muts.push(Mutation::new(id.clone(), Change::Complete { result: None }));
            }
            some_id = id;
        }
        store.write_batch(muts).unwrap();
    }
    store.close().unwrap();
    some_id
}

fn cli_ms(dir: &Path, args: &[&str]) -> f64 {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tasklog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed().as_secs_f64() * 1000.0
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_u64("TASKLOG_BENCH_SECS", 5);
    let tasks = env_u64("TASKLOG_BENCH_TASKS", 100_000);
    let root = bench_root();
    println!("# tasklog serve benchmark ({secs} s per throughput phase)\n");

    println!("| clients | library submits/s | HTTP submits/s | HTTP / library |");
    println!("|---:|---:|---:|---:|");
    for (clients, lib, http) in submits(root.path(), secs) {
        println!("| {clients} | {lib:.0} | {http:.0} | {:.2}x |", http / lib);
    }

    let jobs = env_u64("TASKLOG_BENCH_JOBS", 20_000);
    let (jobs_per_s, rss) = end_to_end(root.path(), jobs);
    println!(
        "\nend to end: {jobs} jobs, 4 producers, 20 HTTP workers: {jobs_per_s:.0} jobs/s \
         ({:.2}x Faktory's published 5,000/s); server RSS after: {rss:.1} MiB",
        jobs_per_s / 5000.0
    );

    let big = root.path().join("big");
    let id = large_store(&big, tasks);
    let commands: [(&str, Vec<&str>); 4] = [
        ("get", vec!["get", &id]),
        ("history", vec!["history", &id]),
        ("stats", vec!["stats"]),
        ("submit", vec!["submit", "--title", "a new task"]),
    ];
    let mut direct = Vec::new();
    for (name, args) in &commands {
        let runs: Vec<f64> = (0..3).map(|_| cli_ms(&big, args)).collect();
        direct.push((*name, percentile(runs, 0.5)));
    }
    let server = Server::start(&big);
    let rss = server.rss_mib();
    println!("\n{tasks}-task store: server RSS {rss:.1} MiB after open\n");
    println!("| command | direct p50 ms | through server p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for ((name, args), (_, d)) in commands.iter().zip(&direct) {
        let runs: Vec<f64> = (0..50).map(|_| cli_ms(&big, args)).collect();
        println!(
            "| {name} | {d:.1} | {:.1} | {:.1} |",
            percentile(runs.clone(), 0.5),
            percentile(runs, 0.99)
        );
    }
    server.stop();
}
