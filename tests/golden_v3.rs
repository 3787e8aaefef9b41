//! Backward compatibility of snapshot format v3 (histories in compressed blocks): a store
//! written once by the first build that wrote v3 snapshots must stay readable forever. The
//! fixture `tests/fixtures/store-v3-snapshot` holds two v3 snapshots and the log after the
//! older one: the newer snapshot was written by a store that had itself been opened from the
//! older one, so its histories are events loaded from a snapshot followed by events appended
//! since. It also holds a removed task, an
//! idempotency key, a closed session and a running task with a lease. This test opens copies
//! and compares every task and history with the JSON dump recorded when the fixture was
//! written: from the newest snapshot, from the older one plus the log, and with the newest one
//! damaged (it must be skipped). It also checks the header fields by hand, as an independent
//! reader following `docs/format.md` would (decompressing the blocks with its own LZ4), and
//! that this build re-encodes the fixture's state to the very same bytes (the format is
//! pinned, not just readable).

use std::path::{Path, PathBuf};

use tasklog::store::snapshot;
use tasklog::task::TaskState;
use tasklog::wal::StdStorage;

mod golden_snapshot;
mod golden_support;
use golden_snapshot::{expected, open_copy, snapshots};
use golden_support::dump;

const NAME: &str = "store-v3-snapshot";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(NAME)
}

/// Writes the fixture. Run only for a new format version, into a new directory:
/// `TASKLOG_WRITE_GOLDEN=1 cargo test --test golden_v3 -- --ignored write_golden_v3_fixture`
#[test]
#[ignore = "writes the fixture; run by hand when the format version changes"]
fn write_golden_v3_fixture() {
    if std::env::var("TASKLOG_WRITE_GOLDEN").is_err() {
        return;
    }
    golden_snapshot::write_fixture(&fixture());
}

#[test]
fn golden_v3_snapshot_reads_back_exactly() {
    let (dir, store) = open_copy(&fixture(), |_| {});
    let newest = snapshots(dir.path()).pop().unwrap();
    let report = store.recovery_report();
    assert_eq!(report.snapshot_used.as_deref(), Some(newest.as_path()));
    // The tail task and the close of the second session.
    assert_eq!(report.events_replayed, 2);
    assert_eq!(dump(&store), expected(&fixture()));
    let leased = store.get("leased").unwrap();
    assert_eq!(
        leased.state,
        TaskState::Running,
        "the session closed cleanly"
    );
    assert!(leased.lease.unwrap().claim_lsn > 0, "the claim is kept");
}

#[test]
fn golden_v3_older_snapshot_plus_log_reads_back_exactly() {
    let (_dir, store) = open_copy(&fixture(), |dir| {
        std::fs::remove_file(snapshots(dir).pop().unwrap()).unwrap();
    });
    assert!(store.recovery_report().events_replayed > 1);
    assert_eq!(dump(&store), expected(&fixture()));
}

#[test]
fn golden_v3_damaged_newest_snapshot_falls_back() {
    let (_dir, store) = open_copy(&fixture(), |dir| {
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
    assert_eq!(dump(&store), expected(&fixture()));
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn golden_v3_header_reads_by_hand() {
    for path in snapshots(&fixture()) {
        let b = std::fs::read(&path).unwrap();
        assert_eq!(&b[0..8], b"TASKSNAP");
        assert_eq!(u32_at(&b, 8), 3, "version");
        assert_eq!(u32_at(&b, 12), 0, "flags");
        let lsn = u64_at(&b, 16);
        assert!(path.to_str().unwrap().ends_with(&format!("{lsn:020}.snap")));
        let (records, tasks_len, history_len) = (u64_at(&b, 24), u64_at(&b, 32), u64_at(&b, 40));
        assert!(records >= 6, "{records} records");
        assert_eq!(64 + tasks_len + history_len, b.len() as u64);
        let (tasks, section) = b[64..].split_at(tasks_len as usize);
        assert_eq!(crc32fast::hash(tasks), u32_at(&b, 48));
        assert_eq!(crc32fast::hash(section), u32_at(&b, 52));
        assert_eq!(u32_at(&b, 56), 0, "reserved");
        assert_eq!(crc32fast::hash(&b[..60]), u32_at(&b, 60));
        // The history section: its own header, one block (a few KiB of histories), compressed.
        let raw_len = u64_at(section, 0) as usize;
        assert_eq!(u32_at(section, 8), 64 << 10, "block bytes");
        assert_eq!(u32_at(section, 12), 1, "codec: LZ4 block format");
        assert!(
            raw_len > 0 && raw_len < 64 << 10,
            "{raw_len} bytes of histories"
        );
        let end = u64_at(section, 16) as usize;
        assert_eq!(24 + end, section.len(), "one block, ending the section");
        assert!(end < raw_len, "the block is compressed");
        let mut history = vec![0u8; raw_len];
        let n = lz4_flex::block::decompress_into(&section[24..], &mut history).unwrap();
        assert_eq!(n, raw_len);
        // The first record: the smallest id, its history at offset 0 of the histories.
        let id_len = tasks[0] as usize;
        assert_eq!(&tasks[1..1 + id_len], b"cancelled");
        assert_eq!(tasks[1 + id_len], 0, "history_offset");
        // The first history entry: its LSN, no previous state, then the event's version byte.
        assert!(u64_at(&history, 0) >= 1);
        assert_eq!(history[8], 0xFF, "from: none");
        assert_eq!(history[9], 0, "to: pending");
        assert_eq!(history[14], 1, "event version byte");
    }
}

#[test]
fn golden_v3_reencodes_to_the_same_bytes() {
    for path in snapshots(&fixture()) {
        let bytes = std::fs::read(&path).unwrap();
        let state = snapshot::read(&StdStorage, &path).unwrap();
        assert_eq!(state.applied_lsn, u64_at(&bytes, 16));
        let again = snapshot::encode(&state).unwrap();
        assert!(again == bytes, "{} re-encodes differently", path.display());
    }
}

#[test]
fn golden_v3_histories_pass_the_deep_check() {
    let files = snapshots(&fixture());
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
