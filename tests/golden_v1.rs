//! Backward compatibility: stores written by format v1 (log segments, event payloads v1, and a
//! snapshot v1) must stay readable forever. The fixtures under `tests/fixtures/` were written
//! once by `write_golden_fixtures` (run it only when the format version changes, into a NEW
//! directory); this test opens copies of them and compares every task and every history event
//! with the JSON dump recorded when they were written. It also checks that a torn tail cut from
//! the golden log is recovered and a flipped byte in it is refused.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tasklog::store::{Change, InterruptedPolicy, Mutation, Store, StoreOptions};
use tasklog::task::{NewTask, OutputKind, TaskState, TaskUpdate};

mod golden_support;
use golden_support::{copy_dir, dump};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn populate(store: &Store) {
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
    store
        .apply(Mutation::new(
            "done",
            Change::Start {
                owner: Some("w1".into()),
                lease_ms: Some(60_000),
            },
        ))
        .unwrap();
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
    store.output("done", OutputKind::Stdout, "ok\n").unwrap();
    store
        .complete("done", Some(json!({"ok": true, "n": [1, 2, 3]})))
        .unwrap();

    store.submit(t("retried")).unwrap();
    store.start("retried").unwrap();
    store.fail("retried", "boom").unwrap();
    store.retry("retried").unwrap();
    store.start("retried").unwrap();
    store.requeue("retried", Some("worker left")).unwrap();
    let u = TaskUpdate {
        title: Some("golden retried (renamed)".into()),
        add_tags: vec!["t".into()],
        set_metadata: [("k".to_string(), json!({"nested": null}))]
            .into_iter()
            .collect(),
        ..TaskUpdate::default()
    };
    store.update("retried", u).unwrap();

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

    store.submit(t("interrupted")).unwrap();
    store.start("interrupted").unwrap();
}

/// Writes the fixtures. Run only when introducing a new format version, into new directories:
/// `TASKLOG_WRITE_GOLDEN=1 cargo test --test golden_v1 -- --ignored write_golden_fixtures`
#[test]
#[ignore = "writes fixtures; run by hand when the format version changes"]
fn write_golden_fixtures() {
    if std::env::var("TASKLOG_WRITE_GOLDEN").is_err() {
        return;
    }
    for (name, with_snapshot) in [("store-v1-log", false), ("store-v1-snapshot", true)] {
        let dir = fixtures().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let opts = || {
            StoreOptions::new()
                .preallocate(false)
                .snapshot_every_records(0)
                .snapshot_every_bytes(0)
                .segment_bytes_max(4096)
        };
        let store = opts().open(&dir).unwrap();
        populate(&store);
        if with_snapshot {
            store.snapshot().unwrap();
            store
                .submit(NewTask::new("after the snapshot").id("tail"))
                .unwrap();
        }
        // A crash leaves "interrupted" running: drop the handle without a clean close by
        // leaking it, then let a reopen apply the default policy (an `interrupted` event).
        std::mem::forget(store);
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&dir, copy.path());
        std::fs::remove_file(copy.path().join("wal/LOCK")).ok();
        let store = opts()
            .interrupted_policy(InterruptedPolicy::MarkFailed)
            .open(copy.path())
            .unwrap();
        store.close().unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(copy.path(), &dir);
        let store = opts().read_only(true).open(&dir).unwrap();
        let expected = serde_json::to_string_pretty(&dump(&store)).unwrap();
        std::fs::write(
            fixtures().join(format!("{name}.expected.json")),
            expected + "\n",
        )
        .unwrap();
    }
}

fn open_copy(name: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join(name), dir.path());
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.expected.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn golden_v1_log_reads_back_exactly() {
    let (_d, store) = open_copy("store-v1-log");
    assert_eq!(store.recovery_report().snapshot_used, None);
    assert_eq!(dump(&store), expected("store-v1-log"));
}

#[test]
fn golden_v1_snapshot_reads_back_exactly() {
    let (_d, store) = open_copy("store-v1-snapshot");
    assert!(store.recovery_report().snapshot_used.is_some());
    assert_eq!(dump(&store), expected("store-v1-snapshot"));
}

#[test]
fn golden_v1_covers_every_event_kind() {
    let all = expected("store-v1-log");
    let mut kinds: Vec<String> = all
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| {
            t["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap().to_string())
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let want = [
        "cancelled",
        "checkpoint",
        "completed",
        "created",
        "failed",
        "heartbeat",
        "imported",
        "interrupted",
        "output",
        "progress",
        "removed",
        "requeued",
        "retried",
        "started",
        "updated",
    ];
    assert_eq!(kinds, want);
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn golden_v1_torn_tail_is_cut_and_flipped_byte_is_refused() {
    // Torn: cut the last record of the last segment in half.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("store-v1-log"), dir.path());
    let seg = last_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let store = StoreOptions::new()
        .interrupted_policy(InterruptedPolicy::Leave)
        .open(dir.path())
        .unwrap();
    let report = store.recovery_report();
    assert!(report.torn_bytes_cut > 0, "{report:?}");
    drop(store);

    // Flipped: a byte in the middle of the first segment.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("store-v1-log"), dir.path());
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let first = &segs[0];
    let mut bytes = std::fs::read(first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(first, bytes).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("a flipped byte must be refused");
    assert!(err.is_corruption(), "{err}");
    assert!(
        err.to_string()
            .contains(first.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

/// Encoding borrows the domain's strings (`wire::v1` DTOs over `&str`): it must still write
/// exactly the bytes the fixture's events were written with, for every event kind.
#[test]
fn golden_v1_events_encode_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("store-v1-log"), dir.path());
    let options = tasklog::wal::WalOptions {
        read_only: true,
        ..tasklog::wal::WalOptions::default()
    };
    let (wal, _) = tasklog::wal::Wal::open(dir.path().join("wal"), options).unwrap();
    let mut events = 0;
    wal.replay(1, &mut |lsn, bytes| {
        if let Some((&1, body)) = bytes.split_first() {
            let event = tasklog::task::wire::decode_event(body).unwrap();
            let again = tasklog::task::wire::encode_event(&event).unwrap();
            assert_eq!(again, body, "event at LSN {lsn} re-encodes differently");
            let mut into = Vec::new();
            tasklog::task::wire::encode_event_into(&mut into, &event).unwrap();
            assert_eq!(into, body, "event at LSN {lsn} re-encodes differently");
            events += 1;
        }
        Ok(())
    })
    .unwrap();
    // golden_v1_covers_every_event_kind checks that these span all 15 kinds.
    assert!(events >= 15, "only {events} events in the fixture");
}
