//! Goal (issue #20): taking a snapshot does not hold the snapshot in memory. A snapshot is
//! encoded straight into its temporary file, so the heap it adds at its peak is the write
//! buffers and per-event bookkeeping, far less than the file; building the image in one
//! buffer (as before) added at least the whole file.
//!
//! Method: a counting global allocator's peak during `Store::snapshot`, above the live heap
//! before it, against the snapshot's length uncompressed (at most two thirds of it, plus one log segment,
//! which a replay of the log copies; what remains is bookkeeping of ~90 bytes a task and 24 a
//! logged event, and fixed write buffers), for a store whose histories are all still
//! in the log (the first snapshot after a bulk load: every event is read back from the log)
//! and again for the next snapshot (histories read from the previous snapshot file).

use std::sync::atomic::Ordering;

use tasklog::store::mutation::{Change, Mutation};
use tasklog::{NewTask, Store, StoreOptions};

mod counting_alloc;
use counting_alloc::{LIVE, PEAK, alone};

const TASKS: usize = 60_000;
const SEGMENT_BYTES: u64 = 4 << 20;

fn write_workload(store: &Store) {
    let ids: Vec<String> = (0..TASKS).map(|i| format!("{i:07}")).collect();
    let text = "x".repeat(100);
    for block in ids.chunks(1000) {
        for step in 0..5u8 {
            let ops = block
                .iter()
                .map(|id| match step {
                    0 => Mutation::submit(NewTask::new(text.as_str()).id(id)),
                    1 => Mutation::new(
                        id,
                        Change::Start {
                            owner: None,
                            lease_ms: None,
                        },
                    ),
                    2 | 3 => Mutation::new(
                        id,
                        Change::Progress {
                            percent: 40 * (step - 1),
                            step: None,
                            message: Some(text.clone()),
                        },
                    ),
                    _ => Mutation::new(id, Change::Complete { result: None }),
                })
                .collect();
            store.write_batch(ops).unwrap();
        }
    }
}

/// The heap a snapshot adds at its peak, and the snapshot's length with its histories
/// uncompressed (format v3 compresses them; what the encoder must not hold is the whole
/// image it builds).
fn snapshot_peak(store: &Store) -> (usize, u64) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let info = store.snapshot().unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    let image = std::fs::read(&info.path).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let tasks_len = u64_at(32);
    let histories_len = u64_at(64 + tasks_len as usize);
    (peak, 64 + tasks_len + histories_len)
}

#[test]
fn a_snapshot_is_not_held_in_memory_while_it_is_written() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    // Small segments: a replay copies the active segment into memory (the log layer's own,
    // bounded cost, `wal::replay`), which would otherwise dwarf what is measured here.
    let store = StoreOptions::new()
        .segment_bytes_max(SEGMENT_BYTES)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(dir.path())
        .unwrap();
    write_workload(&store);
    for what in ["from the log", "from the previous snapshot"] {
        let (peak, bytes) = snapshot_peak(&store);
        println!("snapshot of {bytes} bytes ({what}): peak heap added {peak} bytes");
        assert!(
            (peak as u64) < bytes * 2 / 3 + SEGMENT_BYTES,
            "a snapshot of {bytes} bytes ({what}) added {peak} bytes of heap at its peak"
        );
    }
    store.close().unwrap();
}
