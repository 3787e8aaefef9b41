//! Regression tests for the log-layer findings of the durability review (F1, F2, F6 and the
//! minor findings a-d). Each failed before its fix.

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tasklog::Error;
use tasklog::wal::frame::{self, FLAGS_SINGLE};
use tasklog::wal::segment::{SegmentHeader, segment_path};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, Storage, StorageFile, StorageLock, Wal, verify};

use common::{open_sim, payload, sim_dir, small_opts};

fn compacted_reason(from: u64, first: u64) -> String {
    format!("LSN {from} was compacted away; the log starts at LSN {first}")
}

fn assert_compacted(r: tasklog::Result<impl std::fmt::Debug>, from: u64, first: u64) {
    match r {
        Err(Error::InvalidInput { at, reason }) => {
            assert_eq!(at.as_deref(), Some("from"));
            assert_eq!(reason, compacted_reason(from, first));
        }
        other => panic!("expected the compacted-away error, got {other:?}"),
    }
}

// F1: records submitted (not yet written) that land in a new segment made replay scan the old
// segment as the last one and report "the log ends before LSN N, which was written".
#[test]
fn f1_replay_sees_segment_rolled_by_its_own_drive() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
    let p = vec![7u8; 1000];
    let tickets: Vec<_> = (0..6).map(|_| wal.submit(&[&p]).unwrap()).collect();
    let mut seen = Vec::new();
    let r = wal.replay(1, &mut |lsn, _| {
        seen.push(lsn);
        Ok(())
    });
    assert_eq!(r.unwrap(), 6, "replay of records in a planned segment");
    assert_eq!(seen, (1..=6).collect::<Vec<_>>());
    assert!(wal.stats().segments >= 2);
    for t in tickets {
        t.wait().unwrap();
    }
    assert_eq!(wal.read_from(1, 100).unwrap().len(), 6);
}

// F1 under load, through the log only: readers race writers that roll small segments.
#[test]
fn f1_replay_while_writers_roll_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (w, stop) = (wal.clone(), stop.clone());
            std::thread::spawn(move || {
                let p = vec![1u8; 300];
                while !stop.load(Ordering::Relaxed) {
                    w.append(&p).unwrap();
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let from = wal.next_lsn().saturating_sub(3).max(1);
        let recs = wal.read_from(from, 16).unwrap();
        assert!(recs.windows(2).all(|w| w[1].lsn == w[0].lsn + 1));
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        h.join().unwrap();
    }
    assert!(reads > 0);
}

// F1: a segment unlinked by `truncate_before` while a replay runs is reported as compacted,
// not as an I/O error.
#[test]
fn f1_replay_racing_truncate_reports_compaction_not_io() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
    let p = vec![3u8; 500];
    for _ in 0..40 {
        wal.append(&p).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let truncator = {
        let (w, stop) = (wal.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                w.append(&p).unwrap();
                let next = w.next_lsn();
                w.truncate_before(next.saturating_sub(20)).unwrap();
            }
        })
    };
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let from = wal.first_lsn();
        match wal.replay(from, &mut |_, _| Ok(())) {
            Ok(_) => {}
            Err(Error::InvalidInput { at, reason }) => {
                assert_eq!(at.as_deref(), Some("from"));
                assert!(reason.contains("was compacted away"), "{reason}");
            }
            Err(e) => panic!("replay racing truncate_before: {e:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    truncator.join().unwrap();
}

// F2: replay/read_from from below the first remaining LSN used to start silently later.
#[test]
fn f2_replay_and_read_from_below_first_lsn_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
    let p = vec![7u8; 1000];
    for _ in 0..20 {
        wal.append(&p).unwrap();
    }
    let rep = wal.truncate_before(10).unwrap();
    assert!(rep.segments_removed > 0);
    let first = wal.first_lsn();
    assert!(first > 1 && first <= 10);
    assert_compacted(wal.replay(1, &mut |_, _| Ok(())), 1, first);
    assert_compacted(wal.read_from(first - 1, 5), first - 1, first);
    // From the first remaining LSN on, everything is there.
    let recs = wal.read_from(first, 100).unwrap();
    assert_eq!(recs.first().map(|r| r.lsn), Some(first));
    assert_eq!(recs.last().map(|r| r.lsn), Some(20));
    // LSN 0 (no LSN) asks for whatever the log still holds.
    assert_eq!(wal.replay(0, &mut |_, _| Ok(())).unwrap(), 21 - first);
    assert_eq!(
        wal.read_from(0, 100).unwrap().first().map(|r| r.lsn),
        Some(first)
    );
    let dir2 = tempfile::tempdir().unwrap();
    let (fresh, _) = Wal::open(dir2.path(), small_opts()).unwrap();
    fresh.append(b"x").unwrap();
    assert_eq!(fresh.read_from(0, 10).unwrap().len(), 1);
}

fn write_raw_segment(dir: &Path, name_lsn: u64, bytes: &[u8]) -> PathBuf {
    let path = segment_path(dir, name_lsn);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn header_bytes(first_lsn: u64, prev_first_lsn: u64) -> Vec<u8> {
    SegmentHeader {
        first_lsn,
        prev_first_lsn,
        segment_bytes_max: 4096,
    }
    .encode()
    .to_vec()
}

// F6: a header with first_lsn = u64::MAX (good CRC) made LSN arithmetic overflow.
#[test]
fn f6_absurd_first_lsn_is_corruption_not_overflow() {
    for with_record in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = header_bytes(u64::MAX, 0);
        if with_record {
            frame::encode_into(&mut bytes, u64::MAX, FLAGS_SINGLE, b"boom");
        }
        let path = write_raw_segment(dir.path(), u64::MAX, &bytes);
        for read_only in [false, true] {
            let opts = small_opts().read_only(read_only);
            match Wal::open(dir.path(), opts) {
                Err(Error::Corrupt { file, .. }) => assert_eq!(file, path),
                other => panic!("open (read_only {read_only}): {other:?}"),
            }
        }
        let report = verify(dir.path()).unwrap();
        assert!(!report.problems.is_empty());
    }
}

