//! Goal: prove the handler API of issue #21: closures registered with `Kind::new` need no
//! spelled-out argument types, `?` converts tasklog errors, any `std::error::Error`, `String`
//! and `&str` into `HandlerError`, and what is recorded as the task's `last_error` is the error
//! with its chain of sources (so a wrapped I/O error still names its cause).
//!
//! Method: a one-worker runtime over a temporary store; each kind fails in one of those ways
//! with retries off, and the failed task's `last_error` is compared with the expected text.
//! Waits poll the store with a generous timeout that only detects hangs; nothing is timed.

use std::time::{Duration, Instant};

use serde_json::json;
use tasklog::runtime::{HandlerError, Kind, RetryPolicy, Runtime, RuntimeOptions};
use tasklog::store::StoreOptions;
use tasklog::{Store, TaskState};

const HANG: Duration = Duration::from_secs(20);

fn runtime(dir: &std::path::Path) -> Runtime {
    let options = RuntimeOptions {
        workers: 1,
        lease_ms: 5_000,
        heartbeat_ms: 1_000,
        supervise_ms: 50,
        owner: "handler-errors".into(),
    };
    Runtime::open(dir, StoreOptions::new(), options).unwrap()
}

fn wait_terminal(store: &Store, id: &str) -> tasklog::Task {
    let deadline = Instant::now() + HANG;
    loop {
        let t = store.get(id).unwrap();
        if t.state.is_terminal() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {id}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An error with a source, as libraries build them.
#[derive(Debug)]
struct Upload {
    source: std::io::Error,
}
impl std::fmt::Display for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upload failed")
    }
}
impl std::error::Error for Upload {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[test]
fn question_mark_records_the_error_and_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    // No closure types spelled out, no map_err.
    rt.register(
        "ok",
        Kind::new(|ctx, input| {
            ctx.progress(50, Some("half"), None)?;
            Ok(json!({ "echo": input }))
        }),
    );
    rt.register(
        "parse",
        Kind::new(|_, input| {
            let n: u32 = input.as_str().unwrap_or_default().parse()?;
            Ok(json!(n))
        })
        .retry(RetryPolicy::never()),
    );
    rt.register(
        "chain",
        Kind::new(|_, _| {
            let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "peer went away");
            Err(Upload { source })?
        })
        .retry(RetryPolicy::never()),
    );
    rt.register(
        "text",
        Kind::new(|_, _| Err("plain words".into())).retry(RetryPolicy::never()),
    );
    rt.register(
        "store_error",
        // A context call that the store refuses: `?` turns the tasklog::Error into the
        // attempt's failure.
        Kind::new(|ctx, _| {
            ctx.progress(200, None, None)?;
            Ok(json!(null))
        })
        .retry(RetryPolicy::never()),
    );
    rt.start().unwrap();
    let store = rt.store().clone();
    let ok = rt.submit("ok", json!(7), 1).unwrap().id;
    let parse = rt.submit("parse", json!("seven"), 1).unwrap().id;
    let chain = rt.submit("chain", json!(null), 1).unwrap().id;
    let text = rt.submit("text", json!(null), 1).unwrap().id;
    let refused = rt.submit("store_error", json!(null), 1).unwrap().id;

    let t = wait_terminal(&store, &ok);
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.result.as_deref(), Some(&json!({ "echo": 7 })));

    // With `RetryPolicy::never()` the one failed attempt is the last: the task is discarded.
    let failed = |id: &str| {
        let t = wait_terminal(&store, id);
        assert_eq!(t.state, TaskState::Discarded, "{id}");
        t.last_error.unwrap_or_default()
    };
    assert_eq!(failed(&parse), "invalid digit found in string");
    assert_eq!(failed(&chain), "upload failed: peer went away");
    assert_eq!(failed(&text), "plain words");
    let refusal = failed(&refused);
    assert!(refusal.contains("200"), "{refusal}");
    rt.shutdown(HANG).unwrap();
}

#[test]
fn handler_error_display_skips_a_source_its_parent_already_shows() {
    // tasklog's own I/O error prints its source; the chain must not repeat it.
    let io = std::io::Error::other("disk on fire");
    let e: HandlerError = tasklog::Error::io("write", "/x/y", io).into();
    let text = e.to_string();
    assert_eq!(text.matches("disk on fire").count(), 1, "{text}");
    assert!(text.starts_with("write /x/y: disk on fire"), "{text}");
}
