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
use tasklog::wal::StdStorage;

mod golden_snapshot;
mod golden_support;
use golden_snapshot::{snapshots, u32_at, u64_at};

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
    golden_snapshot::newest_snapshot_reads_back_exactly(&fixture());
}

#[test]
fn golden_v3_older_snapshot_plus_log_reads_back_exactly() {
    golden_snapshot::older_snapshot_plus_log_reads_back_exactly(&fixture());
}

#[test]
fn golden_v3_damaged_newest_snapshot_falls_back() {
    golden_snapshot::damaged_newest_snapshot_falls_back(&fixture());
}

#[test]
fn golden_v3_header_reads_by_hand() {
    for path in snapshots(&fixture()) {
        let b = std::fs::read(&path).unwrap();
        let (tasks, section) = golden_snapshot::header_by_hand(&path, &b, 3);
        let (tasks, section) = (&tasks[..], &section[..]);
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
    golden_snapshot::histories_pass_the_deep_check(&fixture());
}
