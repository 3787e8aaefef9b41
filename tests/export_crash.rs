//! A crash in the middle of a large import leaves the store as if the import never started,
//! or wholly done: never part of it.
//!
//! Method: the test binary spawns itself as a child process (the `#[ignore]`d entry
//! `crash_child_imports` runs only when `TASKLOG_EXPORT_CRASH_DIR` is set) which opens a store
//! holding a few tasks and imports a 5,000-task document with histories. A first run goes to
//! completion to measure how long the import takes. Then, for several cycles, the parent
//! SIGKILLs the child at a random moment within that time (more of them near its end, where
//! the batch is written, and one after it), reopens the store and checks that
//! either none or all of the imported tasks are there (with intact histories in the latter
//! case), and that the tasks that were there before are untouched. A second loop imports
//! 100,000 one-event tasks, staged (`Store::write_staged`) in 25 chunks, so that kills land
//! while the staging segment is written, made live and installed. A third imports 100,000
//! tasks without history through `import_json_staged`, which streams each task into the
//! staging segment as the file is read, so kills land while the document is still being read
//! and the segment written. A fourth imports as `tasklog import` does: 40,000 tasks with
//! histories, validated first (keeping a validated copy), then decoded from that copy into the
//! staging segment.

#[path = "export_support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tasklog::export::{
    ImportOptions, SpooledDocument, import_json, import_json_spooled, import_json_staged,
    validate_import_spooled,
};
use tasklog::{NewTask, Store};

const DIR_VAR: &str = "TASKLOG_EXPORT_CRASH_DIR";
const DOC_VAR: &str = "TASKLOG_EXPORT_CRASH_DOC";
const TASKS_VAR: &str = "TASKLOG_EXPORT_CRASH_TASKS";
/// Set (to anything) when the child imports with `import_json_staged` from the file.
const STREAMED_VAR: &str = "TASKLOG_EXPORT_CRASH_STREAMED";
/// Set (to anything) when the child imports as `tasklog import` does: the document spooled and
/// validated (keeping a validated copy) before the import decodes that copy.
const SPOOLED_VAR: &str = "TASKLOG_EXPORT_CRASH_SPOOLED";
const IMPORTED: usize = 5_000;
const EVENTS_PER_TASK: usize = 3;
/// The large case: one event per task, so that most of the child's time is spent staging
/// (validating chunks and writing the staging segment) and installing, not parsing.
const IMPORTED_LARGE: usize = 100_000;

/// What one run imports.
#[derive(Clone, Copy)]
struct Shape {
    tasks: usize,
    events: usize,
    /// The document has no history and the child streams it (`import_json_staged`).
    streamed: bool,
    /// The child imports from a validated copy (`import_json_spooled` after
    /// `validate_import_spooled`).
    spooled: bool,
}
const BEFORE: [&str; 3] = ["keep-1", "keep-2", "keep-3"];

/// The child: opens the store, says so on stdout, imports, says so again.
#[test]
#[ignore = "run by export_crash's parent test as a child process"]
fn crash_child_imports() {
    let (Some(dir), Some(doc)) = (std::env::var_os(DIR_VAR), std::env::var_os(DOC_VAR)) else {
        return;
    };
    let store = Store::open(&dir).expect("child: open");
    let bytes = std::fs::read(&doc).expect("child: read the document");
    let tasks: usize = std::env::var(TASKS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IMPORTED);
    let spooled = std::env::var_os(SPOOLED_VAR).is_some().then(|| {
        let document =
            SpooledDocument::read_from(bytes.as_slice(), "crash.json").expect("child: spool");
        validate_import_spooled(&document, "crash.json").expect("child: validate");
        document
    });
    println!("CHILD-READY");
    let report = if let Some(document) = &spooled {
        import_json_spooled(
            &store,
            document,
            "crash.json",
            &ImportOptions::new(),
            |_, _| {},
        )
    } else if std::env::var_os(STREAMED_VAR).is_some() {
        let file = std::fs::File::open(&doc).expect("child: open the document");
        import_json_staged(&store, file, "crash.json", &ImportOptions::new(), |_, _| {})
    } else {
        import_json(
            &store,
            bytes.as_slice(),
            "crash.json",
            &ImportOptions::new(),
            |_, _| {},
        )
    }
    .expect("child: import");
    assert_eq!(report.imported as usize, tasks);
    println!("CHILD-DONE");
}

/// Builds the document once, from a store filled with `IMPORTED` tasks.
fn make_document(path: &Path, shape: Shape) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open the source store");
    support::bulk_store(&store, shape.tasks, shape.events);
    let doc = support::export_string(&store, !shape.streamed);
    std::fs::write(path, doc).expect("write the document");
}

fn fresh_store(dir: &Path) {
    let store = Store::open(dir).expect("open");
    for id in BEFORE {
        store
            .submit(NewTask::new(format!("before {id}")).id(id))
            .expect("submit");
    }
    store.close().expect("close");
}

/// Runs the child; kills it after `kill_after` (if given). Returns (elapsed since ready, done).
fn run_child(
    dir: &Path,
    doc: &Path,
    shape: Shape,
    kill_after: Option<Duration>,
) -> (Duration, bool) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child_imports",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(DOC_VAR, doc)
        .env(TASKS_VAR, shape.tasks.to_string())
        .envs(shape.streamed.then_some((STREAMED_VAR, "1")))
        .envs(shape.spooled.then_some((SPOOLED_VAR, "1")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("CHILD-READY") => break,
            Some(_) => {}
            None => panic!("the child ended before it was ready"),
        }
    }
    let ready = Instant::now();
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        // SIGKILL: no destructor, no flush, no clean close.
        let _ = child.kill();
    }
    let done = lines.any(|l| l.is_ok_and(|l| l.contains("CHILD-DONE")));
    let status = child.wait().expect("wait for the child");
    if kill_after.is_none() {
        assert!(
            status.success() && done,
            "the uninterrupted child failed: {status}"
        );
    }
    (ready.elapsed(), done)
}

