//! What a 2xx means: a `tasklog serve` process is killed with SIGKILL while 16 clients submit
//! over HTTP, again and again on the same store. Every submit it answered 2xx must be in the
//! store afterwards: read back through the restarted server, and by the library directly.
//!
//! SIGKILL leaves the page cache intact, so this proves the server acknowledges only what the
//! store acknowledged (no answer before the commit returned, nothing held back in the server);
//! that a commit is on the disk itself is the store's power-cut tests' job.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

fn start_server(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tasklog serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line of serve: {line:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (child, url)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

#[test]
fn every_submit_answered_2xx_survives_sigkill_of_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let acked: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let cycles = 3;
    for cycle in 0..cycles {
        let (mut child, url) = start_server(&dir);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for client in 0..16 {
                let (url, stop, acked) = (&url, &stop, &acked);
                s.spawn(move || {
                    let agent = agent();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("c{cycle}-k{client}-{i}");
                        i += 1;
                        let resp = agent
                            .post(format!("{url}/v1/tasks"))
                            .send_json(json!({"id": id, "title": "killed while submitting"}));
                        match resp {
                            Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                            // The server died mid-request (connection reset) or answered
                            // something else: not acknowledged, nothing to prove.
                            _ => {
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
            let run_ms = 300 + fastrand::u64(0..700);
            std::thread::sleep(Duration::from_millis(run_ms));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
        let n = acked.lock().unwrap().len();
        assert!(n > 0, "cycle {cycle}: no submit was acknowledged");

        // Through a restarted server (it must start over the dead one's stale record).
        let (mut child, url) = start_server(&dir);
        let agent = agent();
        for id in acked.lock().unwrap().iter() {
            let resp = agent.get(format!("{url}/v1/tasks/{id}")).call().unwrap();
            assert_eq!(
                resp.status().as_u16(),
                200,
                "cycle {cycle}: acknowledged submit {id} is missing after a SIGKILL"
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // And by the library, opening the store itself.
    let store = tasklog::Store::open(&dir).unwrap();
    for id in acked.lock().unwrap().iter() {
        store
            .get(id)
            .unwrap_or_else(|e| panic!("acknowledged submit {id} is missing: {e}"));
    }
    store.close().unwrap();
}
