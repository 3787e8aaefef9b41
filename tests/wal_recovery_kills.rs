//! Goal: the promises of opening a log (`src/wal/recovery.rs`) that cargo-mutants showed
//! untested (issue #23, docs/mutation-survivors.md, "wal_recovery") each have a test here that
//! fails when the promise is broken:
//!
//! - a snapshot makes damage below it lost redundancy, never more: a damaged header of a
//!   segment it wholly covers, or a missing segment below it, is passed over (and the segments
//!   before it leave the log); the same damage reaching past the snapshot is refused, and
//!   without a snapshot nothing is passed over;
//! - a writer never appends behind covered damage in the last segment: it seals it and goes on
//!   in a new segment, and its size figures count that segment; a read-only open writes nothing;
//! - a read-only open keeps a last segment that holds only its header (the LSN the log resumes
//!   at), creates nothing in an empty directory, and re-reads a last segment it caught in the
//!   middle of a write a bounded number of times;
//! - a torn last segment's file name is trusted up to `LSN_SANE_MAX`, not beyond;
//! - the preallocation made when a writer opens is durable before it returns.
//!
//! Method: logs on the simulated disk (`SimStorage`), damaged by hand, opened through
//! `Wal::open_covered` (feature `testing`) as the store does with its snapshot's LSN. The code
//! change each test catches is listed in docs/durability.md ("Mutation testing").

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{
    all_records, assert_prefix, assert_stats_match_files, open_sim, payload, sim_dir, sim_segments,
    small_opts,
};
use tasklog::Error;
use tasklog::wal::segment::{LSN_SANE_MAX, SegmentHeader, parse_segment_name};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::storage::{FileBytes, StorageFile, StorageLock};
use tasklog::wal::{Lsn, OpenMode, OpenReport, Storage, Wal, WalOptions};

