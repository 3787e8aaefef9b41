//! Shared helpers for the `export_*` tests (included with `#[path]`; as its own test target it
//! holds no tests). Builds a store exercising every event kind, all in one session so that its
//! LSNs are contiguous, and normalises export documents for comparison.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};
use tasklog::store::{Change, Mutation};
use tasklog::task::{OutputKind, TaskUpdate};
use tasklog::{NewTask, Store};

/// Opens a store and fills it with tasks in every state, with every kind of event: a lease,
/// progress, checkpoint, output, completion with a result, failure, retry, update, cancel with a
/// reason, and a task removed and created again under the same id (its history continues).
/// No task is left removed, so every LSN belongs to an exported task.
pub fn populated_store(dir: &Path) -> Store {
    let store = Store::open(dir).expect("should open the store");
    let s = &store;
    s.submit(
        NewTask::new("Alpha")
            .id("a")
            .description("first, with \"quotes\"")
            .role("dev")
            .provider("acme")
            .model("m-1")
            .tag("x")
            .meta("cost", json!(1.5))
            .priority(3)
            .request_id("req-a"),
    )
    .expect("submit a");
    s.submit(NewTask::new("Beta").id("b")).expect("submit b");
    s.submit(NewTask::new("Gamma").id("c").tag("g"))
        .expect("submit c");
    let start = Change::Start {
        owner: Some("w1".into()),
        lease_ms: Some(60_000),
    };
    s.apply(Mutation::new("a", start).actor("w1"))
        .expect("start a");
    s.progress("a", 30, Some("fetch"), Some("1/3"))
        .expect("progress a");
    s.checkpoint("a", "step-1", json!({"cursor": 10}))
        .expect("checkpoint a");
    s.output("a", OutputKind::Stdout, "hello, \"world\"\n")
        .expect("output a");
    s.complete("a", Some(json!({"n": 3}))).expect("complete a");
    s.start("b").expect("start b");
    s.fail("b", "boom").expect("fail b");
    s.retry("b").expect("retry b");
    s.start("b").expect("start b again");
    let update = TaskUpdate {
        add_tags: vec!["t1".into()],
        set_metadata: [("m".to_string(), json!("v"))].into_iter().collect(),
        ..TaskUpdate::default()
    };
    s.update("c", update).expect("update c");
    s.cancel("c", Some("not needed")).expect("cancel c");
    s.submit(NewTask::new("Delta").id("d")).expect("submit d");
    s.remove("d", Some("mistake")).expect("remove d");
    s.submit(NewTask::new("Delta again").id("d"))
        .expect("submit d again");
    s.submit(
        NewTask::new("Ünïcode ✓, comma")
            .id("e")
            .description("two\nlines"),
    )
    .expect("submit e");
    store
}

/// Submits `n` tasks `t00000..` with `events` events each (created, started, progress...,
/// completed), in batches.
pub fn bulk_store(store: &Store, n: usize, events: usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("t{i:06}")).collect();
    for chunk in ids.chunks(2_000) {
        let mut m: Vec<Mutation> = chunk
            .iter()
            .map(|id| {
                Mutation::submit(
                    NewTask::new(format!("task {id}"))
                        .id(id.clone())
                        .tag("bulk"),
                )
            })
            .collect();
        store.batch(std::mem::take(&mut m)).expect("submit");
        if events >= 2 {
            let starts = chunk.iter().map(|id| {
                Mutation::new(
                    id.clone(),
                    Change::Start {
                        owner: None,
                        lease_ms: None,
                    },
                )
            });
            store.batch(starts.collect()).expect("start");
        }
        for step in 0..events.saturating_sub(3) {
            let p = chunk.iter().map(|id| {
                let change = Change::Progress {
                    percent: (10 * (step + 1)).min(100) as u8,
                    step: Some(format!("step {step}")),
                    message: None,
                };
                Mutation::new(id.clone(), change)
            });
            store.batch(p.collect()).expect("progress");
        }
        if events >= 3 {
            let done = chunk.iter().map(|id| {
                Mutation::new(
                    id.clone(),
                    Change::Complete {
                        result: Some(json!({"ok": true})),
                    },
                )
            });
            store.batch(done.collect()).expect("complete");
        }
    }
}

/// Exports the whole store (with history) to a string.
pub fn export_string(store: &Store, include_history: bool) -> String {
    let mut out = Vec::new();
    let options = tasklog::export::ExportOptions::new().include_history(include_history);
    tasklog::export::export_json(store, &options, &mut out, |_, _| {}).expect("should export");
    String::from_utf8(out).expect("an export is UTF-8")
}

/// The document as a JSON value with the given keys removed at every depth.
pub fn without_keys(doc: &str, keys: &[&str]) -> Value {
    fn strip(v: &mut Value, keys: &[&str]) {
        match v {
            Value::Object(m) => {
                for k in keys {
                    m.shift_remove(*k);
                }
                m.values_mut().for_each(|v| strip(v, keys));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| strip(v, keys)),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(doc).expect("an export is valid JSON");
    strip(&mut v, keys);
    v
}

/// The document's text with the `exported_at` value blanked (the only field that differs
/// between two exports of equal stores).
pub fn blank_exported_at(doc: &str) -> String {
    let start = doc
        .find("\"exported_at\":\"")
        .expect("should have exported_at")
        + 15;
    let end = start + doc[start..].find('"').expect("should close the string");
    format!("{}{}", &doc[..start], &doc[end..])
}