/// Reopens the store and checks all-or-nothing. Returns whether the import is there.
fn check_all_or_nothing(dir: &Path, shape: Shape) -> bool {
    let Shape {
        tasks: imported_all,
        events,
        ..
    } = shape;
    let store = Store::open(dir).expect("reopen after the crash");
    // A staging segment left by a killed import is deleted by this open, never read.
    let wal = tasklog::store::wal_dir(dir);
    for entry in std::fs::read_dir(&wal).expect("list the log") {
        let name = entry.expect("entry").file_name();
        assert!(
            !name.to_string_lossy().ends_with(".staging"),
            "{name:?} left after reopening"
        );
    }
    for id in BEFORE {
        let t = store
            .get(id)
            .expect("the tasks that were there before stay");
        assert_eq!(t.title, format!("before {id}"));
        assert_eq!(store.history(id).expect("history").len(), 1);
    }
    let imported = store.len() - BEFORE.len();
    assert!(
        imported == 0 || imported == imported_all,
        "a partial import survived the crash: {imported} of {imported_all} tasks"
    );
    if imported == imported_all {
        for i in [0, imported_all / 2, imported_all - 1] {
            let id = format!("t{i:06}");
            assert_eq!(store.history(&id).expect("history").len(), events, "{id}");
        }
    }
    imported == imported_all
}

#[test]
fn killing_an_import_midway_leaves_all_or_nothing() {
    let shape = Shape {
        tasks: IMPORTED,
        events: EVENTS_PER_TASK,
        streamed: false,
        spooled: false,
    };
    // Random moments over the whole import, more near its end (where the batch is written),
    // and one after it (the import must then be whole).
    let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
    let mut fractions: Vec<f64> = (0..5).map(|_| 0.05 + 0.95 * rng.f64()).collect();
    fractions.extend((0..2).map(|_| 0.85 + 0.15 * rng.f64()));
    fractions.push(1.3);
    kill_loop(shape, &fractions);
}

/// 100,000 tasks: the import is staged in 25 chunks, so kills land while the staging segment
/// is written, while it is made live, and while it is installed. Fewer cycles: each one
/// imports the whole document.
#[test]
fn killing_a_large_staged_import_leaves_all_or_nothing() {
    let shape = Shape {
        tasks: IMPORTED_LARGE,
        events: 1,
        streamed: false,
        spooled: false,
    };
    // Late moments: the first ~70 % of the run is reading and planning (the 5,000-task loop
    // above covers kills there); staging, the rename and installing come after.
    let mut rng = fastrand::Rng::with_seed(0x5747);
    let fractions = [0.7 + 0.25 * rng.f64(), 0.97, 1.3];
    kill_loop(shape, &fractions);
}

/// 100,000 tasks without history streamed from the file into the staging segment as it is
/// read (`import_json_staged`): the staging segment grows from the start, so kills at any
/// moment land while it is written; one more after the end.
#[test]
fn killing_a_streamed_import_leaves_all_or_nothing() {
    let shape = Shape {
        tasks: IMPORTED_LARGE,
        // Each task arrives as one `imported` event.
        events: 1,
        streamed: true,
        spooled: false,
    };
    let mut rng = fastrand::Rng::with_seed(0x57AE);
    let fractions = [0.1 + 0.4 * rng.f64(), 0.5 + 0.45 * rng.f64(), 1.3];
    kill_loop(shape, &fractions);
}

/// What `tasklog import` runs: the document validated first, keeping a validated copy, then
/// imported from that copy into the staging segment (tasks with histories, so the copy's
/// history events and the import's re-recording both run). Kills land while the copy is read
/// and staged, while the staging segment is made live and installed, and after the end.
#[test]
fn killing_an_import_from_a_validated_copy_leaves_all_or_nothing() {
    let shape = Shape {
        tasks: 40_000,
        events: 2,
        streamed: false,
        spooled: true,
    };
    let mut rng = fastrand::Rng::with_seed(0x5B001);
    let fractions = [
        0.05 + 0.45 * rng.f64(),
        0.5 + 0.45 * rng.f64(),
        0.9 + 0.1 * rng.f64(),
        1.3,
    ];
    kill_loop(shape, &fractions);
}

/// Calibrates how long the import takes, then kills it at each fraction of that time.
fn kill_loop(shape: Shape, fractions: &[f64]) {
    let work = tempfile::tempdir().expect("temp dir");
    let doc = work.path().join("import.json");
    make_document(&doc, shape);

    let dir = work.path().join("calibrate");
    fresh_store(&dir);
    let (full, _) = run_child(&dir, &doc, shape, None);
    assert!(
        check_all_or_nothing(&dir, shape),
        "the uninterrupted import is complete"
    );

    let mut outcomes = Vec::new();
    for (cycle, fraction) in fractions.iter().enumerate() {
        let dir = work.path().join(format!("cycle-{cycle}"));
        fresh_store(&dir);
        let delay = full.mul_f64(*fraction);
        let (_, finished) = run_child(&dir, &doc, shape, Some(delay));
        let present = check_all_or_nothing(&dir, shape);
        if finished {
            assert!(
                present,
                "the child reported success, so the import must be durable"
            );
        }
        outcomes.push((delay, present));
    }
    eprintln!(
        "{} tasks: import takes {full:?}; (kill delay, import present): {outcomes:?}",
        shape.tasks
    );
}