/// A closed log of `n` records over several small segments (4 KiB, not preallocated).
fn rolled_log(n: u64) -> (SimStorage, Vec<PathBuf>) {
    let sim = SimStorage::new(23);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=n {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let segs = sim_segments(&sim, &sim_dir());
    assert!(segs.len() >= 5, "{} segments", segs.len());
    (sim, segs)
}

fn first_lsn(path: &Path) -> Lsn {
    parse_segment_name(path).unwrap()
}

/// Flips a byte of a segment's header (its first LSN field): the header's CRC fails.
fn damage_header(sim: &SimStorage, path: &Path) {
    let mut bytes = sim.file_bytes(path).unwrap();
    bytes[20] ^= 0x01;
    sim.put_file(path, bytes);
}

fn open_covered(
    sim: &SimStorage,
    opts: WalOptions,
    covered: Lsn,
) -> tasklog::Result<(Wal, OpenReport)> {
    Wal::open_covered(Arc::new(sim.clone()), sim_dir(), opts, covered)
}

/// Every record from `from` on, in order.
fn records_from(wal: &Wal, from: Lsn) -> Vec<Lsn> {
    let mut out = Vec::new();
    wal.replay(from, &mut |lsn, p| {
        assert_eq!(p, payload(lsn), "payload of {lsn}");
        out.push(lsn);
        Ok(())
    })
    .unwrap();
    out
}

fn is_corrupt(r: &tasklog::Result<(Wal, OpenReport)>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

// ---- Damage below a snapshot is lost redundancy; damage past it is refused ----

/// A damaged header of a segment the snapshot wholly covers (the next segment starts right
/// after the snapshot) is passed over: the log opens from the next segment on, and reports
/// the damage. Kills in `check_chain`: `covered > 0` → `==` / `<`, `next <= covered + 1` → `>`,
/// the guard `e.is_corruption() && wholly_covered(i)` → `false` (the open refused), and
/// `keep_from = i + 1` → `i - 1` / `i * 1` (the damaged segment, or the one before it, kept
/// in the log).
#[test]
fn a_damaged_header_of_a_segment_the_snapshot_wholly_covers_is_passed_over() {
    let (sim, segs) = rolled_log(300);
    damage_header(&sim, &segs[1]);
    let covered = first_lsn(&segs[2]) - 1;
    assert!(
        is_corrupt(&open_covered(&sim, small_opts(), 0)),
        "no snapshot"
    );
    let (wal, report) = open_covered(&sim, small_opts(), covered).unwrap();
    assert_eq!(report.first_lsn, first_lsn(&segs[2]), "{report:?}");
    assert_eq!(report.segments, segs.len() - 2, "{report:?}");
    assert_eq!(report.next_lsn, 301);
    assert_eq!(report.covered_damage.len(), 1, "{report:?}");
    assert_eq!(report.covered_damage[0].0, segs[1]);
    assert_eq!(
        records_from(&wal, covered + 1),
        (covered + 1..=300).collect::<Vec<_>>()
    );
}

/// A damaged header of a segment holding records past the snapshot is refused: those records
/// are data, not redundancy. Kills `covered > 0 && ..` → `||` (every damaged header passed
/// over once any snapshot exists) and `segs.get(j + 1)` → `j - 1` / `j * 1` (the previous
/// segment's or the damaged segment's own first LSN taken for where its records end).
#[test]
fn a_damaged_header_of_a_segment_holding_records_after_the_snapshot_is_refused() {
    let (sim, segs) = rolled_log(300);
    damage_header(&sim, &segs[1]);
    let covered = first_lsn(&segs[1]) + 2;
    assert!(covered + 1 < first_lsn(&segs[2]));
    let r = open_covered(&sim, small_opts(), covered);
    assert!(is_corrupt(&r), "{:?}", r.map(|(_, rep)| rep));
}

/// Without a snapshot no damaged segment is passed over, not even a stray one named LSN 0 in
/// front of a log starting at 1 (which a test of "the next segment starts at or below
/// `covered + 1`" would take as wholly covered with `covered` = 0). Kills `covered > 0` →
/// `>=` in `wholly_covered`.
#[test]
fn without_a_snapshot_no_damaged_segment_is_passed_over_even_one_named_lsn_0() {
    let (sim, _) = rolled_log(300);
    let stray = sim_dir().join(format!("{:020}.seg", 0));
    assert_eq!(parse_segment_name(&stray), Some(0));
    sim.put_file(&stray, vec![0x5A; 100]);
    let r = open_covered(&sim, small_opts(), 0);
    assert!(is_corrupt(&r), "{:?}", r.map(|(_, rep)| rep));
}

/// A missing segment below the snapshot (a gap in the chain, every record of which the
/// snapshot holds) is passed over: the log opens from the segment after the gap. Above the
/// snapshot the same gap is refused. Kills `i > 0` → `==` / `<` and `wholly_covered(i - 1)` →
/// `i + 1` / `i / 1` in `check_chain`'s gap handling.
#[test]
fn a_missing_segment_below_the_snapshot_is_lost_redundancy() {
    let (sim, segs) = rolled_log(300);
    sim.remove_file(&segs[1]).unwrap();
    let covered = first_lsn(&segs[2]) - 1;
    assert!(
        is_corrupt(&open_covered(&sim, small_opts(), 0)),
        "no snapshot"
    );
    assert!(
        is_corrupt(&open_covered(&sim, small_opts(), covered - 1)),
        "the snapshot misses the gap's last record"
    );
    let (wal, report) = open_covered(&sim, small_opts(), covered).unwrap();
    assert_eq!(report.first_lsn, first_lsn(&segs[2]), "{report:?}");
    assert_eq!(report.segments, segs.len() - 2, "{report:?}");
    assert_eq!(report.covered_damage.len(), 1, "{report:?}");
    assert_eq!(report.covered_damage[0].0, segs[2]);
    assert_eq!(records_from(&wal, covered + 1).len() as u64, 300 - covered);
}

// ---- Covered damage in the last segment: seal it, go on in a new one ----

/// The last segment with a damaged record that the snapshot holds, and the snapshot's LSN.
fn damaged_last_segment() -> (SimStorage, Vec<PathBuf>, Lsn) {
    let (sim, segs) = rolled_log(300);
    let last = segs.last().unwrap();
    let mut bytes = sim.file_bytes(last).unwrap();
    // The first frame's length check: that record no longer decodes.
    bytes[48 + 5] ^= 0x10;
    sim.put_file(last, bytes);
    (sim, segs.clone(), first_lsn(last) + 2)
}

/// A writer never appends behind covered damage: it seals the damaged last segment as it is
/// and goes on in a new one at the next LSN, and its size figures count the new segment. A
/// read-only open of the same log writes nothing. Kills `!options.read_only && skipped` →
/// `options.read_only && ..` in `open_last` (the writer appending behind the damage, the
/// reader creating a segment) and `log_bytes +=` → `-=` / `*=` in `roll_past_damage`.
#[test]
fn a_writer_seals_a_last_segment_with_covered_damage_and_goes_on_in_a_new_one() {
    let (sim, segs, covered) = damaged_last_segment();
    let last = segs.last().unwrap();
    let sealed_bytes = sim.file_bytes(last);
    assert!(
        is_corrupt(&open_covered(&sim, small_opts(), 0)),
        "no snapshot"
    );

    let ro = small_opts().read_only(true);
    let (reader, report) = open_covered(&sim, ro, covered).unwrap();
    assert_eq!(report.next_lsn, 301);
    assert!(report.sealed_after_damage.is_none(), "{report:?}");
    assert_eq!(sim_segments(&sim, &sim_dir()), segs, "a reader made a file");
    drop(reader);

    let (wal, report) = open_covered(&sim, small_opts(), covered).unwrap();
    assert_eq!(
        report.sealed_after_damage.as_ref(),
        Some(last),
        "{report:?}"
    );
    assert_eq!(report.next_lsn, 301);
    assert_eq!(report.segments, segs.len() + 1, "{report:?}");
    assert_stats_match_files(&sim, &wal, "after the roll past damage");
    assert_eq!(wal.append(&payload(301)).unwrap(), 301);
    wal.close().unwrap();
    let now = sim_segments(&sim, &sim_dir());
    assert_eq!(now.len(), segs.len() + 1);
    assert_eq!(first_lsn(now.last().unwrap()), 301);
    assert_eq!(
        sim.file_bytes(last),
        sealed_bytes,
        "the sealed segment is left as it was"
    );
}

// ---- Read-only opens ----

/// A log whose only segment holds just its header (the log resumes at LSN 301, e.g. after
/// `repair::resume_at`) opens read-only at LSN 301: that segment is finished, not one a writer
/// is still creating. Kills `len < SEGMENT_HEADER_LEN` → `<=` in `last_not_yet_written` (the
/// segment dropped and the log reported empty at LSN 1).
#[test]
fn a_read_only_open_keeps_a_last_segment_holding_only_its_header() {
    let sim = SimStorage::new(24);
    let header = SegmentHeader {
        first_lsn: 301,
        prev_first_lsn: 0,
        segment_bytes_max: 4096,
    };
    sim.put_file(
        &sim_dir().join(format!("{:020}.seg", 301)),
        header.encode().to_vec(),
    );
    let (wal, report) = open_covered(&sim, small_opts().read_only(true), 0).unwrap();
    assert_eq!(
        (report.segments, report.first_lsn, report.next_lsn),
        (1, 301, 301),
        "{report:?}"
    );
    assert_eq!(wal.next_lsn(), 301);
}

/// A read-only open of an empty log directory opens an empty log and creates nothing. Kills
/// the match guard `None if read_only` → `false` in `open` (a read-only open creating the
/// first segment).
#[test]
fn a_read_only_open_of_an_empty_directory_creates_nothing() {
    let sim = SimStorage::new(25);
    sim.create_dir_all(&sim_dir()).unwrap();
    let (wal, report) = open_covered(&sim, small_opts().read_only(true), 0).unwrap();
    assert_eq!((report.segments, report.next_lsn), (0, 1), "{report:?}");
    assert_eq!(all_records(&wal).unwrap().len(), 0);
    assert_eq!(sim.list_dir(&sim_dir()).unwrap(), Vec::<PathBuf>::new());
}

/// A storage whose whole-file reads of one file return damaged bytes the first `bad` times:
/// a reader copying a segment while a writer is in the middle of a write to it.
#[derive(Debug, Clone)]
struct TornReads {
    inner: SimStorage,
    target: PathBuf,
    damaged: Vec<u8>,
    bad: Arc<AtomicU32>,
    reads: Arc<AtomicU32>,
}

#[derive(Debug)]
struct TornReadsFile {
    inner: Box<dyn StorageFile>,
    of: Option<TornReads>,
}

impl StorageFile for TornReadsFile {
    fn map_all(&self) -> io::Result<FileBytes> {
        Ok(FileBytes::Owned(self.read_all()?))
    }
    fn read_all(&self) -> io::Result<Vec<u8>> {
        if let Some(t) = &self.of {
            t.reads.fetch_add(1, Ordering::SeqCst);
            let left = t.bad.load(Ordering::SeqCst);
            if left > 0 {
                t.bad.store(left - 1, Ordering::SeqCst);
                return Ok(t.damaged.clone());
            }
        }
        self.inner.read_all()
    }
    storage_file_passes_to!(inner; read_at, write_all_at, sync_data, sync_all, set_len, len, allocate, preallocate, zeros_from, drop_cache, read_prefix);
}

impl Storage for TornReads {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        let of = (path == self.target).then(|| self.clone());
        Ok(Box::new(TornReadsFile { inner, of }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
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

/// A read-only open of a log whose last segment reads damaged (a record in its middle) the
/// first `bad` times: the open's result and how many times the open read the segment.
fn read_only_open_with_torn_reads(bad: u32) -> (tasklog::Result<OpenReport>, u32) {
    let (sim, segs) = rolled_log(300);
    let last = segs.last().unwrap().clone();
    let mut damaged = sim.file_bytes(&last).unwrap();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x40;
    let storage = TornReads {
        inner: sim,
        target: last,
        damaged,
        bad: Arc::new(AtomicU32::new(bad)),
        reads: Arc::new(AtomicU32::new(0)),
    };
    let reads = storage.reads.clone();
    let r = Wal::open_with_storage(Arc::new(storage), sim_dir(), small_opts().read_only(true));
    let reads_at_open = reads.load(Ordering::SeqCst);
    let r = r.map(|(wal, report)| {
        assert_prefix(&all_records(&wal).unwrap(), 300);
        report
    });
    (r, reads_at_open)
}

/// A read-only open that copies the last segment while a writer is in the middle of a write
/// (damage in the copy, not on disk) reads it again, and opens with every record once a copy
/// is whole. Kills the guard `read_only && attempts < 3 && e.is_corruption()` → `false` and
/// `attempts < 3` → `==` / `>` in `scan_last` (the open failing on the first damaged copy).
#[test]
fn a_read_only_open_rereads_a_last_segment_caught_mid_write() {
    let (r, reads) = read_only_open_with_torn_reads(1);
    let report = r.unwrap();
    assert_eq!(report.next_lsn, 301);
    assert_eq!(reads, 2, "one damaged copy, then a whole one");
    let (r, reads) = read_only_open_with_torn_reads(3);
    assert_eq!(r.unwrap().next_lsn, 301);
    assert_eq!(reads, 4, "three damaged copies, then a whole one");
}

/// Damage that every copy shows is damage: a read-only open gives up after four reads of the
/// segment (the first and three more) and reports it. Kills `attempts < 3` → `<=` in
/// `scan_last` (a fifth read).
#[test]
fn a_read_only_open_gives_up_on_damage_after_four_reads() {
    let (r, reads) = read_only_open_with_torn_reads(4);
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
    assert_eq!(reads, 4);
}

// ---- What a writer trusts at open ----

/// A torn last segment (shorter than a header) whose name says `LSN_SANE_MAX` is an unfinished
/// roll: removed, and the log goes on at that LSN. One named above `LSN_SANE_MAX` is refused:
/// the log would restart at an absurd LSN. Kills `lsn == 0 || lsn > LSN_SANE_MAX`: `||` →
/// `&&`, `>` → `==` (the name above the bound accepted) and `>` → `>=` (the bound refused).
#[test]
fn a_torn_last_segment_name_is_trusted_up_to_lsn_sane_max() {
    let sim = SimStorage::new(26);
    let at_bound = sim_dir().join(format!("{LSN_SANE_MAX:020}.seg"));
    sim.put_file(&at_bound, vec![0x11; 10]);
    let (wal, report) = open_covered(&sim, small_opts(), 0).unwrap();
    assert_eq!(report.next_lsn, LSN_SANE_MAX, "{report:?}");
    assert_eq!(
        report.torn_at.as_ref().map(|t| t.0.clone()),
        Some(at_bound.clone())
    );
    assert_eq!(wal.append(b"at the bound").unwrap(), LSN_SANE_MAX);
    wal.close().unwrap();

    let sim = SimStorage::new(27);
    let above = sim_dir().join(format!("{:020}.seg", LSN_SANE_MAX + 1));
    sim.put_file(&above, vec![0x11; 10]);
    let r = open_covered(&sim, small_opts(), 0);
    assert!(is_corrupt(&r), "{:?}", r.map(|(_, rep)| rep));
    assert!(sim.file_bytes(&above).is_some(), "the file is kept");
}

/// A writer that opens a segment shorter than its preallocation extends it and makes the new
/// length durable before the open returns: a power cut right after the open keeps it. Kills
/// `file.len() != before` → `==` in `open_last` (the grown file not fsynced, the unchanged one
/// fsynced for nothing).
#[test]
fn the_preallocation_made_at_open_is_durable() {
    let sim = SimStorage::new(28);
    let plain = WalOptions::default()
        .segment_bytes_max(4 << 20)
        .preallocate(false);
    let wal = open_sim(&sim, plain.clone()).unwrap();
    for i in 1..=10 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let seg = sim_segments(&sim, &sim_dir())[0].clone();
    let short = sim.file_bytes(&seg).unwrap().len();
    assert!(short < 4096);

    let wal = open_sim(&sim, plain.preallocate(true)).unwrap();
    let grown = sim.file_bytes(&seg).unwrap().len();
    assert!(grown >= 256 << 10, "preallocated at open: {grown}");
    let after_cut = sim.power_cut();
    assert_eq!(after_cut.file_bytes(&seg).map(|b| b.len()), Some(grown));
    drop(wal);
    let wal = open_sim(&after_cut, WalOptions::default().segment_bytes_max(4 << 20)).unwrap();
    assert_prefix(&all_records(&wal).unwrap(), 10);
}
