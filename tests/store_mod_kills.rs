//! Goal: each promise of the store's core (`src/store/mod.rs`: commit, admission, snapshots
//! and their retention, close, accessors, statistics, retention) that a deliberately broken
//! build used to pass (issue #23, cargo-mutants, session 15) has a test here that fails when
//! the promise is broken: snapshots beyond the number kept are removed durably; the log below the oldest kept
//! snapshot leaves up to and including that snapshot's LSN, and the count of removed segments
//! is reported; an event of exactly the record limit is kept; admission judges a task by its
//! own kind; automatic snapshots come at their thresholds; `close` waits for a running
//! background snapshot; read views and the accessors concern their own store; statistics by
//! several keys, the walk over every matching task, retention by age and the health figures
//! are what their documentation says.
//!
//! Method: stores on the simulated disk (`SimStorage`, whose `crash()` keeps only what was made
//! durable), and one whose snapshot files block when opened, holding a background snapshot
//! at a barrier. The mutants each test kills are listed in docs/mutation-survivors.md
//! ("store/mod.rs (session 15, first run)").

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::sim_store;
use serde_json::{Value, json};
use tasklog::runtime::META_KIND;
use tasklog::store::{Change, KindSettings, Mutation};
use tasklog::store::{Store, StoreOptions};
use tasklog::task::limits::TEXT_BYTES_MAX;
use tasklog::wal::RECORD_BYTES_MAX;
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, Storage, StorageFile};
use tasklog::{Error, NewTask, TaskState};

fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A store at `/db` on `sim` keeping `kept` snapshots, with 4 KiB segments and no automatic
/// snapshots.
fn store_keeping(sim: &SimStorage, kept: usize) -> Store {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(4096)
        .preallocate(false)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(kept)
        .open("/db")
        .unwrap()
}

/// `prune_snapshots`: a snapshot beyond the number kept is removed and its removal made
/// durable (the snapshot directory fsynced), so a power cut right after does not bring it
/// back; the kept one survives and the store opens from it.
/// Kills `files.len() > keep` → `==` / `<` (no directory fsync after the removals).
#[test]
fn a_snapshot_beyond_the_number_kept_stays_removed_after_a_power_cut() {
    let sim = SimStorage::new(41);
    let store = store_keeping(&sim, 1);
    store.submit(NewTask::new("k").id("a")).unwrap();
    let first = store.snapshot().unwrap();
    store.submit(NewTask::new("k").id("b")).unwrap();
    let second = store.snapshot().unwrap();
    assert!(
        !sim.exists(&first.path),
        "the older snapshot was not removed"
    );

    // No close: the power is cut right after the snapshot.
    let after = sim.crash();
    drop(store);
    assert!(
        !after.exists(&first.path),
        "the removal of {} was not made durable (no fsync of the snapshot directory)",
        first.path.display()
    );
    assert!(after.exists(&second.path), "the kept snapshot was lost");
    let store = store_keeping(&after, 1);
    assert_eq!(
        store.recovery_report().snapshot_used.as_deref(),
        Some(&*second.path)
    );
    assert_eq!(store.get("a").unwrap().state, TaskState::Pending);
    assert_eq!(store.get("b").unwrap().state, TaskState::Pending);
}

/// `prune_snapshots`: with two snapshots kept, the segments whose records the older one holds
/// leave the log, also the segment that ends exactly at its LSN, and `segments_removed` says
/// how many went (0 while none can). Found by snapshotting after every record: the step whose
/// record opened a new segment has the previous step's snapshot ending exactly where the
/// sealed segment ends.
/// Kills `oldest.lsn + 1` → `-` / `*` (a segment the snapshot wholly holds kept) and
/// `prune_snapshots` → `Ok(0)` / `Ok(1)` (the count reported wrongly).
#[test]
fn the_log_leaves_up_to_and_including_the_oldest_kept_snapshot() {
    let sim = SimStorage::new(42);
    let store = store_keeping(&sim, 2);
    let mut previous_lsn = 0;
    for i in 0..200u32 {
        let segments_before = store.log_stats().segments;
        let task = store
            .submit(
                NewTask::new("k")
                    .id(format!("t{i:03}"))
                    .description("x".repeat(300)),
            )
            .unwrap();
        let opened_segment = store.log_stats().segments > segments_before;
        let info = store.snapshot().unwrap();
        assert_eq!(info.lsn, task.last_lsn);
        if !opened_segment {
            assert_eq!(
                info.segments_removed, 0,
                "step {i}: no segment ends at or below the older snapshot (LSN {previous_lsn})"
            );
            previous_lsn = info.lsn;
            continue;
        }
        // The sealed segment's last record is `previous_lsn`, which the older kept snapshot
        // holds: the whole segment leaves.
        assert_eq!(
            info.segments_removed, 1,
            "step {i}: the segment ending at LSN {previous_lsn}, held by the older snapshot, was kept"
        );
        assert_eq!(store.log_stats().segments, 1, "step {i}");
        assert_eq!(store.log_stats().first_lsn, task.last_lsn);
        store.close().unwrap();
        let store = store_keeping(&sim, 2);
        assert_eq!(store.len(), i as usize + 1);
        return;
    }
    panic!("200 records of 300 bytes never filled a 4 KiB segment");
}

