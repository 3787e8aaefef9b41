//! Goal: `verify` (and the read-only open, through the same `last_not_yet_written`) passes over
//! only what a running writer may legitimately be doing to the last segment, and reports
//! everything else (issue #23, docs/mutation-survivors.md, "wal_recovery", line 114):
//!
//! - a last segment that is listed but gone by the time it is opened (a writer removed an
//!   unfinished segment in between) is passed over: the log is clean;
//! - a last segment that cannot be opened for any other reason is an I/O error naming it, not
//!   a segment silently left out of the check.
//!
//! Method: a storage wrapper over the simulated disk that lists one more segment than exists,
//! or refuses to open one, under `verify_with_storage`. The code change each test catches is
//! listed in docs/durability.md ("Mutation testing").

mod common;

use std::io;
use std::path::{Path, PathBuf};

use common::{open_sim, payload, sim_dir, sim_segments, small_opts};
use tasklog::Error;
use tasklog::wal::sim::SimStorage;
use tasklog::wal::storage::{StorageFile, StorageLock};
use tasklog::wal::verify::verify_with_storage;
use tasklog::wal::{OpenMode, Storage};

/// The simulated disk, listing `phantom` as one more file of its directory and refusing to
/// open `refused`.
#[derive(Debug)]
struct Listing {
    inner: SimStorage,
    phantom: Option<PathBuf>,
    refused: Option<PathBuf>,
}

impl Storage for Listing {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        if self.refused.as_deref() == Some(path) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "simulated EACCES",
            ));
        }
        self.inner.open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut v = self.inner.list_dir(path)?;
        v.extend(self.phantom.clone());
        Ok(v)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        self.inner.try_lock(path)
    }
    fn lock_holder(&self, path: &Path) -> Option<Vec<u8>> {
        self.inner.lock_holder(path)
    }
}

/// A closed log of 200 records over several 4 KiB segments.
fn closed_log() -> (SimStorage, Vec<PathBuf>) {
    let sim = SimStorage::new(11);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=200 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let segs = sim_segments(&sim, &sim_dir());
    assert!(segs.len() >= 3, "{segs:?}");
    (sim, segs)
}

/// A last segment listed but gone when opened (removed by a writer in between) is passed
/// over: the log verifies clean, with the segments that are there.
///
/// Kills (`src/wal/recovery.rs`, `last_not_yet_written`): the guard `e.kind() == NotFound` →
/// `false` and `==` → `!=` (a vanished unfinished segment taken for an I/O error: `verify` and
/// read-only opens fail while a writer rolls).
#[test]
fn a_last_segment_gone_when_opened_is_passed_over() {
    let (sim, segs) = closed_log();
    let listing = Listing {
        inner: sim,
        phantom: Some(sim_dir().join(format!("{:020}.seg", 1_000_000))),
        refused: None,
    };
    let report = verify_with_storage(&listing, &sim_dir()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.segments, segs.len());
    assert_eq!(report.records, 200);
}

/// A last segment that cannot be opened for another reason (here permission denied) is an
/// I/O error naming it; it is never left out of the check as if it were unfinished.
///
/// Kills (`last_not_yet_written`): the guard `e.kind() == NotFound` → `true` and `==` → `!=`
/// (any open error taken for "a writer is creating it": the log's last records silently not
/// verified).
#[test]
fn a_last_segment_that_cannot_be_opened_is_an_error() {
    let (sim, segs) = closed_log();
    let last = segs.last().unwrap().clone();
    let listing = Listing {
        inner: sim,
        phantom: None,
        refused: Some(last.clone()),
    };
    match verify_with_storage(&listing, &sim_dir()) {
        Err(Error::Io { path, .. }) => assert_eq!(path, last),
        other => panic!(
            "expected an I/O error naming {}, got {other:?}",
            last.display()
        ),
    }
}

