//! Shared helpers for the `cli_*` tests: run the real `tasklog` binary against a store in a
//! temporary directory and parse what it prints.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// The binary cargo built for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tasklog"))
}

/// `tasklog --dir <dir>` with a clean environment (no TASKLOG_DIR, no colors, WARN logging).
/// In [`Mode::Server`] a server runs on `dir` and the command goes through it.
pub fn tasklog(dir: &Path) -> Command {
    ensure_server(dir);
    let mut c = bare();
    c.arg("--dir").arg(dir);
    c
}

/// `tasklog` without `--dir`.
pub fn bare() -> Command {
    let mut c = Command::new(exe());
    c.env_remove("TASKLOG_DIR")
        .env_remove("TASKLOG_REMOTE")
        .env_remove("TASKLOG_TOKEN")
        .env_remove("TASKLOG_ACTOR")
        .env_remove("TASKLOG_WAIT")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60));
    c
}

/// Runs `tasklog --dir <dir> args...`, expects exit 0, returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tasklog(dir)
        .args(args)
        .assert()
        .success()
        .get_output()
        .clone();
    String::from_utf8(out.stdout).expect("stdout should be UTF-8")
}

/// Runs the command, expects exit `code`, returns stderr.
pub fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = tasklog(dir)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone();
    String::from_utf8(out.stderr).expect("stderr should be UTF-8")
}

/// Runs the command (with `--json` among `args`), expects exit 0 and stdout that is exactly
/// one JSON document.
pub fn json(dir: &Path, args: &[&str]) -> Value {
    let text = ok(dir, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Submits a task titled `title`; returns its id.
pub fn submit(dir: &Path, title: &str, extra: &[&str]) -> String {
    let mut args = vec!["submit", "--title", title];
    args.extend_from_slice(extra);
    let id = ok(dir, &args);
    let id = id.trim_end_matches('\n');
    assert!(
        !id.is_empty() && !id.contains('\n'),
        "submit should print the id alone on a line, got {id:?}"
    );
    id.to_string()
}

/// Asserts that `v` is an object holding every key in `keys`.
pub fn has_keys(v: &Value, keys: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"));
    for k in keys {
        assert!(obj.contains_key(*k), "missing key {k:?} in {v}");
    }
}

/// The keys the issue promises in a task object.
pub const TASK_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "role",
    "state",
    "progress",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "provider",
    "model",
    "tags",
    "metadata",
    "result",
    "last_error",
    "error_count",
    "attempt",
    "version",
];

/// Flips one byte in the middle of the records of the first log segment.
pub fn flip_byte_in_log(store: &Path) {
    let wal = store.join("wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal)
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = segs.first().expect("a segment");
    let mut bytes = std::fs::read(seg).expect("read segment");
    // Segments are preallocated: the records end where the zeros begin.
    let end = bytes.iter().rposition(|b| *b != 0).expect("records") + 1;
    let at = end / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(seg, &bytes).expect("write segment");
}

// ----- servers and the two modes ----------------------------------------------------------

/// How a scenario's commands reach their store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each command opens the store itself.
    Direct,
    /// A real `tasklog serve` runs on each store directory (started on the first command that
    /// names it); the commands find it through its record `<dir>/server.json` and talk to it.
    Server,
}

/// A `tasklog serve` child process on an ephemeral loopback port. Dropping it sends SIGTERM
/// and waits (SIGKILL after 20 s).
pub struct Server {
    /// The child.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`, read from its `listening on` line.
    pub url: String,
    /// Its stderr, collected by a thread.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `tasklog --dir dir serve --listen 127.0.0.1:0 extra...` (`extra` may name its
    /// own `--listen`) and waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with(dir, extra, &[])
    }

    /// [`Server::start`] with environment variables.
    pub fn start_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        use std::io::{BufRead, BufReader, Read};
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(exe());
        cmd.arg("--dir").arg(dir).arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(extra)
            .env_remove("TASKLOG_DIR")
            .env_remove("TASKLOG_TOKEN")
            .env_remove("TASKLOG_ACTOR")
            .env_remove("TASKLOG_REMOTE")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tasklog serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("read the server's first line");
        let Some(url) = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            panic!("tasklog serve did not start: said {line:?}, stderr: {err}");
        };
        // Keep draining stdout.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Server { child, url, stderr }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal.
    #[cfg(unix)]
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a pid");
        rustix::process::kill_process(pid, sig).expect("signal the server");
    }

    /// Waits for the process to end (at most `secs`), returning its exit status.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        #[cfg(unix)]
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if self.wait_exit(20).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

thread_local! {
    static MODE: std::cell::Cell<Mode> = const { std::cell::Cell::new(Mode::Direct) };
    static SERVERS: std::cell::RefCell<Vec<(PathBuf, Server)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// In [`Mode::Server`], makes sure a server runs on `dir`.
fn ensure_server(dir: &Path) {
    if MODE.with(|m| m.get()) != Mode::Server {
        return;
    }
    let running = SERVERS.with(|s| s.borrow().iter().any(|(d, _)| d == dir));
    if !running {
        let server = Server::start(dir, &[]);
        SERVERS.with(|s| s.borrow_mut().push((dir.to_path_buf(), server)));
    }
}

/// Runs a scenario in `mode`: in [`Mode::Server`] every store directory it names gets a server
/// (stopped when the scenario ends), and its commands go through that server.
pub fn run_in(mode: Mode, scenario: fn()) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MODE.with(|m| m.set(Mode::Direct));
            let servers = SERVERS.with(|s| std::mem::take(&mut *s.borrow_mut()));
            drop(servers);
        }
    }
    MODE.with(|m| m.set(mode));
    let _reset = Reset;
    scenario();
}

/// Declares a scenario's two tests: `NAME::direct` and `NAME::through_a_server` (ignored until
/// the server's routes are merged).
#[allow(unused_macros)]
macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn direct() {
                super::cli_support::run_in(super::cli_support::Mode::Direct, super::$name);
            }
            #[test]
            fn through_a_server() {
                super::cli_support::run_in(super::cli_support::Mode::Server, super::$name);
            }
        }
    )*};
}
