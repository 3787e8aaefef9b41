//! The store both snapshot fixtures (`store-v2-snapshot`, `store-v3-snapshot`) hold, written
//! the same way by the first build of each format, and what their tests share: two sessions
//! of tasks of every shape, each ending in a snapshot, and one more task in the log.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tasklog::store::{Change, InterruptedPolicy, Mutation, Store, StoreOptions};
use tasklog::task::{NewTask, OutputKind, TaskState, TaskUpdate};

use crate::golden_support::{copy_dir, dump};

/// The lease of the running task: a century, so that it has not expired when the test opens
/// the fixture (an expired lease is marked interrupted at open, which would change the dump).
pub const LEASE_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// The first session: one task of every shape, ending in a snapshot.
pub fn first_session(store: &Store) {
    let t = |id: &str| NewTask::new(format!("golden {id}")).id(id);
    store
        .submit(
            t("done")
                .description("all fields")
                .role("builder")
                .provider("p")
                .model("m")
                .tag("a")
                .tag("b")
                .meta("cost", json!(12.5))
                .request_id("req-1"),
        )
        .unwrap();
    store.claim("done", "w1", 60_000).unwrap();
    store.heartbeat("done", "w1", 60_000).unwrap();
    store
        .progress("done", 40, Some("fetch"), Some("cloning"))
        .unwrap();
    store
        .checkpoint(
            "done",
            "fetched",
            json!({"commit": "abc123", "files": [1, 2]}),
        )
        .unwrap();
    store
        .apply(Mutation::new(
            "done",
            Change::Output {
                kind: OutputKind::Artifact,
                content: "report".into(),
                path: Some("/tmp/r.pdf".into()),
                size_bytes: Some(1234),
                mime: Some("application/pdf".into()),
            },
        ))
        .unwrap();
    store
        .complete("done", Some(json!({"ok": true, "n": [1, 2, 3]})))
        .unwrap();

    store.submit(t("retried")).unwrap();
    store.start("retried").unwrap();
    store.fail("retried", "boom").unwrap();
    store.retry("retried").unwrap();

    store.submit(t("cancelled")).unwrap();
    store.cancel("cancelled", Some("not needed")).unwrap();

    store.submit(t("removed-1")).unwrap();
    store.remove("removed-1", Some("retention")).unwrap();

    let mut imported = store.get("done").unwrap();
    imported.id = "imported".into();
    imported.state = TaskState::Failed;
    imported.last_error = Some("imported failure".into());
    store
        .apply(Mutation::new(
            "imported",
            Change::Import(Box::new(imported)),
        ))
        .unwrap();

    // Running when the session closes cleanly: its session is kept as closed.
    store.submit(t("leased")).unwrap();
    store.claim("leased", "w2", LEASE_MS).unwrap();
    store.snapshot().unwrap();
}

/// The second session, opened from the first snapshot: events appended to loaded histories,
/// a new task, then the second snapshot and one more task in the log only.
pub fn second_session(store: &Store) {
    store.start("retried").unwrap();
    store.progress("retried", 10, None, Some("again")).unwrap();
    let u = TaskUpdate {
        title: Some("golden retried (renamed)".into()),
        add_tags: vec!["t".into()],
        set_metadata: [("k".to_string(), json!({"nested": null}))]
            .into_iter()
            .collect(),
        ..TaskUpdate::default()
    };
    store.update("retried", u).unwrap();
    store.heartbeat("leased", "w2", LEASE_MS).unwrap();
    store
        .submit(NewTask::new("golden second").id("second"))
        .unwrap();
    store.snapshot().unwrap();
    store
        .submit(NewTask::new("after the snapshot").id("tail"))
        .unwrap();
}

pub fn options() -> StoreOptions {
    StoreOptions::new()
        .preallocate(false)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .segment_bytes_max(4096)
}

/// Writes the fixture `dir` (run by hand, once per format version: see each golden test).
pub fn write_fixture(dir: &Path) {
    assert!(
        !dir.exists(),
        "{} exists: fixtures are written once",
        dir.display()
    );
    let store = options().open(dir).unwrap();
    first_session(&store);
    store.close().unwrap();
    drop(store);
    let store = options().open(dir).unwrap();
    assert!(store.recovery_report().snapshot_used.is_some());
    second_session(&store);
    store.close().unwrap();
    drop(store);
    std::fs::remove_file(dir.join("wal/LOCK")).ok();
    let store = options().read_only(true).open(dir).unwrap();
    let expected = serde_json::to_string_pretty(&dump(&store)).unwrap();
    std::fs::write(dir.with_extension("expected.json"), expected + "\n").unwrap();
}

/// The dump recorded when the fixture `dir` was written.
pub fn expected(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.with_extension("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The snapshot files of `dir`, oldest first.
pub fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}

/// A store opened on a copy of the fixture `fixture`, after `prepare` ran on the copy.
pub fn open_copy(fixture: &Path, prepare: impl FnOnce(&Path)) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(fixture, dir.path());
    prepare(dir.path());
    // The fixture's "leased" task holds a century-long lease; leaving interrupted work alone
    // as well keeps what is read back independent of the date whatever the lease says.
    let store = StoreOptions::new()
        .interrupted_policy(InterruptedPolicy::Leave)
        .open(dir.path())
        .unwrap();
    (dir, store)
}