/// `verify` says where the log starts and ends: an empty directory is an empty log at LSN 1
/// (no segment, no record); a log whose first segments were compacted away starts at its first
/// remaining segment's first LSN, and counts only the segments and records still there.
///
/// Kills (`src/wal/verify.rs`, `inspect`): the report's `segments`, `first_lsn` and `next_lsn`
/// fields left out of its initial value (an empty log reported as starting at LSN 0), `i == 0`
/// → `!=` (the first LSN taken from a later segment). The bug: `tasklog verify` and the
/// recovery cascade misreporting which LSNs a log holds.
#[test]
fn verify_reports_where_a_log_starts_and_ends() {
    let sim = SimStorage::new(12);
    sim.create_dir_all(&sim_dir()).unwrap();
    let empty = verify_with_storage(&sim, &sim_dir()).unwrap();
    assert!(empty.is_clean(), "{:?}", empty.problems);
    assert_eq!(
        (
            empty.segments,
            empty.records,
            empty.first_lsn,
            empty.next_lsn
        ),
        (0, 0, 1, 1),
        "an empty log"
    );

    let (sim, segs) = closed_log();
    let wal = open_sim(&sim, small_opts()).unwrap();
    let from = tasklog::wal::segment::parse_segment_name(&segs[2]).unwrap();
    wal.truncate_before(from).unwrap();
    wal.close().unwrap();
    let left = sim_segments(&sim, &sim_dir());
    assert_eq!(left.len(), segs.len() - 2, "{left:?}");
    let report = verify_with_storage(&sim, &sim_dir()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.first_lsn, from);
    assert_eq!(report.segments, left.len());
    assert_eq!(report.next_lsn, 201);
    assert_eq!(report.records, 201 - from);
}

/// Where `verify` says a log goes bad is where `repair` cuts it, and the last record it keeps
/// is the one before: a torn tail (a record half written at the end of the last segment) keeps
/// every whole record; a damaged segment header keeps the records of the segments before it.
/// A record damaged in the middle of a sealed segment is one problem, corruption and not a
/// torn tail, and the log is not clean.
///
/// Kills (`src/wal/verify.rs`, `inspect`): the last good LSN of a damaged header's cut
/// (`e - 1` → `+`, `/`) and of a torn tail's (`end.next_lsn - 1` → `+`, `/`): a repair that says
/// it kept a record it cut, or cut one record too few; the salvaged segment's `torn: None` left
/// out (corruption reported a second time as a torn tail); `is_clean` → `true`.
#[test]
fn verify_and_repair_agree_on_the_last_good_record() {
    use tasklog::wal::frame::{self, FLAGS_SINGLE};
    use tasklog::wal::repair::repair_with_storage;

    // A torn tail: record 201 half written.
    let (sim, segs) = closed_log();
    let last = segs.last().unwrap();
    let mut bytes = sim.file_bytes(last).unwrap();
    let torn_at = bytes.len() as u64;
    let mut frame = Vec::new();
    frame::encode_into(&mut frame, 201, FLAGS_SINGLE, &[7; 100]);
    bytes.extend_from_slice(&frame[..50]);
    sim.put_file(last, bytes);
    let report = verify_with_storage(&sim, &sim_dir()).unwrap();
    assert!(report.tail_torn && !report.is_clean(), "{report:?}");
    let cut = repair_with_storage(&sim, &sim_dir(), true)
        .unwrap()
        .cut
        .expect("a cut");
    assert_eq!(
        (&cut.file, cut.offset, cut.last_good_lsn),
        (last, torn_at, 200)
    );

    // A damaged header of the third segment.
    let (sim, segs) = closed_log();
    let first3 = tasklog::wal::segment::parse_segment_name(&segs[2]).unwrap();
    let mut bytes = sim.file_bytes(&segs[2]).unwrap();
    bytes[20] ^= 0x01;
    sim.put_file(&segs[2], bytes);
    let report = verify_with_storage(&sim, &sim_dir()).unwrap();
    assert!(!report.is_clean() && !report.tail_torn, "{report:?}");
    let cut = repair_with_storage(&sim, &sim_dir(), true)
        .unwrap()
        .cut
        .expect("a cut");
    assert_eq!(
        (&cut.file, cut.offset, cut.last_good_lsn),
        (&segs[2], 0, first3 - 1)
    );

    // A damaged record in the middle of a sealed segment, and of the last one: one problem in
    // that segment (the next segment's start is a gap, reported on its own).
    for which in [1, 4] {
        let (sim, segs) = closed_log();
        let seg = &segs[which.min(segs.len() - 1)];
        let mut bytes = sim.file_bytes(seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        sim.put_file(seg, bytes);
        let report = verify_with_storage(&sim, &sim_dir()).unwrap();
        assert!(!report.is_clean(), "a damaged log is not clean");
        let here: Vec<_> = report.problems.iter().filter(|p| &p.file == seg).collect();
        assert_eq!(here.len(), 1, "{:?}", report.problems);
        assert!(!here[0].torn_tail && !report.tail_torn, "{here:?}");
    }
}