/// `commit`'s record limit, checked before any I/O: an event of exactly `RECORD_BYTES_MAX`
/// bytes is written and reads back after a reopen; one byte more is refused as `TooLarge`
/// naming its length. The event's overhead is measured from the refusal of a larger one
/// (several metadata strings, since one string may hold at most 16 MiB).
/// Kills `r.len() > RECORD_BYTES_MAX` → `>=` / `==` (the largest allowed event refused).
#[test]
fn an_event_of_exactly_the_record_limit_is_kept_and_one_byte_more_refused() {
    let sim = SimStorage::new(44);
    let store = sim_store(&sim);
    let piece = TEXT_BYTES_MAX;
    let task_of = |id: &str, last: usize| {
        let mut t = NewTask::new("big").id(id);
        for i in 0..3 {
            t = t.meta(format!("k{i}"), Value::String("x".repeat(piece)));
        }
        t.meta("k3", Value::String("x".repeat(last)))
    };
    let too_large = |r: tasklog::Result<tasklog::Task>| match r {
        Err(Error::TooLarge { len, .. }) => len,
        other => panic!("expected TooLarge, got {:?}", other.map(|t| t.id)),
    };
    let over = too_large(store.submit(task_of("big", piece))) as usize;
    assert!(over > RECORD_BYTES_MAX && over - RECORD_BYTES_MAX < piece);
    let last = piece - (over - RECORD_BYTES_MAX);
    assert_eq!(
        too_large(store.submit(task_of("big", last + 1))),
        RECORD_BYTES_MAX as u64 + 1
    );
    assert!(store.poisoned().is_none());
    store.submit(task_of("big", last)).unwrap();
    store.close().unwrap();
    drop(store);

    let store = sim_store(&sim);
    let task = store.get("big").unwrap();
    assert_eq!(task.metadata["k3"].as_str().map(str::len), Some(last));
    assert_eq!(task.metadata["k0"].as_str().map(str::len), Some(piece));
}

/// A submit of kind `kind` with id `id`.
fn submit_of(id: &str, kind: &str) -> Mutation {
    Mutation::submit(NewTask::new("t").id(id).meta(META_KIND, json!(kind)))
}

fn start_of(id: &str) -> Mutation {
    Mutation::new(
        id,
        Change::Start {
            owner: None,
            lease_ms: None,
        },
    )
}

fn complete_of(id: &str) -> Mutation {
    Mutation::new(id, Change::Complete { result: None })
}