// (a) a record fsynced before a later round failed is acknowledged, not reported poisoned.
#[test]
fn minor_a_wait_on_synced_record_after_later_failure_is_ok() {
    let sim = SimStorage::new(7);
    let wal = open_sim(&sim, small_opts()).unwrap();
    let t1 = wal.submit(&[b"one"]).unwrap();
    wal.sync().unwrap();
    sim.fail_nth_sync(1);
    assert!(wal.append(b"two").is_err(), "the fsync of record 2 fails");
    assert_eq!(
        t1.wait().unwrap(),
        1,
        "record 1 was fsynced before the failure"
    );
    assert!(wal.wait_durable(1).is_ok());
    assert!(matches!(wal.wait_durable(2), Err(Error::Poisoned { .. })));
}

/// SimStorage whose `remove_file` fails for one path.
#[derive(Debug)]
struct FailRemove {
    sim: SimStorage,
    fail: std::sync::Mutex<Option<PathBuf>>,
}

impl Storage for FailRemove {
    fn open(&self, p: &Path, m: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        self.sim.open(p, m)
    }
    fn create_dir_all(&self, p: &Path) -> io::Result<()> {
        self.sim.create_dir_all(p)
    }
    fn list_dir(&self, p: &Path) -> io::Result<Vec<PathBuf>> {
        self.sim.list_dir(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> io::Result<()> {
        self.sim.rename(a, b)
    }
    fn remove_file(&self, p: &Path) -> io::Result<()> {
        if self.fail.lock().unwrap().as_deref() == Some(p) {
            return Err(io::Error::other("injected remove failure"));
        }
        self.sim.remove_file(p)
    }
    fn sync_dir(&self, p: &Path) -> io::Result<()> {
        self.sim.sync_dir(p)
    }
    fn exists(&self, p: &Path) -> bool {
        self.sim.exists(p)
    }
    fn try_lock(&self, p: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        self.sim.try_lock(p)
    }
}

// (b) a failed remove left the segment on disk but not in the in-memory list.
#[test]
fn minor_b_failed_remove_keeps_segment_listed() {
    let sim = SimStorage::new(3);
    let storage = Arc::new(FailRemove {
        sim: sim.clone(),
        fail: std::sync::Mutex::new(None),
    });
    let (wal, _) = Wal::open_with_storage(storage.clone(), sim_dir(), small_opts()).unwrap();
    for i in 1..=60 {
        wal.append(&payload(i)).unwrap();
        wal.append(&[9u8; 200]).unwrap();
    }
    let segs = common::sim_segments(&sim, &sim_dir());
    assert!(segs.len() >= 4, "{segs:?}");
    let second = tasklog::wal::segment::parse_segment_name(&segs[1]).unwrap();
    *storage.fail.lock().unwrap() = Some(segs[1].clone());
    let next = wal.next_lsn();
    assert!(wal.truncate_before(next).is_err());
    // The first segment went; the second is still on disk, so still the log's start.
    assert_eq!(wal.first_lsn(), second);
    assert_eq!(
        wal.stats().segments,
        common::sim_segments(&sim, &sim_dir()).len()
    );
    assert_eq!(
        wal.read_from(second, 1000).unwrap().len() as u64,
        next - second
    );
    *storage.fail.lock().unwrap() = None;
    wal.close().unwrap();
    let (wal, _) = Wal::open_with_storage(storage, sim_dir(), small_opts()).unwrap();
    assert_eq!(wal.first_lsn(), second);
}

// (c) a read-only open (and verify) met a segment a writer is still creating.
#[test]
fn minor_c_read_only_open_ignores_unwritten_last_segment() {
    for partial in [
        Vec::new(),
        vec![0u8; 20],
        vec![0u8; 4096],
        header_bytes(4, 1)[..30].to_vec(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        for i in 1..=3 {
            wal.append(&payload(i)).unwrap();
        }
        wal.close().unwrap();
        write_raw_segment(dir.path(), 4, &partial);
        let (ro, _) = Wal::open(dir.path(), small_opts().read_only(true))
            .unwrap_or_else(|e| panic!("read-only open with {} bytes: {e:?}", partial.len()));
        assert_eq!(ro.read_from(1, 10).unwrap().len(), 3);
        let report = verify(dir.path()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.next_lsn, 4);
    }
}

// (d) a torn record whose payload holds a copy of an older frame is a torn tail, not corruption.
#[test]
fn minor_d_frame_copy_inside_torn_payload_is_still_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
    wal.append(b"first").unwrap();
    wal.close().unwrap();
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let good_len = bytes.len() as u64;
    let mut inner = Vec::new();
    frame::encode_into(&mut inner, 1, FLAGS_SINGLE, b"first");
    let mut body = vec![0xAB_u8; 16];
    body.extend_from_slice(&inner);
    body.extend_from_slice(&[0xCD; 200]);
    let mut outer = Vec::new();
    frame::encode_into(&mut outer, 2, FLAGS_SINGLE, &body);
    // Torn: the write stopped just after the copied frame.
    let cut = outer.len() - 150;
    bytes.extend_from_slice(&outer[..cut]);
    std::fs::write(&path, &bytes).unwrap();
    let (wal, report) = Wal::open(dir.path(), small_opts()).expect("torn tail, not corruption");
    assert_eq!(report.torn_at, Some((path, good_len)));
    assert_eq!(wal.read_from(1, 10).unwrap().len(), 1);
}
