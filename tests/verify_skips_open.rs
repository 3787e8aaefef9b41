//! `verify` skips its closing read-only open when that open would repeat what it checked
//! (issue #20: verify within 2x of an open's time): the newest snapshot read and checked, and
//! the replay reaching that snapshot's LSN with the task states it holds. The open was what
//! caught a store that does not open; these tests hold that nothing it caught is missed now.
//!
//! Method: real store directories (verify reads the file system), damaged on purpose.
//! - A newest snapshot that reads and checks but disagrees with the log (another store's
//!   snapshot at the same LSN): the store does not open, and verify says so.
//! - A sweep: one bit flipped at a time through every file of a store with two snapshots and a
//!   log compacted below the older one, at a stride over each file. Whenever a read-only open
//!   fails, verify must report damage; and a clean store is verified without the open.

use std::path::{Path, PathBuf};

use tasklog::store::verify::{VerifyReport, verify};
use tasklog::store::{Store, StoreOptions};
use tasklog::task::NewTask;

fn options() -> StoreOptions {
    StoreOptions::new()
        .segment_bytes_max(4096)
        .preallocate(false)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(2)
}

fn churn(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let id = format!("t{i:03}");
        store
            .submit(NewTask::new(format!("task {i}")).id(&id))
            .unwrap();
        store.start(&id).unwrap();
        if i % 3 == 0 {
            store.fail(&id, "no luck").unwrap();
        } else {
            store.complete(&id, Some(serde_json::json!(i))).unwrap();
        }
    }
}

/// Runs verify, recording its phases.
fn verify_with_phases(dir: &Path) -> (VerifyReport, Vec<String>) {
    let mut phases = Vec::new();
    let report = verify(dir, &mut |p| phases.push(p.to_string())).unwrap();
    (report, phases)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["wal", "snapshots"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "seg" || e == "snap") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for sub in ["wal", "snapshots"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, to.join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// A store whose newest snapshot is another store's at the same LSN: it reads and checks as a
/// file, but it holds a task cancelled that the log has running, and the log goes on to
/// complete it. The store does not open (the replay from that snapshot breaks the state
/// machine); verify must not skip the open here, and reports it.
#[test]
fn a_newest_snapshot_that_disagrees_with_the_log_is_not_taken_as_checked() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let store = options().open(a.path()).unwrap();
    store.submit(NewTask::new("job").id("t")).unwrap();
    store.start("t").unwrap();
    let snap_a = store.snapshot().unwrap();
    store.complete("t", None).unwrap();
    store.close().unwrap();
    drop(store);
    let other = options().open(b.path()).unwrap();
    other.submit(NewTask::new("job").id("t")).unwrap();
    other.cancel("t", Some("elsewhere")).unwrap();
    let snap_b = other.snapshot().unwrap();
    other.close().unwrap();
    drop(other);
    assert_eq!(
        snap_a.lsn, snap_b.lsn,
        "the two snapshots cover the same LSN"
    );

    // Before the swap: healthy, verified without the open.
    let (report, phases) = verify_with_phases(a.path());
    assert!(report.ok, "{:?}", report.problems);
    assert!(!phases.iter().any(|p| p == "opening"), "{phases:?}");

    std::fs::copy(&snap_b.path, &snap_a.path).unwrap();
    let opened = StoreOptions::new().read_only(true).open(a.path());
    assert!(
        opened.is_err(),
        "the swapped snapshot makes the store refuse to open"
    );
    let (report, phases) = verify_with_phases(a.path());
    assert!(phases.iter().any(|p| p == "opening"), "{phases:?}");
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.check == "open" && p.reason.contains("breaks the state machine")),
        "{:?}",
        report.problems
    );
}

