//! `tasklog serve` as a process, and the CLI as its client. Each test starts a real server
//! (`--listen 127.0.0.1:0`, the port read from its `listening on` line) on a store in a
//! temporary directory and checks what a user relies on: the record `<dir>/server.json` (url,
//! pid, never the token) is written once it listens and removed on SIGTERM or SIGINT, after
//! which the store opens cleanly; a non-loopback address without a token is refused (exit 2,
//! nothing created); a second server on the same store exits 4; a stale record (dead pid, or a
//! live pid that does not answer `/livez`) is ignored and the command opens the store itself;
//! `--remote` reaches any server and maps its answers to the CLI's exit codes. The tests that
//! need the server's routes (`/livez`, `/v1/...`) are ignored until those are merged.
#![cfg(unix)] // SIGTERM and SIGINT: Unix only; the cross-platform checks compile the rest.

#[macro_use]
mod cli_support;

use std::path::Path;

use cli_support::{Server, bare, fails, json, ok, submit, tasklog};
use rustix::process::Signal;
use serde_json::{Value, json};

fn record(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("server.json")).ok()?;
    Some(serde_json::from_str(&text).expect("server.json is JSON"))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn stops_cleanly_on(sig: Signal) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let mut server = Server::start(&d, &[]);
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let rec = record(&d).expect("the record is written once the server listens");
    assert_eq!(rec["url"], json!(server.url));
    assert_eq!(rec["pid"], json!(server.pid()));
    assert_eq!(rec["token_required"], json!(false));
    // The server holds the store: a direct writer would be refused (exit 4) if it opened it.
    server.signal(sig);
    let status = server.wait_exit(20).expect("the server stops within 20 s");
    assert!(
        status.success(),
        "{status:?}: {}",
        server.stderr.lock().unwrap()
    );
    assert!(record(&d).is_none(), "the record is removed on exit");
    assert!(!d.join("server.json.tmp").exists());
    // Closed cleanly: the store opens, verifies, and takes writes directly.
    ok(&d, &["verify"]);
    let id = submit(&d, "after the server", &[]);
    assert_eq!(json(&d, &["get", &id, "--json"])["state"], json!("pending"));
}

#[test]
fn serve_records_where_it_listens_and_sigterm_stops_it_cleanly() {
    stops_cleanly_on(Signal::TERM);
}

#[test]
fn sigint_stops_the_server_cleanly_too() {
    stops_cleanly_on(Signal::INT);
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let err = fails(&d, &["serve", "--listen", "0.0.0.0:0"], 2);
    assert!(
        err.contains("refusing") && err.contains("token") && err.contains("TASKLOG_TOKEN"),
        "{err}"
    );
    assert!(!d.exists(), "a refused serve creates nothing");
    let err = fails(&d, &["serve", "--listen", "not an address"], 2);
    assert!(err.contains("--listen"), "{err}");
    let err = fails(&d, &["serve", "--files-dir", "/no/such/dir"], 2);
    assert!(err.contains("--files-dir"), "{err}");
    assert!(!d.exists());
    // `--jetstream` flags are checked before anything starts.
    for (args, says) in [
        (
            &["serve", "--jetstream", "nats://127.0.0.1:1"][..],
            "--stream",
        ),
        (&["serve", "--stream", "S"][..], "--jetstream"),
        (
            &[
                "serve",
                "--jetstream",
                "nats://x",
                "--stream",
                "S",
                "--lease",
                "10ms",
            ][..],
            "between 300ms and 1h",
        ),
        (
            &[
                "serve",
                "--jetstream",
                "nats://x",
                "--stream",
                "S",
                "--advertise",
                "ftp://x",
            ][..],
            "http://",
        ),
    ] {
        let err = fails(&d, args, 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    #[cfg(not(feature = "jetstream"))]
    {
        let err = fails(
            &d,
            &["serve", "--jetstream", "nats://x", "--stream", "S"],
            2,
        );
        assert!(err.contains("--features jetstream"), "{err}");
    }
    assert!(!d.exists());

    // With a token (file or environment) it starts; the record says a token is needed and
    // never holds the token itself.
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start_with(
        &d,
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let text = std::fs::read_to_string(d.join("server.json")).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(record(&d).unwrap()["token_required"], json!(true));
    drop(server);
    let d2 = tmp.path().join("store2");
    let server = Server::start_with(
        &d2,
        &["--listen", "0.0.0.0:0"],
        &[("TASKLOG_TOKEN", "from-the-env")],
    );
    assert_eq!(record(&d2).unwrap()["token_required"], json!(true));
    drop(server);
    // An empty token is no token.
    std::fs::write(&token_file, "\n").unwrap();
    let err = fails(
        &d,
        &["serve", "--token-file", token_file.to_str().unwrap()],
        2,
    );
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn a_second_server_on_the_same_store_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let first = Server::start(&d, &[]);
    let err = fails(&d, &["serve", "--listen", "127.0.0.1:0"], 4);
    assert!(err.contains("lock"), "{err}");
    // The first server's record is intact.
    assert_eq!(record(&d).unwrap()["pid"], json!(first.pid()));
}

#[test]
fn a_busy_port_fails_before_the_store_is_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let err = fails(&d, &["serve", "--listen", &addr], 1);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
    assert!(
        !d.exists(),
        "the store was opened for a server that could not listen"
    );
}

#[test]
fn a_stale_record_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let id = submit(&d, "before", &[]);
    // A record of a process that is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let write = |pid: u32| {
        let rec = json!({ "url": url, "pid": pid, "token_required": false });
        std::fs::write(d.join("server.json"), rec.to_string()).unwrap();
    };
    write(dead_pid);
    ok(&d, &["start", &id]);
    assert_eq!(json(&d, &["get", &id, "--json"])["state"], json!("running"));
    // A live process (this test) that does not answer /livez.
    write(std::process::id());
    ok(&d, &["progress", &id, "50"]);
    assert_eq!(json(&d, &["list", "--json"]).as_array().unwrap().len(), 1);
    // An unreadable record.
    std::fs::write(d.join("server.json"), "{not json").unwrap();
    ok(&d, &["complete", &id]);
    // The record is the server's: a command does not remove it.
    assert!(d.join("server.json").exists());
}

