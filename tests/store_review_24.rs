//! Goal: pin the store-level findings of the outside durability review (issue #24), each with
//! a test that failed before its fix: an oversized event is an input error that leaves the
//! store writable; retention never removes a task that changed after it was chosen; a read
//! (including `NotFound` and a refused mutation) never reveals a change that is not durable.
//!
//! Method: stores on the simulated disk (`SimStorage`), whose fsyncs a test can hold back
//! (`hold_syncs`) to look at the store while a commit is between applying and being durable,
//! and fail (`fail_nth_sync`) so that what was revealed is then lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tasklog::store::{Store, StoreOptions};
use tasklog::wal::RECORD_BYTES_MAX;
use tasklog::wal::sim::SimStorage;
use tasklog::{Error, NewTask, TaskState};

/// Rounds of the retention race (each about 60 ms of racing).
const ROUNDS: usize = 15;

fn sim_store(sim: &SimStorage) -> Store {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        // NOTE: small segments: the simulated disk copies a whole file on each fsync.
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap()
}

/// Finding 2: a >64 MiB event is refused before any I/O, as `TooLarge`, and the store stays
/// writable (it used to be poisoned, as if the disk had failed).
#[test]
fn an_oversized_event_is_refused_without_poisoning_the_store() {
    let sim = SimStorage::new(1);
    let store = sim_store(&sim);
    let huge = "x".repeat(RECORD_BYTES_MAX + 1);
    let err = store
        .submit(NewTask::new("big").id("big").description(huge))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(matches!(store.get("big"), Err(Error::NotFound { .. })));
    let t = store.submit(NewTask::new("small").id("small")).unwrap();
    assert_eq!(t.state, TaskState::Pending);
    store.close().unwrap();
    let again = sim_store(&sim);
    assert!(again.get("small").is_ok());
    assert!(matches!(again.get("big"), Err(Error::NotFound { .. })));
}

