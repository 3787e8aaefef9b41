//! Goal: prove that a scheduling process killed at random moments (SIGKILL, so mid-batch,
//! mid-fsync, anywhere) never creates a second task for one fire time and never loses a
//! firing that its catch-up policy says must run.
//!
//! Method: the test binary re-runs itself as a child (`child_entry`, inert unless
//! `TASKLOG_SCHED_CHILD_DIR` is set). The child opens the store, adds (once) an every-20-ms
//! schedule with `catch_up: all` (up to 1000) and `overlap: allow`, and ticks a `Scheduler`
//! on the real clock every 2 ms. The parent SIGKILLs it after a seeded-random 60 to 400 ms,
//! leaves it down for up to 150 ms (several fire times
//! pass unfired, to be caught up) and restarts it, eight times, then opens the store and checks the runs against the record:
//! every fire time from the first to the record's high-water mark is there exactly once
//! (downtimes are far below 1000 intervals), and each run was created by a single event.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tasklog::runtime::schedule::{self, CatchUp, Overlap, ScheduleSpec, Scheduler, SystemClock};
use tasklog::store::StoreOptions;
use tasklog::task::Timestamp;
use tasklog::{Error, Store};

const CHILD_ENV: &str = "TASKLOG_SCHED_CHILD_DIR";
const EVERY_MS: i64 = 20;
const KILLS: usize = 8;

fn store_dir(dir: &Path) -> PathBuf {
    dir.join("store")
}

#[test]
#[ignore = "the child process of schedules_survive_repeated_sigkill; inert without TASKLOG_SCHED_CHILD_DIR"]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = StoreOptions::default()
        .open(store_dir(Path::new(&dir)))
        .unwrap();
    let spec = ScheduleSpec {
        name: "k".into(),
        every_ms: Some(EVERY_MS as u64),
        catch_up: CatchUp::All,
        catch_up_max: Some(1000),
        overlap: Overlap::Allow,
        ..ScheduleSpec::default()
    };
    match schedule::add(&store, &spec, Timestamp::now()) {
        Ok(_) | Err(Error::AlreadyExists { .. }) => {}
        Err(e) => panic!("add: {e}"),
    }
    let s =
        Scheduler::new(store, Arc::new(SystemClock)).actor(format!("child-{}", std::process::id()));
    loop {
        s.tick().unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_entry", "--nocapture"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn schedules_survive_repeated_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("TASKLOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (TASKLOG_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..KILLS {
        let mut child = spawn_child(dir.path());
        std::thread::sleep(Duration::from_millis(60 + rng.u64(..340)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Down for a while: several fire times pass with no scheduler, to be caught up.
        std::thread::sleep(Duration::from_millis(rng.u64(..150)));
    }
    let store = Store::open(store_dir(dir.path())).unwrap();
    let record = store.get(&schedule::record_id("k")).unwrap();
    let rec = schedule::Record::from_task(&record).unwrap();
    let runs = schedule::runs(&store, "k", usize::MAX).unwrap();
    let mut fire_times: Vec<i64> = runs
        .iter()
        .map(|t| t.metadata["schedule.fire_at"].as_i64().unwrap())
        .collect();
    fire_times.sort_unstable();
    assert!(
        fire_times.len() > 20,
        "the children fired ({} runs)",
        fire_times.len()
    );
    let first = fire_times[0];
    let last = *fire_times.last().unwrap();
    assert_eq!(
        last, rec.state.fired_through,
        "the high-water mark is the last run"
    );
    assert_eq!(
        first,
        rec.anchor_ms + EVERY_MS,
        "the first fire time after creation ran"
    );
    let expected: Vec<i64> = (0..)
        .map(|k| first + k * EVERY_MS)
        .take_while(|t| *t <= last)
        .collect();
    let missing: Vec<i64> = expected
        .iter()
        .filter(|t| fire_times.binary_search(t).is_err())
        .copied()
        .collect();
    assert!(missing.is_empty(), "fire times missing: {missing:?}");
    assert_eq!(fire_times, expected, "no duplicate fire time");
    assert_eq!(
        rec.state.runs as usize,
        runs.len(),
        "the record counted each run once"
    );
    for run in &runs {
        let created = store
            .history(&run.id)
            .unwrap()
            .iter()
            .filter(|e| e.kind == "created")
            .count();
        assert_eq!(created, 1, "{} created once", run.id);
    }
    eprintln!("{} runs over {KILLS} kills", runs.len());
}
