//! Goal: each durability promise of the store that a deliberately broken build used to pass
//! (issue #23, mutation testing) has a test here that fails when the promise is broken: reads
//! (`get`, `history`, `list`, `stats`) and live subscriptions never show a change before it is
//! durable, and a store refuses to open when its newest snapshot does not fit its log.
//!
//! Method: stores on the simulated disk (`SimStorage`). A change is applied and its fdatasync
//! held at the barrier (`hold_syncs`); a read started then must still be waiting a while later,
//! and once the fsync is made to fail, must not have reported the change. The snapshot check
//! is exercised by taking away the log a snapshot needs. The code change each test catches is
//! listed in docs/durability.md ("Mutation testing").

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sim_store;
use tasklog::store::{Query, Store, StoreOptions};
use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;
use tasklog::{NewTask, TaskState};

fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A store with task "t" pending, durable, whose `start` is applied and held in its fsync;
/// the fsync will fail once released. Returns the thread running `start`.
fn start_held(sim: &SimStorage, store: &Store) -> std::thread::JoinHandle<tasklog::Result<()>> {
    store.submit(NewTask::new("k").id("t")).unwrap();
    let lsn = store.last_lsn() + 1;
    sim.hold_syncs();
    sim.fail_nth_sync(1);
    let starter = {
        let store = store.clone();
        std::thread::spawn(move || store.start("t").map(|_| ()))
    };
    wait_until(
        || store.last_lsn() >= lsn && sim.syncs_held() > 0,
        "the start never reached its fsync",
    );
    starter
}