#[test]
fn the_record_of_a_killed_server_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let mut server = Server::start(&d, &[]);
    server.signal(Signal::KILL);
    server.wait_exit(20).expect("SIGKILL ends the server");
    assert!(
        record(&d).is_some(),
        "a killed server leaves its record behind"
    );
    // The next commands open the store themselves (the lock died with the server).
    let id = submit(&d, "after the crash", &[]);
    ok(&d, &["start", &id]);
    assert_eq!(json(&d, &["get", &id, "--json"])["state"], json!("running"));
    // And a new server replaces the record.
    let again = Server::start(&d, &[]);
    assert_eq!(record(&d).unwrap()["pid"], json!(again.pid()));
}

#[test]
fn remote_reports_an_unreachable_server_and_refuses_local_only_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let err = fails(&d, &["--remote", &url, "get", "x"], 1);
    assert!(err.contains("cannot reach the server"), "{err}");
    let out = bare()
        .env("TASKLOG_REMOTE", &url)
        .args(["--dir", d.to_str().unwrap(), "list"])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains(&url), "{err}");
    for args in [&["verify"][..], &["repair"], &["stress"], &["demo"]] {
        let mut full = vec!["--remote", url.as_str()];
        full.extend_from_slice(args);
        let err = fails(&d, &full, 2);
        assert!(err.contains("not through --remote"), "{err}");
    }
    // Nothing was created by any of these.
    assert!(!d.exists());
}

#[test]
fn remote_to_a_server_without_the_route_is_a_clear_error() {
    // Whatever routes the server has, an answer that is not a task is an operation error
    // (exit 1) naming the server, never a crash.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let server = Server::start(&d, &[]);
    let other = tmp.path().join("elsewhere");
    let err = fails(&other, &["--remote", &server.url, "get", "no-such-task"], 1);
    assert!(err.starts_with("tasklog: error: "), "{err}");
    assert!(!other.exists());
}

// ----- through the server's routes (ignored until they are merged) -------------------------

#[test]
fn commands_find_the_server_through_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let _server = Server::start(&d, &[]);
    // The server holds the write lock: these only succeed through it.
    let id = submit(&d, "through the server", &["--role", "coder"]);
    ok(&d, &["start", &id]);
    ok(&d, &["progress", &id, "30", "--step", "s"]);
    let t = json(&d, &["get", &id, "--json"]);
    assert_eq!(t["state"], json!("running"));
    assert_eq!(t["progress"]["percent"], json!(30));
    let err = fails(&d, &["start", &id], 1);
    assert!(err.contains(&id), "{err}");
    fails(&d, &["get", "no-such-task"], 1);
}

#[test]
fn concurrent_writers_through_a_server_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let _server = Server::start(&d, &[]);
    let handles: Vec<_> = (0..5)
        .map(|p| {
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let title = format!("p{p} t{i}");
                    tasklog(&d)
                        .args(["submit", "--title", &title])
                        .assert()
                        .success();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(json(&d, &["list", "--json"]).as_array().unwrap().len(), 50);
}

#[test]
fn a_server_with_a_token_needs_it_from_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let _server = Server::start_with(&d, &[], &[("TASKLOG_TOKEN", "tok-123")]);
    let err = fails(&d, &["list"], 1);
    assert!(err.contains("TASKLOG_TOKEN"), "{err}");
    let out = tasklog(&d)
        .env("TASKLOG_TOKEN", "tok-123")
        .args(["submit", "--title", "t"])
        .assert()
        .success();
    assert!(!out.get_output().stdout.is_empty());
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "tok-123\n").unwrap();
    let list = ok(
        &d,
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "list",
            "--json",
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn watch_through_a_server_follows_every_writer() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let _server = Server::start(&d, &[]);
    let first = submit(&d, "before watch", &[]);
    let mut watch = std::process::Command::new(cli_support::exe())
        .args([
            "--dir",
            d.to_str().unwrap(),
            "watch",
            "--json",
            "--from",
            "1",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> Value {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("watch prints a line");
        serde_json::from_str(&line).expect("watch --json prints JSON lines")
    };
    let e = next();
    assert_eq!(
        (e["task_id"].clone(), e["kind"].clone()),
        (json!(first), json!("created"))
    );
    // Two other writers, while watch runs.
    let second = submit(&d, "while watching", &[]);
    ok(&d, &["start", &second]);
    let e = next();
    assert_eq!(e["task_id"], json!(second));
    assert!(e["lsn"].as_u64().unwrap() > 1);
    let e = next();
    assert_eq!(
        (e["task_id"].clone(), e["kind"].clone()),
        (json!(second), json!("started"))
    );
    let _ = watch.kill();
    let _ = watch.wait();
}
