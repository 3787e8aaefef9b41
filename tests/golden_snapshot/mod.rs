//! The store both snapshot fixtures (`store-v2-snapshot`, `store-v3-snapshot`) hold, written
//! the same way by the first build of each format, and what their tests share: two sessions
//! of tasks of every shape, each ending in a snapshot, and one more task in the log.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tasklog::store::{Change, InterruptedPolicy, Mutation, Store, StoreOptions, snapshot};
use tasklog::task::{NewTask, OutputKind, TaskState, TaskUpdate};
use tasklog::wal::StdStorage;

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

/// Opened from the newest snapshot: every task and history as recorded, the tail task and
/// the second session's close replayed, the lease kept.
pub fn newest_snapshot_reads_back_exactly(fixture: &Path) {
    let (dir, store) = open_copy(fixture, |_| {});
    let newest = snapshots(dir.path()).pop().unwrap();
    let report = store.recovery_report();
    assert_eq!(report.snapshot_used.as_deref(), Some(newest.as_path()));
    // The tail task and the close of the second session.
    assert_eq!(report.events_replayed, 2);
    assert_eq!(dump(&store), expected(fixture));
    let leased = store.get("leased").unwrap();
    assert_eq!(
        leased.state,
        TaskState::Running,
        "the session closed cleanly"
    );
    assert!(leased.lease.unwrap().claim_lsn > 0, "the claim is kept");
}

/// Without the newest snapshot: the older one plus the log reads back the same.
pub fn older_snapshot_plus_log_reads_back_exactly(fixture: &Path) {
    let (_dir, store) = open_copy(fixture, |dir| {
        std::fs::remove_file(snapshots(dir).pop().unwrap()).unwrap();
    });
    assert!(store.recovery_report().events_replayed > 1);
    assert_eq!(dump(&store), expected(fixture));
}

/// The newest snapshot's last byte flipped: it is skipped and reported, the older one used,
/// with the same tasks and histories.
pub fn damaged_newest_snapshot_falls_back(fixture: &Path) {
    let (_dir, store) = open_copy(fixture, |dir| {
        let newest = snapshots(dir).pop().unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10; // the end of the history section
        std::fs::write(&newest, bytes).unwrap();
    });
    let report = store.recovery_report();
    assert_eq!(report.snapshots_skipped.len(), 1, "{report:?}");
    assert!(
        report.snapshots_skipped[0]
            .1
            .contains("history section checksum"),
        "{report:?}"
    );
    assert_eq!(dump(&store), expected(fixture));
}

/// Every snapshot of the fixture passes `read_checked` (what `tasklog verify` runs) and holds
/// the removed task's history, the idempotency key and the closed sessions.
pub fn histories_pass_the_deep_check(fixture: &Path) {
    let files = snapshots(fixture);
    for path in &files {
        let state = snapshot::read_checked(&StdStorage, path).unwrap();
        assert!(state.history("removed-1").is_some());
        assert!(state.task("removed-1").is_none());
        assert_eq!(state.request_ids.len(), 1);
        // The first session was still open at the first snapshot; at the second it had closed
        // with "leased" running under it.
        let closed = usize::from(Some(path) == files.last());
        assert_eq!(state.closed_sessions.len(), closed, "{}", path.display());
    }
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Checks the 64-byte header of a v2 or v3 file by hand, as `docs/format.md` gives it, and
/// returns its tasks section and its history section as stored.
pub fn header_by_hand(path: &Path, b: &[u8], version: u32) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(&b[0..8], b"TASKSNAP");
    assert_eq!(u32_at(b, 8), version, "version");
    assert_eq!(u32_at(b, 12), 0, "flags");
    let lsn = u64_at(b, 16);
    assert!(path.to_str().unwrap().ends_with(&format!("{lsn:020}.snap")));
    let (records, tasks_len, history_len) = (u64_at(b, 24), u64_at(b, 32), u64_at(b, 40));
    assert!(records >= 6, "{records} records");
    assert_eq!(64 + tasks_len + history_len, b.len() as u64);
    let (tasks, history) = b[64..].split_at(tasks_len as usize);
    assert_eq!(crc32fast::hash(tasks), u32_at(b, 48));
    assert_eq!(crc32fast::hash(history), u32_at(b, 52));
    assert_eq!(u32_at(b, 56), 0, "reserved");
    assert_eq!(crc32fast::hash(&b[..60]), u32_at(b, 60));
    (tasks.to_vec(), history.to_vec())
}
