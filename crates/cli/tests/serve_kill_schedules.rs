//! Schedules under a real `tasklog serve` killed with SIGKILL, again and again on the same
//! store: each server fires the store's schedules (a tick at start, then every second) and is
//! killed at a seeded-random moment, mid-tick or not. Afterwards, every fire time from the
//! first to the schedule's high-water mark has exactly one run, created by one event: no
//! duplicate and nothing lost within the catch-up policy (`all`, up to 1000 firings; the
//! downtimes are far shorter).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tasklog::runtime::schedule::{self, CatchUp, Overlap, Record, ScheduleSpec};
use tasklog::task::Timestamp;

const EVERY_MS: i64 = 20;
const KILLS: usize = 6;

fn start_server(dir: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tasklog serve");
    // Serving (so its first tick is under way) once it says where it listens.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on "), "{line:?}");
    child
}

#[test]
fn schedules_fired_by_a_server_survive_repeated_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    {
        let store = tasklog::Store::open(&dir).unwrap();
        let spec = ScheduleSpec {
            name: "k".into(),
            every_ms: Some(EVERY_MS as u64),
            overlap: Overlap::Allow,
            catch_up: CatchUp::All,
            catch_up_max: Some(1000),
            ..ScheduleSpec::default()
        };
        schedule::add(&store, &spec, Timestamp::now()).unwrap();
        store.close().unwrap();
    }
    let seed = std::env::var("TASKLOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (TASKLOG_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..KILLS {
        let mut child = start_server(&dir);
        std::thread::sleep(Duration::from_millis(rng.u64(..1_500)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(..150)));
    }
    let store = tasklog::Store::open(&dir).unwrap();
    let rec = Record::from_task(&store.get("schedule:k").unwrap()).unwrap();
    let runs = schedule::runs(&store, "k", usize::MAX).unwrap();
    let mut at: Vec<i64> = runs
        .iter()
        .map(|t| t.metadata["schedule.fire_at"].as_i64().unwrap())
        .collect();
    at.sort_unstable();
    assert!(!at.is_empty(), "the servers fired");
    let expected: Vec<i64> = (1..)
        .map(|k| rec.anchor_ms + k * EVERY_MS)
        .take_while(|t| *t <= rec.state.fired_through)
        .collect();
    assert_eq!(
        at, expected,
        "each fire time once, from the first to the high-water mark"
    );
    assert_eq!(rec.state.runs as usize, runs.len());
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