/// docs/design.md, "reads wait too": `get`, `history`, `list` and `stats` of a change that is
/// applied but not durable wait for its fsync; when that fsync fails they do not report it.
#[test]
fn reads_wait_for_the_durability_of_what_they_return() {
    let sim = SimStorage::new(11);
    let store = sim_store(&sim);
    let starter = start_held(&sim, &store);
    type Read = Box<dyn FnOnce(&Store) -> Option<String> + Send>;
    let reads: Vec<(&str, Read)> = vec![
        (
            "get",
            Box::new(|s: &Store| {
                s.get("t")
                    .ok()
                    .filter(|t| t.state == TaskState::Running)
                    .map(|_| "running".to_string())
            }),
        ),
        (
            "history",
            Box::new(|s: &Store| {
                s.history("t")
                    .ok()
                    .filter(|h| h.len() > 1)
                    .map(|h| format!("{} events", h.len()))
            }),
        ),
        (
            "list",
            Box::new(|s: &Store| {
                s.list(Query::default())
                    .ok()
                    .filter(|p| p.tasks.iter().any(|t| t.state == TaskState::Running))
                    .map(|_| "a running task".to_string())
            }),
        ),
        (
            "stats",
            Box::new(|s: &Store| {
                s.stats(None)
                    .ok()
                    .filter(|st| st.by_state.get("running").copied().unwrap_or(0) > 0)
                    .map(|st| format!("{:?}", st.by_state))
            }),
        ),
    ];
    let readers: Vec<_> = reads
        .into_iter()
        .map(|(what, read)| {
            let store = store.clone();
            (what, std::thread::spawn(move || read(&store)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for (what, r) in &readers {
        assert!(
            !r.is_finished(),
            "{what} answered while the change it shows was not durable"
        );
    }
    sim.release_syncs();
    assert!(starter.join().unwrap().is_err(), "the start's fsync failed");
    for (what, r) in readers {
        if let Some(shown) = r.join().unwrap() {
            panic!("{what} showed a change whose fsync failed: {shown}");
        }
    }
}

/// Live subscriptions deliver an event only once it is durable: while its fsync is held the
/// subscriber gets nothing, and when that fsync fails, never the event.
#[test]
fn live_subscriptions_wait_for_durability() {
    let sim = SimStorage::new(12);
    let store = sim_store(&sim);
    let mut live = store.subscribe(store.last_lsn() + 1).unwrap();
    let starter = start_held(&sim, &store);
    // The submit of "t" was durable: delivered.
    let submitted = live.next_timeout(Duration::from_secs(5)).unwrap();
    assert!(submitted.is_some(), "the durable submit was not delivered");
    let (tx, rx) = std::sync::mpsc::channel();
    let subscriber = std::thread::spawn(move || {
        let got = live.next_timeout(Duration::from_secs(5));
        tx.send(()).ok();
        got.map(|c| c.map(|c| c.lsn))
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the subscriber got the start while its fsync was held"
    );
    sim.release_syncs();
    assert!(starter.join().unwrap().is_err(), "the start's fsync failed");
    if let Ok(Some(lsn)) = subscriber.join().unwrap() {
        panic!("the subscriber was given event {lsn}, whose fsync failed");
    }
}

/// A catch-up subscription started while an event is applied but not durable does not deliver
/// it before its fsync.
#[test]
fn catch_up_subscriptions_wait_for_durability() {
    let sim = SimStorage::new(13);
    let store = sim_store(&sim);
    let starter = start_held(&sim, &store);
    let mut sub = store.subscribe(1).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let subscriber = std::thread::spawn(move || {
        let mut lsns = Vec::new();
        while let Ok(Some(c)) = sub.next_timeout(Duration::from_millis(500)) {
            lsns.push(c.lsn);
            tx.send(c.lsn).ok();
        }
        lsns
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "catch-up delivered while the newest event's fsync was held"
    );
    sim.release_syncs();
    assert!(starter.join().unwrap().is_err());
    let lsns = subscriber.join().unwrap();
    let start_lsn = store.last_lsn();
    assert!(
        lsns.iter().all(|l| *l < start_lsn),
        "catch-up delivered {lsns:?}, including the start at {start_lsn} whose fsync failed"
    );
}

/// A store whose log was written by a writer that compacted it.
fn compacted_store(sim: &SimStorage) {
    let store = sim_store(sim);
    let first_segment = Path::new("/db/wal/00000000000000000001.seg");
    // NOTE: a few rounds if need be, until a snapshot has compacted the first segment away.
    for round in 0..10 {
        for i in 0..200 {
            store
                .submit(
                    NewTask::new("k")
                        .id(format!("t{round}-{i}"))
                        .description("x".repeat(200)),
                )
                .unwrap();
        }
        store.snapshot().unwrap();
        if !sim.exists(first_segment) {
            break;
        }
    }
    for i in 0..20 {
        store.submit(NewTask::new("k").id(format!("t{i}"))).unwrap();
    }
    store.close().unwrap();
}

fn files_under(sim: &SimStorage, dir: &str) -> Vec<std::path::PathBuf> {
    sim.list_dir(Path::new(dir)).unwrap_or_default()
}

/// The snapshot must fit the log: with the snapshots gone, a log that no longer starts at LSN 1
/// (compacted) is refused naming the log directory, never opened as a store missing its oldest
/// tasks.
#[test]
fn a_compacted_log_without_its_snapshot_is_refused() {
    let sim = SimStorage::new(14);
    compacted_store(&sim);
    let segs = files_under(&sim, "/db/wal");
    assert!(
        !segs.iter().any(|p| p.ends_with("00000000000000000001.seg")),
        "the snapshot compacted the log: {segs:?}"
    );
    for snap in files_under(&sim, "/db/snapshots") {
        sim.remove_file(&snap).unwrap();
    }
    let err = StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .open("/db")
        .map(|_| ())
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("/db/wal"), "{err}");
}

/// The snapshot must fit the log: a log that ends before the snapshot's LSN (its newest
/// segments lost) is refused, never opened with the snapshot's state and then new events
/// given LSNs the snapshot already holds.
#[test]
fn a_log_ending_before_the_snapshot_is_refused() {
    let sim = SimStorage::new(15);
    compacted_store(&sim);
    for seg in files_under(&sim, "/db/wal") {
        if seg.extension().is_some_and(|e| e == "seg") {
            sim.remove_file(&seg).unwrap();
        }
    }
    let err = StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .open("/db")
        .map(|_| ())
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("/db/wal"), "{err}");
}

/// A subscription still catching up when the store closes ends with `Closed`; it never skips
/// the rest of the catch-up to hand out a later live event. (The catch-up tells its own early
/// stop apart from a real `Closed` of the log by a flag; without it the real one was taken as
/// "caught up", and the live event already in the feed was delivered after a hole of about a
/// thousand events.)
#[test]
fn a_subscription_cut_off_by_close_never_skips_events() {
    let sim = SimStorage::new(14);
    let store = StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        // NOTE: buffered only to make the 1500 submits quick; `close` syncs.
        .durability(tasklog::Durability::Buffered)
        .open("/db")
        .unwrap();
    // More than one catch-up chunk (1024 records) behind.
    for i in 0..1500 {
        store.submit(NewTask::new("k").id(format!("t{i}"))).unwrap();
    }
    let mut sub = store.subscribe(1).unwrap();
    // Committed after the subscription: it waits in the live feed.
    store.submit(NewTask::new("k").id("live")).unwrap();
    let first = sub.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(first.event.task_id, "t0");
    store.close().unwrap();
    let mut last = first.lsn;
    let end = loop {
        match sub.next_timeout(Duration::from_millis(200)) {
            Ok(Some(c)) => {
                assert_eq!(
                    c.lsn,
                    last + 1,
                    "after LSN {last} the subscription delivered LSN {} ({}): a hole",
                    c.lsn,
                    c.event.task_id
                );
                last = c.lsn;
            }
            other => break other,
        }
    };
    assert!(
        matches!(end, Err(tasklog::Error::Closed)),
        "a subscription cut off by close ended with {end:?} instead of Closed"
    );
}

/// A storage that counts the listings of the snapshot directory and, with `churn`, lists one
/// more (ignored) name on every call: to a read-only open, the store then looks changed by a
/// writer between any two looks.
#[derive(Debug)]
struct Churning {
    inner: SimStorage,
    churn: bool,
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl Storage for Churning {
    fn open(
        &self,
        path: &Path,
        mode: tasklog::wal::OpenMode,
    ) -> std::io::Result<Box<dyn tasklog::wal::StorageFile>> {
        self.inner.open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        if !path.ends_with("snapshots") {
            return self.inner.list_dir(path);
        }
        let mut out = self.inner.list_dir(path).unwrap_or_default();
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.churn {
            out.push(path.join(format!("churn-{n}")));
        }
        Ok(out)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Option<Box<dyn tasklog::wal::StorageLock>>> {
        self.inner.try_lock(path)
    }
}

/// A read-only open retries a corruption only while a writer changes the files, and only a
/// bounded number of times: against files that keep changing and a log that stays corrupt it
/// still reports the corruption (instead of reading again forever).
/// A store whose first (sealed) segment has a damaged record: corruption, not a torn tail.
fn corrupt_store(sim: &SimStorage) {
    let store = ro_options(Arc::new(sim.clone())).open("/db").unwrap();
    for i in 0..200 {
        store.submit(NewTask::new("k").id(format!("t{i}"))).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let segments = files_under(sim, "/db/wal");
    let first = segments
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = sim.file_bytes(first).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    sim.put_file(first, bytes);
}

fn ro_options(storage: Arc<dyn Storage>) -> StoreOptions {
    StoreOptions::new()
        .storage(storage)
        .segment_bytes_max(4096)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
}

/// Opens `/db` read-only in a thread (an open that never gives up fails the test instead of
/// hanging it); returns its error and how often it listed the snapshot directory.
fn open_read_only(sim: &SimStorage, churn: bool) -> (tasklog::Error, u64) {
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let storage: Arc<dyn Storage> = Arc::new(Churning {
        inner: sim.clone(),
        churn,
        calls: calls.clone(),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opened = ro_options(storage).read_only(true).open("/db");
        tx.send(opened.map(|_| ())).ok();
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(e)) => (e, calls.load(std::sync::atomic::Ordering::Relaxed)),
        Ok(Ok(())) => panic!("a corrupt log opened"),
        Err(_) => panic!("the read-only open kept retrying a corruption for 20 s"),
    }
}

/// A read-only open retries a corruption only while a writer changes the files, and only a
/// bounded number of times: against files that keep changing and a log that stays corrupt it
/// still reports the corruption (instead of reading again forever); with the files unchanged
/// it reports it at once (one attempt: the snapshot directory, which this store lacks, is
/// listed only before and after it).
#[test]
fn a_read_only_open_gives_up_on_corruption_while_files_keep_changing() {
    let sim = SimStorage::new(15);
    corrupt_store(&sim);
    let (e, _) = open_read_only(&sim, true);
    assert!(e.is_corruption(), "{e}");
    let (e, listings) = open_read_only(&sim, false);
    assert!(e.is_corruption(), "{e}");
    assert_eq!(
        listings, 2,
        "a corruption with unchanged files was read again"
    );
}

/// A store over a caller-supplied log (`open_with_log`) on the simulated disk: the log is a
/// `Wal` in `/log`, outside the store's directory `/db`.
fn over_log(sim: &SimStorage, read_only: bool) -> tasklog::Result<Store> {
    let log = tasklog::wal::Wal::open_with_storage(
        Arc::new(sim.clone()),
        "/log",
        tasklog::wal::WalOptions::default().read_only(read_only),
    )?
    .0;
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .read_only(read_only)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open_with_log("/db", Arc::new(log))
}

/// A writer over a caller-supplied log removes the temporary file an interrupted snapshot
/// left (as over the local log); a read-only open leaves it, as it leaves every file.
#[test]
fn over_a_custom_log_only_a_writer_removes_snapshot_temp_files() {
    let sim = SimStorage::new(16);
    let store = over_log(&sim, false).unwrap();
    store.submit(NewTask::new("k").id("t")).unwrap();
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let tmp = Path::new("/db/snapshots/snap-00000000000000000009.snap.tmp");
    sim.put_file(tmp, b"half a snapshot".to_vec());

    let reader = over_log(&sim, true).unwrap();
    assert!(sim.exists(tmp), "a read-only open removed a file");
    assert_eq!(reader.get("t").unwrap().state, TaskState::Pending);
    drop(reader);

    let store = over_log(&sim, false).unwrap();
    assert!(!sim.exists(tmp), "the writer left the snapshot temp file");
    store.close().unwrap();
}