/// The same with the log compacted below the older of two snapshots: the replay starts from
/// the older one (taken as it was checked) and must still compare its states with the newest
/// one's where it stands.
#[test]
fn a_disagreeing_newest_snapshot_is_caught_when_the_replay_starts_from_an_older_one() {
    let build = |dir: &Path, last: &dyn Fn(&Store)| {
        let store = options().open(dir).unwrap();
        churn(&store, 0, 40);
        store.snapshot().unwrap();
        churn(&store, 40, 80);
        store.submit(NewTask::new("job").id("t")).unwrap();
        last(&store);
        let snap = store.snapshot().unwrap();
        store.close().unwrap();
        snap
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let snap_a = build(a.path(), &|s| {
        s.start("t").unwrap();
    });
    let snap_b = build(b.path(), &|s| {
        s.cancel("t", Some("elsewhere")).unwrap();
    });
    assert_eq!(snap_a.lsn, snap_b.lsn);
    let store = options().open(a.path()).unwrap();
    store.complete("t", None).unwrap();
    store.close().unwrap();
    drop(store);
    let (report, phases) = verify_with_phases(a.path());
    assert!(report.ok, "{:?}", report.problems);
    let replay = report.replay.as_ref().unwrap();
    assert!(
        replay.from_snapshot_lsn > 0 && replay.from_snapshot_lsn < snap_a.lsn,
        "the replay starts from the older snapshot: {replay:?}"
    );
    assert!(!phases.iter().any(|p| p == "opening"), "{phases:?}");

    std::fs::copy(&snap_b.path, &snap_a.path).unwrap();
    assert!(StoreOptions::new().read_only(true).open(a.path()).is_err());
    let (report, phases) = verify_with_phases(a.path());
    assert!(phases.iter().any(|p| p == "opening"), "{phases:?}");
    assert!(!report.ok);
    assert!(
        report.problems.iter().any(|p| p.check == "open"),
        "{:?}",
        report.problems
    );
}

/// Every case where the store does not open is a case verify reports as damage, whether or
/// not it ran the open itself; the undamaged store is verified without it.
#[test]
fn wherever_a_bit_flip_stops_the_open_verify_reports_damage() {
    let base = tempfile::tempdir().unwrap();
    let store = options().open(base.path()).unwrap();
    churn(&store, 0, 40);
    store.snapshot().unwrap();
    churn(&store, 40, 80);
    store.snapshot().unwrap();
    churn(&store, 80, 95);
    store.close().unwrap();
    drop(store);
    let all = files(base.path());
    let segs = all
        .iter()
        .filter(|f| f.extension().unwrap() == "seg")
        .count();
    let snaps = all.len() - segs;
    assert!(segs >= 2 && snaps == 2, "{all:?}");
    let (report, phases) = verify_with_phases(base.path());
    assert!(report.ok, "{:?}", report.problems);
    assert!(
        report.replay.as_ref().unwrap().from_snapshot_lsn > 0,
        "the log was compacted below the older snapshot: {:?} {:?}",
        report.log,
        report.snapshots
    );
    assert!(!phases.iter().any(|p| p == "opening"), "{phases:?}");

    let (mut cases, mut refused, mut skipped_open) = (0, 0, 0);
    for (n, file) in all.iter().enumerate() {
        let len = std::fs::metadata(file).unwrap().len() as usize;
        // A stride that is prime to the frames' sizes, offset per file, so that headers,
        // lengths, CRCs and bodies are all hit across the files.
        for offset in (n % 7..len).step_by(41) {
            let case = tempfile::tempdir().unwrap();
            copy_dir(base.path(), case.path());
            let target = case.path().join(file.strip_prefix(base.path()).unwrap());
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[offset] ^= 1 << (offset % 8);
            std::fs::write(&target, bytes).unwrap();
            cases += 1;
            let opens = StoreOptions::new()
                .read_only(true)
                .open(case.path())
                .map(|s| s.close());
            let (report, phases) = verify_with_phases(case.path());
            if !phases.iter().any(|p| p == "opening") {
                skipped_open += 1;
            }
            if !matches!(opens, Ok(Ok(()))) {
                refused += 1;
                assert!(
                    !report.ok,
                    "{} flipped at {offset}: the store does not open ({opens:?}) but verify \
                     says ok (phases {phases:?})",
                    file.display()
                );
            }
        }
    }
    println!(
        "{cases} cases: {refused} refused by the open; verify skipped the open in {skipped_open}"
    );
    assert!(
        cases > 300 && refused > 0,
        "{cases} cases, {refused} refused"
    );
}
