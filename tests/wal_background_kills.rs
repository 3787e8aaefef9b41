//! Goal: the `Interval` mode's sync thread (`src/wal/background.rs`) lives exactly as long as
//! its log (issue #23): `close()` stops it and waits for it, so an application that opens and
//! closes logs (a server opening stores on demand) does not gather threads, and no sync of a
//! closed log's files can start after `close()` returned.
//!
//! Method: the thread is found by its name (`tasklog-wal-sync`, cut to 15 bytes by Linux) in
//! `/proc/self/task` (a thread that outlives `close()` by 10 s fails). This file holds one test, so no other log of the same process runs a
//! sync thread meanwhile. Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{open_sim, small_opts};
use tasklog::wal::Durability;
use tasklog::wal::sim::SimStorage;

/// Sync threads of this process (their names as Linux keeps them: 15 bytes).
fn sync_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "tasklog-wal-syn")
        .count()
}

/// True once `sync_threads() == n`, polling for up to 10 s: a new thread names itself only once
/// it runs, and an ended one leaves `/proc` a moment after it was joined.
fn sync_threads_become(n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sync_threads() != n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// An `Interval` log runs one sync thread; `close()` returns only once it has ended, even with
/// an interval of an hour.
///
/// Kills (`src/wal/background.rs`): `Background::stop` → `()` (the thread never told to stop:
/// it outlives the log by up to an interval), and `delete !` in the thread's wait (the thread
/// then syncs without pause while running and sleeps a whole interval once stopped: `close()`
/// hangs for an hour; the mutation run's timeout catches it). The bug: a thread and a file
/// handle leaked per open, or a close that hangs.
#[test]
fn closing_an_interval_log_ends_its_sync_thread() {
    assert_eq!(sync_threads(), 0, "no log is open yet");
    let sim = SimStorage::new(9);
    let opts = small_opts().durability(Durability::Interval(Duration::from_secs(3600)));
    let wal = open_sim(&sim, opts).unwrap();
    assert!(
        sync_threads_become(1),
        "an Interval log runs one sync thread"
    );
    wal.append(b"one").unwrap();
    wal.close().unwrap();
    assert!(sync_threads_become(0), "the sync thread outlived close()");
    drop(wal);
}