/// `admit`: a task this batch creates, starts and finishes (so it is no longer active when
/// the batch is admitted) is judged by the metadata of *its own* `created` event: a paused
/// kind refuses the batch whole, even when another task created earlier in the batch is of a
/// kind that may start.
/// Kills the guard `e.task_id == id` → `true` / `false` and `==` → `!=` (the start judged by
/// another task's kind, or by none: admitted).
#[test]
fn a_task_created_started_and_finished_in_one_batch_is_judged_by_its_own_kind() {
    let sim = SimStorage::new(45);
    let store = sim_store(&sim);
    store.pause_kind("paused").unwrap();
    let err = store
        .batch(vec![
            submit_of("free", "open"),
            submit_of("t", "paused"),
            start_of("t"),
            complete_of("t"),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert!(matches!(store.get("t"), Err(Error::NotFound { .. })));
    assert!(matches!(store.get("free"), Err(Error::NotFound { .. })));

    // The same batch for a kind that may start goes through.
    store
        .batch(vec![
            submit_of("free", "open"),
            submit_of("u", "open"),
            start_of("u"),
            complete_of("u"),
        ])
        .unwrap();
    assert_eq!(store.get("u").unwrap().state, TaskState::Completed);
}

/// `admit`, the same for a task created before the batch: a pending task of a paused kind
/// started and completed in one batch is refused, as is one whose kind is at its running
/// limit. Found while triaging the mutants above (a real bug, fixed in session 15): the task is
/// terminal in the batch's view, so `current_active` found no metadata, and no `created` event
/// of the batch names it: the start was admitted without any rule (pause, running limit, rate)
/// being checked. The task's metadata before the batch now judges it.
#[test]
fn an_existing_task_started_and_finished_in_one_batch_is_judged_by_its_kind() {
    let sim = SimStorage::new(46);
    let store = sim_store(&sim);
    store.batch(vec![submit_of("t", "paused")]).unwrap();
    store.pause_kind("paused").unwrap();
    let err = store
        .batch(vec![start_of("t"), complete_of("t")])
        .expect_err("a paused kind's task started and completed in one batch");
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert_eq!(store.get("t").unwrap().state, TaskState::Pending);

    // A running limit of 1, reached: the second task cannot run even for the length of a
    // batch; once the first finishes, it can.
    store
        .set_kind_settings("one", KindSettings::new().max_running(1))
        .unwrap();
    store
        .batch(vec![submit_of("a", "one"), submit_of("b", "one")])
        .unwrap();
    store.batch(vec![start_of("a")]).unwrap();
    let err = store
        .batch(vec![start_of("b"), complete_of("b")])
        .expect_err("a task over its kind's running limit started and completed in one batch");
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert_eq!(store.get("b").unwrap().state, TaskState::Pending);
    store.batch(vec![complete_of("a")]).unwrap();
    store.batch(vec![start_of("b"), complete_of("b")]).unwrap();
    assert_eq!(store.get("b").unwrap().state, TaskState::Completed);
}

/// The snapshot files on `sim` under `/db/snapshots` (temp files left out).
fn snapshot_files(sim: &SimStorage) -> Vec<std::path::PathBuf> {
    sim.list_dir(std::path::Path::new("/db/snapshots"))
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect()
}

fn store_snapshotting_every(sim: &SimStorage, records: u64, bytes: u64) -> Store {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(records)
        .snapshot_every_bytes(bytes)
        .open("/db")
        .unwrap()
}

/// `snapshot_due`, `request_snapshot`, `start_snapshotter`: with `snapshot_every_records(5)`
/// (and no byte threshold) no snapshot is written after 4 records, and the 5th makes the
/// background thread write one.
/// Kills `snapshot_due` → `true` / `false`, each comparison of its record clause (`> 0` →
/// `==` / `<` / `>=`, `>=` → `<`, `&&` → `||`) and of its byte clause with the byte
/// threshold 0 (`> 0` → `>=`, `&&` → `||`), and `request_snapshot`, `start_snapshotter` → `()`.
#[test]
fn a_snapshot_is_written_once_the_record_threshold_is_reached_and_not_before() {
    let sim = SimStorage::new(47);
    let store = store_snapshotting_every(&sim, 5, 0);
    for i in 0..4 {
        store.submit(NewTask::new("k").id(format!("t{i}"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        snapshot_files(&sim),
        Vec::<std::path::PathBuf>::new(),
        "after 4 of 5 records"
    );
    store.submit(NewTask::new("k").id("t4")).unwrap();
    wait_until(
        || snapshot_files(&sim).len() == 1,
        "no snapshot after the 5th record of 5",
    );
    store.close().unwrap();
}

/// The same for the byte threshold: none while the records stay under it (1 GiB), one once a
/// record reaches it (1 byte).
/// Kills the byte clause's comparisons (`> 0` → `==` / `<`, `>=` → `<`) and `||` → `&&`
/// between the two clauses.
#[test]
fn a_snapshot_is_written_once_the_byte_threshold_is_reached_and_not_before() {
    let sim = SimStorage::new(48);
    let store = store_snapshotting_every(&sim, 0, 1 << 30);
    for i in 0..4 {
        store.submit(NewTask::new("k").id(format!("t{i}"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        snapshot_files(&sim),
        Vec::<std::path::PathBuf>::new(),
        "under 1 GiB"
    );
    store.close().unwrap();
    drop(store);

    let store = store_snapshotting_every(&sim, 0, 1);
    store.submit(NewTask::new("k").id("t4")).unwrap();
    wait_until(
        || snapshot_files(&sim).len() == 1,
        "no snapshot after a record over a 1-byte threshold",
    );
    store.close().unwrap();
}

/// `len` and `is_empty` count live tasks: none in a new store, one after a submit, none again
/// once it is removed (its history stays).
/// Kills `is_empty` → `true` / `false` and `==` → `!=`.
#[test]
fn is_empty_follows_the_live_tasks() {
    let sim = SimStorage::new(49);
    let store = sim_store(&sim);
    assert!(store.is_empty());
    store.submit(NewTask::new("k").id("t")).unwrap();
    assert!(!store.is_empty());
    assert_eq!(store.len(), 1);
    store.remove("t", None).unwrap();
    assert!(store.is_empty());
    assert_eq!(store.history("t").unwrap().len(), 2);
}

/// A read view held by this thread refuses writes to *its* store only (a write would wait for
/// it forever); another store written from the same thread meanwhile is not affected.
/// Kills `view_key` → `0` / `1` (every store sharing one key).
#[test]
fn a_read_view_blocks_writes_to_its_own_store_only() {
    let (a_disk, b_disk) = (SimStorage::new(51), SimStorage::new(52));
    let (a, b) = (sim_store(&a_disk), sim_store(&b_disk));
    let view = a.read().unwrap();
    let err = a.submit(NewTask::new("k").id("a1")).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    b.submit(NewTask::new("k").id("b1")).unwrap();
    assert_eq!(view.len(), 0);
    drop(view);
    a.submit(NewTask::new("k").id("a1")).unwrap();
}

/// The accessors report what the store was opened with and what it is: the interrupted-work
/// policy and message, this session's id (the one its `started` events carry), closed, read-only.
/// Kills `interrupted_policy` → `Default`, `interrupted_message` → `""` / `"xyzzy"`,
/// `session` → `0` / `1`, `is_closed` → `false`, `is_read_only` → `true` / `false`.
#[test]
fn the_accessors_report_the_options_the_session_and_the_state_of_the_store() {
    let sim = SimStorage::new(53);
    let store = StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .interrupted_policy(tasklog::store::InterruptedPolicy::Requeue)
        .interrupted_message("power went out")
        .open("/db")
        .unwrap();
    assert_eq!(
        store.interrupted_policy(),
        tasklog::store::InterruptedPolicy::Requeue
    );
    assert_eq!(store.interrupted_message(), "power went out");
    store.submit(NewTask::new("k").id("t")).unwrap();
    let started = store.start("t").unwrap();
    assert_eq!(started.session, store.session());
    assert!(
        store.session() > 1,
        "sessions are random, 0 and 1 are not expected"
    );
    assert!(!store.is_read_only());
    assert!(!store.is_closed());
    store.close().unwrap();
    assert!(store.is_closed());
    drop(store);

    let reader = StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .read_only(true)
        .open("/db")
        .unwrap();
    assert!(reader.is_read_only());
}

/// A disk whose snapshot files (`*.snap`), once armed, block when opened for reading until
/// disarmed: a background snapshot stops right after its rename, holding no store lock.
#[derive(Debug)]
struct GatedSnapshots {
    inner: SimStorage,
    armed: Arc<(Mutex<bool>, Condvar)>,
    entered: Arc<AtomicBool>,
}

impl Storage for GatedSnapshots {
    fn open(
        &self,
        path: &std::path::Path,
        mode: OpenMode,
    ) -> std::io::Result<Box<dyn StorageFile>> {
        if path.extension().is_some_and(|e| e == "snap") && mode == OpenMode::Read {
            let (lock, cond) = &*self.armed;
            let mut armed = lock.lock().unwrap();
            if *armed {
                self.entered.store(true, Ordering::SeqCst);
            }
            while *armed {
                armed = cond.wait(armed).unwrap();
            }
        }
        self.inner.open(path, mode)
    }
    crate::storage_but_open_passes_to!(inner);
}

/// `Inner::close` joins the snapshot thread: `close()` called while a background snapshot is
/// still at work (held right after its rename) returns only once that snapshot finished, so
/// nothing of this store writes, renames or compacts after `close` released the lock.
/// Kills `handle.thread().id() != current` → `==` (the join skipped).
#[test]
fn close_waits_for_a_running_background_snapshot() {
    let sim = SimStorage::new(54);
    let armed = Arc::new((Mutex::new(false), Condvar::new()));
    let entered = Arc::new(AtomicBool::new(false));
    let storage = GatedSnapshots {
        inner: sim.clone(),
        armed: armed.clone(),
        entered: entered.clone(),
    };
    let store = StoreOptions::new()
        .storage(Arc::new(storage))
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(1)
        .open("/db")
        .unwrap();
    *armed.0.lock().unwrap() = true;
    store.submit(NewTask::new("k").id("t")).unwrap();
    wait_until(
        || entered.load(Ordering::SeqCst),
        "the background snapshot never reached its file",
    );
    let closer = {
        let store = store.clone();
        std::thread::spawn(move || store.close())
    };
    std::thread::sleep(Duration::from_millis(300));
    let returned_early = closer.is_finished();
    *armed.0.lock().unwrap() = false;
    armed.1.notify_all();
    closer.join().unwrap().unwrap();
    assert!(
        !returned_early,
        "close() returned while the background snapshot was still running"
    );
    assert_eq!(snapshot_files(&sim).len(), 1);
    drop(store);
    let store = sim_store(&sim);
    assert_eq!(store.get("t").unwrap().state, TaskState::Pending);
}

/// `has_kind_rules` says whether any kind has admission rules: none in a new store, some once
/// a kind is paused, none again once it is resumed (its entry, back to the defaults, leaves).
/// Kills `has_kind_rules` → `true` / `false` and `delete !`.
#[test]
fn has_kind_rules_follows_the_kind_settings() {
    let sim = SimStorage::new(55);
    let store = sim_store(&sim);
    assert!(!store.has_kind_rules());
    store.pause_kind("k").unwrap();
    assert!(store.has_kind_rules());
    store.resume_kind("k").unwrap();
    assert!(!store.has_kind_rules());
    assert!(store.kind_settings().is_empty());
}

/// `stats_by`: 1 to 16 non-empty metadata keys; `by_key` counts by the first, and `by_keys`
/// (asked for several keys) by each in the order asked, left empty for a single key. Exactly
/// 16 keys are accepted, 17 and an empty key refused as `InvalidInput` naming `by`.
/// Kills `keys.len() > STATS_KEYS_MAX` → `>=` / `==` / `<`, `||` → `&&`, and `keys.len() > 1`
/// → `>=` / `==` / `<`.
#[test]
fn statistics_by_several_keys_count_by_each_and_the_key_count_is_checked() {
    let sim = SimStorage::new(56);
    let store = sim_store(&sim);
    for (id, team, zone) in [("a", "red", "x"), ("b", "red", "y"), ("c", "blue", "y")] {
        store
            .submit(
                NewTask::new("k")
                    .id(id)
                    .meta("team", json!(team))
                    .meta("zone", json!(zone)),
            )
            .unwrap();
    }
    let one = store.stats_by(&["team"]).unwrap();
    let by_team = one.by_key.expect("by_key for one key");
    assert_eq!(by_team.key, "team");
    assert_eq!(by_team.counts["red"], 2);
    assert!(one.by_keys.is_empty(), "by_keys is for several keys");

    let two = store.stats_by(&["zone", "team"]).unwrap();
    assert_eq!(two.by_key.expect("by_key").key, "zone");
    let keys: Vec<&str> = two.by_keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["zone", "team"]);
    assert_eq!(two.by_keys[0].counts["y"], 2);
    assert_eq!(two.by_keys[1].counts["blue"], 1);

    let names: Vec<String> = (0..17).map(|i| format!("k{i}")).collect();
    let sixteen: Vec<&str> = names[..16].iter().map(String::as_str).collect();
    assert_eq!(store.stats_by(&sixteen).unwrap().by_keys.len(), 16);
    let seventeen: Vec<&str> = names.iter().map(String::as_str).collect();
    for keys in [&seventeen[..], &["team", ""][..]] {
        match store.stats_by(keys) {
            Err(Error::InvalidInput { at, .. }) => assert_eq!(at.as_deref(), Some("by")),
            other => panic!(
                "{} keys: expected InvalidInput, got {:?}",
                keys.len(),
                other.map(|s| s.by_keys.len())
            ),
        }
    }
}

/// `for_each_task` visits every task its filter matches once, in creation order, across
/// pages (more tasks than `SCAN_PAGE_TASKS`), and no other.
/// Kills `for_each_task` → `Ok(())` and the deletion of the query's `filter` field.
#[test]
fn for_each_task_visits_every_match_once_across_pages() {
    let sim = SimStorage::new(57);
    let store = sim_store(&sim);
    let n = tasklog::store::SCAN_PAGE_TASKS + 10;
    let submits: Vec<Mutation> = (0..n)
        .map(|i| Mutation::submit(NewTask::new("k").id(format!("t{i:05}"))))
        .collect();
    store.write_batch(submits).unwrap();
    store.start("t00003").unwrap();
    let mut seen = Vec::new();
    let pending = tasklog::store::Filter {
        states: vec![TaskState::Pending],
        ..Default::default()
    };
    store
        .for_each_task(&pending, &mut |t| {
            seen.push(t.id);
            Ok(())
        })
        .unwrap();
    let expected: Vec<String> = (0..n)
        .filter(|&i| i != 3)
        .map(|i| format!("t{i:05}"))
        .collect();
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);
}

/// Two tasks "c1", "c2" completed and one "p" pending, on a fresh simulated disk.
fn store_with_finished_tasks(seed: u64) -> Store {
    let store = sim_store(&SimStorage::new(seed));
    for id in ["c1", "c2"] {
        store.submit(NewTask::new("k").id(id)).unwrap();
        store.start(id).unwrap();
        store.complete(id, None).unwrap();
    }
    store.submit(NewTask::new("k").id("p")).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    store
}

/// The reason recorded on the removal event of `id`.
fn removal_reason(store: &Store, id: &str) -> String {
    let history = store.history(id).unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.kind, "removed", "{id}");
    last.details.to_string()
}

/// `cleanup` and `cleanup_by`: a task finished just now is not older than an hour, so nothing
/// goes; with no minimum age every finished task goes (never the pending one), the count says
/// how many, and each removal names the rule's measure of age ("finished" or "last ran").
/// Kills `cleanup`, `cleanup_by`, `remove_expired` → `Ok(0)` / `Ok(1)`, the cutoff's `delete -`
/// in both (a cutoff in the future removes what is younger than the limit), and the deletion of
/// the `CleanupAge::LastRun` arm.
#[test]
fn retention_removes_only_what_is_older_than_the_limit_and_says_by_what() {
    let hour = Duration::from_secs(3600);
    let store = store_with_finished_tasks(58);
    assert_eq!(store.cleanup(hour).unwrap(), 0);
    assert_eq!(store.cleanup(Duration::ZERO).unwrap(), 2);
    assert!(removal_reason(&store, "c1").contains("finished more than 0 s ago"));
    assert_eq!(store.get("p").unwrap().state, TaskState::Pending);

    let store = store_with_finished_tasks(59);
    let by_last_run = |older_than| {
        tasklog::store::CleanupRule::default()
            .states(vec![TaskState::Completed])
            .age(tasklog::store::CleanupAge::LastRun)
            .older_than(older_than)
    };
    assert_eq!(store.cleanup_by(&by_last_run(hour)).unwrap(), 0);
    assert_eq!(store.cleanup_by(&by_last_run(Duration::ZERO)).unwrap(), 2);
    let reason = removal_reason(&store, "c2");
    assert!(
        reason.contains("retention: last ran more than 0 s ago"),
        "{reason}"
    );
    assert_eq!(store.get("p").unwrap().state, TaskState::Pending);
}

/// `stats` reports the store's health with its counts: the log's figures (as `log_stats`
/// gives them) and the snapshots on disk (how many, the newest one's LSN).
/// Kills `add_health` → `Ok(())`.
#[test]
fn statistics_report_the_log_and_the_snapshots() {
    let sim = SimStorage::new(60);
    let store = sim_store(&sim);
    for id in ["a", "b", "c"] {
        store.submit(NewTask::new("k").id(id)).unwrap();
    }
    let info = store.snapshot().unwrap();
    store.submit(NewTask::new("k").id("d")).unwrap();
    let health = store.stats(None).unwrap().health;
    let log = store.log_stats();
    assert_eq!(health.snapshots, 1);
    assert_eq!(health.snapshot_lsn, info.lsn);
    assert!(log.bytes > 0 && log.fsyncs > 0);
    assert_eq!(health.log_bytes, log.bytes);
    assert_eq!(health.log_segments, log.segments);
    assert_eq!(health.durable_lsn, store.last_lsn());
    assert_eq!(health.fsyncs, log.fsyncs);
}
