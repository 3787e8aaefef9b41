//! Goal: loading a v1 snapshot (`src/store/snapshot/v1.rs`) reserves room for the ids it holds
//! and no more: memory stays proportional to the file, whatever the mix of live tasks and
//! removed tasks' histories (issue #23, session 15: `tasks.len() + removed.len()` → `*` in
//! `into_state`'s reservation survived every fixture, whose counts are small).
//!
//! Method: a v1 image built byte by byte (docs/format.md, "Snapshot body v1": postcard, the
//! task DTO mirrored field by field below) with 2,000 live tasks and 2,000 removed histories,
//! decoded under a counting global allocator. The mutant reserves 4,000,000 ids (hundreds of
//! MB); the real load needs a few MB.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tasklog::store::snapshot::{self, SNAPSHOT_MAGIC};

mod counting_alloc;
use counting_alloc::{LIVE, PEAK, alone};

/// Live tasks, and as many removed tasks' histories, in the image.
const EACH: usize = 2_000;
/// The most heap the decode may add: far above what 4,000 ids need, far below a reservation of
/// `EACH * EACH` of them.
const PEAK_BYTES_MAX: usize = 64 << 20;

/// `wire::v1::Task` (crate-private, FROZEN), field by field in its order.
#[derive(Serialize)]
struct TaskV1Wire {
    title: String,
    description: String,
    role: Option<String>,
    state: u8,
    progress_percent: u8,
    progress_step: Option<String>,
    progress_message: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    started_at_ms: Option<i64>,
    completed_at_ms: Option<i64>,
    provider: Option<String>,
    model: Option<String>,
    tags: Vec<String>,
    metadata: Vec<(String, String)>,
    result: Option<String>,
    last_error: Option<String>,
    error_count: u32,
    attempt: u32,
    priority: u8,
    checkpoint: Option<()>,
    outputs: Vec<()>,
}

/// `HistoryV1`: id, event count, arena bytes (here empty).
type HistoryV1 = (String, u32, Vec<u8>);

/// `TaskV1`: the task, version, last LSN, lease owner and expiry, session, history.
type TaskV1 = (
    TaskV1Wire,
    u64,
    u64,
    Option<String>,
    Option<i64>,
    u64,
    HistoryV1,
);

fn pending(title: &str) -> TaskV1Wire {
    TaskV1Wire {
        title: title.into(),
        description: String::new(),
        role: None,
        state: 0,
        progress_percent: 0,
        progress_step: None,
        progress_message: None,
        created_at_ms: 1,
        updated_at_ms: 1,
        started_at_ms: None,
        completed_at_ms: None,
        provider: None,
        model: None,
        tags: vec![],
        metadata: vec![],
        result: None,
        last_error: None,
        error_count: 0,
        attempt: 0,
        priority: 0,
        checkpoint: None,
        outputs: vec![],
    }
}

fn v1_image(lsn: u64, tasks: Vec<TaskV1>, removed: Vec<HistoryV1>) -> Vec<u8> {
    let body = postcard::to_allocvec(&(
        lsn,
        tasks,
        removed,
        Vec::<(String, String)>::new(),
        Vec::<u64>::new(),
    ))
    .unwrap();
    let mut image = SNAPSHOT_MAGIC.to_vec();
    image.extend_from_slice(&1u32.to_le_bytes()); // 8: version
    image.extend_from_slice(&0u32.to_le_bytes()); // 12: flags
    image.extend_from_slice(&lsn.to_le_bytes()); // 16: lsn
    image.extend_from_slice(&(body.len() as u64).to_le_bytes()); // 24: body_len
    image.extend_from_slice(&crc32fast::hash(&body).to_le_bytes()); // 32: body_crc
    let header_crc = crc32fast::hash(&image);
    image.extend_from_slice(&header_crc.to_le_bytes()); // 36: header_crc
    image.extend_from_slice(&body);
    image
}

#[test]
fn a_v1_snapshot_of_live_and_removed_tasks_reserves_memory_in_proportion() {
    let _one = alone();
    let tasks = (0..EACH)
        .map(|i| {
            let id = format!("live-{i:05}");
            (pending("k"), 1, 1, None, None, 1, (id, 0, vec![]))
        })
        .collect();
    let removed = (0..EACH)
        .map(|i| (format!("gone-{i:05}"), 0, vec![]))
        .collect();
    let image = v1_image(9, tasks, removed);

    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let state = snapshot::decode(Path::new("/db/snapshots/snap.snap"), &image).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;

    assert_eq!((state.len(), state.removed_len()), (EACH, EACH));
    assert!(
        state.history("live-00000").is_some() && state.history("gone-01999").is_some(),
        "a history is missing"
    );
    println!(
        "a {}-byte v1 image: peak heap added {peak} bytes",
        image.len()
    );
    assert!(
        peak < PEAK_BYTES_MAX,
        "decoding a {}-byte v1 image of {EACH} tasks and {EACH} removed histories added {peak} \
         bytes of heap",
        image.len()
    );
}
