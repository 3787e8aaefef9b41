//! Backward compatibility of snapshot format v2: a store written once by the first build that
//! wrote v2 snapshots must stay readable forever. The fixture `tests/fixtures/store-v2-snapshot`
//! holds two v2 snapshots and the log after the older one: the newer snapshot was written by
//! a store that had itself been opened from the older one, so its histories are events loaded
//! from a snapshot followed by events appended since. It also holds a removed task, an
//! idempotency key, a closed session and a running task with a lease. This test opens copies
//! and compares every task and history with the JSON dump recorded when the fixture was
//! written: from the newest snapshot, from the older one plus the log, and with the newest one
//! damaged (it must be skipped). It also checks the header fields by hand, as an independent
//! reader following `docs/format.md` would, and that this build (which writes v3) re-encodes the
//! fixture's state to the same tasks section and the same histories, byte for byte.

use std::path::{Path, PathBuf};

use tasklog::store::snapshot;
use tasklog::wal::StdStorage;

mod golden_snapshot;
mod golden_support;
mod snapshot_images;
use golden_snapshot::{snapshots, u64_at};

const NAME: &str = "store-v2-snapshot";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(NAME)
}

/// Writes the fixture. Run only for a new format version, into a new directory:
/// `TASKLOG_WRITE_GOLDEN=1 cargo test --test golden_v2 -- --ignored write_golden_v2_fixture`
/// (this build writes v3: the v2 fixture was written by the build before it).
#[test]
#[ignore = "writes the fixture; run by hand when the format version changes"]
fn write_golden_v2_fixture() {
    if std::env::var("TASKLOG_WRITE_GOLDEN").is_err() {
        return;
    }
    golden_snapshot::write_fixture(&fixture());
}

#[test]
fn golden_v2_snapshot_reads_back_exactly() {
    golden_snapshot::newest_snapshot_reads_back_exactly(&fixture());
}

#[test]
fn golden_v2_older_snapshot_plus_log_reads_back_exactly() {
    golden_snapshot::older_snapshot_plus_log_reads_back_exactly(&fixture());
}

#[test]
fn golden_v2_damaged_newest_snapshot_falls_back() {
    golden_snapshot::damaged_newest_snapshot_falls_back(&fixture());
}

#[test]
fn golden_v2_header_reads_by_hand() {
    for path in snapshots(&fixture()) {
        let b = std::fs::read(&path).unwrap();
        let (tasks, history) = golden_snapshot::header_by_hand(&path, &b, 2);
        let (tasks, history) = (&tasks[..], &history[..]);
        // The first record: the smallest id, its history at offset 0 of the history section.
        let id_len = tasks[0] as usize;
        assert_eq!(&tasks[1..1 + id_len], b"cancelled");
        assert_eq!(tasks[1 + id_len], 0, "history_offset");
        // The first history entry: its LSN, no previous state, then the event's version byte.
        assert!(u64_at(history, 0) >= 1);
        assert_eq!(history[8], 0xFF, "from: none");
        assert_eq!(history[9], 0, "to: pending");
        assert_eq!(history[14], 1, "event version byte");
    }
}

/// This build writes v3, which differs from v2 only in its history section: the fixture's
/// state re-encodes to a v3 file whose tasks section is the fixture's, byte for byte, and
/// whose histories, decompressed, are the fixture's history section.
#[test]
fn golden_v2_reencodes_to_the_same_bytes() {
    for path in snapshots(&fixture()) {
        let bytes = std::fs::read(&path).unwrap();
        let state = snapshot::read(&StdStorage, &path).unwrap();
        assert_eq!(state.applied_lsn, u64_at(&bytes, 16));
        let again = snapshot::encode(&state).unwrap();
        assert_eq!(snapshot_images::version(&again), 3);
        assert!(
            snapshot_images::to_v2(&again) == bytes,
            "{} re-encodes differently",
            path.display()
        );
    }
}

#[test]
fn golden_v2_histories_pass_the_deep_check() {
    golden_snapshot::histories_pass_the_deep_check(&fixture());
}
