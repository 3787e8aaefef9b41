//! Goal: the promises of the segment reader (`src/wal/segment/reader.rs`) that cargo-mutants
//! showed untested (issue #23, docs/mutation-survivors.md, "seg_reader") each have a test here
//! that fails when the promise is broken:
//!
//! - damage among records a snapshot holds is passed over to the first record after it, and
//!   only for a reader that wants nothing at or below the snapshot (`scan_segment_covered`);
//! - damage to records after the snapshot is never passed over;
//! - a torn tail is cut where it is when it lies after the snapshot, and ends the segment at
//!   the snapshot when it lies below it;
//! - the searches for a frame after damage (`find_frame`, `valid_frame_after_within`) find a
//!   frame whose first 8 bytes hold no zero (a record of 16 MiB or more) and step over long
//!   zeroed stretches without losing one.
//!
//! Method: segments built in memory, frame by frame, and scanned directly (feature
//! `testing`). Each scan runs in a thread with a deadline, so a mutant that loops forever
//! fails the test instead of hanging it. The code change each test catches is listed in
//! docs/durability.md ("Mutation testing").

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tasklog::Error;
use tasklog::wal::Lsn;
use tasklog::wal::frame::{FLAGS_SINGLE, encode_into};
use tasklog::wal::segment::{
    CoveredScan, SEGMENT_HEADER_LEN, ScanSpec, SegmentHeader, TailPolicy, scan_segment,
    scan_segment_covered,
};

/// A segment in memory and where each of its frames starts.
struct Seg {
    bytes: Vec<u8>,
    /// `offsets[i]`: the offset of the frame of LSN `first + i`.
    offsets: Vec<usize>,
    first: Lsn,
}

/// A payload with no zero byte (so a zero in a segment is never payload).
fn payload(lsn: Lsn) -> Vec<u8> {
    format!("record {lsn:04} of the log").into_bytes()
}

/// A segment starting at LSN `first` holding `payloads`, one single-record frame each.
fn segment(first: Lsn, payloads: &[Vec<u8>]) -> Seg {
    let header = SegmentHeader {
        first_lsn: first,
        prev_first_lsn: 0,
        segment_bytes_max: 1 << 30,
    };
    let mut bytes = header.encode().to_vec();
    let mut offsets = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        offsets.push(bytes.len());
        encode_into(&mut bytes, first + i as Lsn, FLAGS_SINGLE, p);
    }
    Seg {
        bytes,
        offsets,
        first,
    }
}

/// Records `first..=last` with [`payload`].
fn records(first: Lsn, last: Lsn) -> Seg {
    let payloads: Vec<Vec<u8>> = (first..=last).map(payload).collect();
    segment(first, &payloads)
}

impl Seg {
    /// Damages the record of `lsn`: one payload byte flipped, so its CRC fails.
    fn damage(&mut self, lsn: Lsn) {
        let at = self.offsets[(lsn - self.first) as usize] + 24 + 2;
        self.bytes[at] ^= 0x40;
    }
    fn offset(&self, lsn: Lsn) -> usize {
        self.offsets[(lsn - self.first) as usize]
    }
}

fn spec(policy: TailPolicy, first: Lsn, from: Lsn) -> ScanSpec<'static> {
    ScanSpec {
        file: Path::new("/test/segment.seg"),
        first_lsn: first,
        policy,
        from,
        limit: Lsn::MAX,
        zeros_from: u64::MAX,
        resume: None,
        marks: None,
        vouched: None,
    }
}

type Delivered = Vec<(Lsn, Vec<u8>)>;

/// `scan_segment_covered` in a thread, with a deadline: the scan's result and the records it
/// delivered.
fn covered_scan(
    bytes: Vec<u8>,
    policy: TailPolicy,
    first: Lsn,
    from: Lsn,
    covered: Lsn,
) -> Result<(CoveredScan, Delivered), Error> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let r = scan_segment_covered(&bytes, &spec(policy, first, from), covered, |l, p| {
            seen.push((l, p.to_vec()));
            Ok(())
        });
        tx.send(r.map(|s| (s, seen))).ok();
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the scan never ended (or panicked)")
}

/// `scan_segment` (no snapshot) in a thread, with a deadline.
fn plain_scan(bytes: Vec<u8>, policy: TailPolicy, first: Lsn) -> Result<Lsn, Error> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = scan_segment(&bytes, &spec(policy, first, Lsn::MAX), |_, _| Ok(()));
        tx.send(r.map(|end| end.next_lsn)).ok();
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the scan never ended (or panicked)")
}

fn corrupt_lsn(e: &Error) -> Option<Lsn> {
    match e {
        Error::Corrupt { lsn, .. } => *lsn,
        _ => None,
    }
}

fn assert_delivered(seen: &Delivered, first: Lsn, last: Lsn) {
    let lsns: Vec<Lsn> = seen.iter().map(|(l, _)| *l).collect();
    assert_eq!(
        lsns,
        (first..=last).collect::<Vec<_>>(),
        "records delivered"
    );
    for (l, p) in seen {
        assert_eq!(p, &payload(*l), "payload of {l}");
    }
}

// ---- Damage among covered records is passed over, to exactly the first record after them ----

/// A damaged record the snapshot holds (LSN 5, snapshot at 10) is lost redundancy: a reader
/// that wants the records after the snapshot gets every one of them (11..=20), and learns of
/// the damage. Kills, in `scan_segment_covered` and `find_frame`: the corruption guard → `false`
/// (the damage refused), `covered < first_lsn` → `>` (every snapshot past the segment's start
/// ignored), `from <= covered` → `>`, and the search for the frame of LSN 11 → `None` /
/// `Some(0)` / `Some(1)`, its loop bounds `<=` → `>`, `<` → `==` / `>`, `p + 24` → `p * 24`,
/// `f.lsn == lsn` → `!=`, `&& f.begins_batch()` → `||` (the first frame of the segment taken)
/// and `p += 1` → `-=` / `*=` (never ends).
#[test]
fn damage_among_covered_records_is_passed_over_to_the_first_record_after_the_snapshot() {
    let mut seg = records(1, 20);
    seg.damage(5);
    let len = seg.bytes.len() as u64;
    assert_eq!(
        corrupt_lsn(&plain_scan(seg.bytes.clone(), TailPolicy::Tolerate, 1).unwrap_err()),
        Some(5),
        "without a snapshot the damage is corruption"
    );
    let (scan, seen) = covered_scan(seg.bytes, TailPolicy::Tolerate, 1, 11, 10).unwrap();
    assert_delivered(&seen, 11, 20);
    assert_eq!((scan.end.next_lsn, scan.end.data_end), (21, len));
    assert!(scan.end.torn.is_none(), "{scan:?}");
    assert_eq!(
        scan.skipped.as_ref().and_then(corrupt_lsn),
        Some(5),
        "{scan:?}"
    );
}

/// The same when the snapshot ends at the segment's very first record and that record is the
/// damaged one. Kills `covered < spec.first_lsn` → `==` / `<=` (a snapshot ending at the
/// segment's first LSN treated as not covering any of it).
#[test]
fn a_damaged_first_record_is_passed_over_when_the_snapshot_ends_at_it() {
    let mut seg = records(101, 120);
    seg.damage(101);
    let (scan, seen) = covered_scan(seg.bytes, TailPolicy::Tolerate, 101, 102, 101).unwrap();
    assert_delivered(&seen, 102, 120);
    assert_eq!(scan.end.next_lsn, 121);
    assert_eq!(scan.skipped.as_ref().and_then(corrupt_lsn), Some(101));
}

/// A reader that wants records at or below the snapshot (from 5, snapshot at 10) gets the
/// damage as an error: the damaged record 7 is one it asked for. Kills `from <= covered` →
/// `>` and `covered < first_lsn || from <= covered` → `&&` (damage passed over for a reader
/// that needed the damaged record).
#[test]
fn damage_at_or_below_the_snapshot_fails_a_reader_that_wants_those_records() {
    let mut seg = records(1, 20);
    seg.damage(7);
    let err = covered_scan(seg.bytes, TailPolicy::Tolerate, 1, 5, 10).unwrap_err();
    assert_eq!(corrupt_lsn(&err), Some(7), "{err}");
}

// ---- Damage after the snapshot is never passed over ----

/// In a sealed segment, damage to the first record after the snapshot (LSN 5, snapshot at
/// 4), with no valid record after it, is an error: that record is data no snapshot holds.
/// Kills the guard `matches!(.., Corrupt { lsn: Some(l), .. } if *l <= covered)` → `true`
/// (the damage taken for covered, the segment ended at LSN 5, record 5 lost).
#[test]
fn damage_to_the_first_record_after_the_snapshot_is_an_error_in_a_sealed_segment() {
    let mut seg = records(1, 5);
    seg.damage(5);
    let err = covered_scan(seg.bytes, TailPolicy::Strict, 1, 5, 4).unwrap_err();
    assert_eq!(corrupt_lsn(&err), Some(5), "{err}");
}

// ---- Torn tails and the snapshot ----

/// A torn last record after the snapshot is a plain torn tail, cut where it begins: the
/// snapshot changes nothing, and nothing is reported as passed-over damage (a writer would
/// otherwise seal the segment instead of cutting the tail). Kills, on the guard `end.next_lsn
/// > covered || end.torn.is_none()`: `||` → `&&`, `>` → `<` and `>` → `==`.
#[test]
fn a_torn_tail_after_the_snapshot_is_a_plain_torn_tail() {
    let seg = records(1, 10);
    let cut = seg.offset(10);
    let mut bytes = seg.bytes.clone();
    // Into the payload, so the last byte kept is not zero.
    bytes.truncate(cut + 30);
    let (scan, seen) = covered_scan(bytes, TailPolicy::Tolerate, 1, 6, 5).unwrap();
    assert_delivered(&seen, 6, 9);
    assert_eq!(scan.end.next_lsn, 10);
    let torn = scan.end.torn.as_ref().expect("a torn tail");
    assert_eq!((torn.offset, torn.bytes), (cut as u64, 30));
    assert!(scan.skipped.is_none(), "{scan:?}");
}

/// A torn last record the snapshot holds (record 10, snapshot at 10) ends the segment at the
/// snapshot: the next LSN is 11, never 10 (which would give a new record the LSN of one the
/// snapshot already holds). Kills the guard `end.next_lsn > covered || end.torn.is_none()` →
/// `true`, and its `>` → `>=` / `==`.
#[test]
fn a_torn_tail_the_snapshot_holds_ends_the_segment_after_the_snapshot() {
    let seg = records(1, 10);
    let cut = seg.offset(10);
    let mut bytes = seg.bytes.clone();
    bytes.truncate(cut + 20);
    let len = bytes.len() as u64;
    let (scan, seen) = covered_scan(bytes, TailPolicy::Tolerate, 1, 11, 10).unwrap();
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(scan.end.next_lsn, 11, "{scan:?}");
    assert_eq!(scan.end.data_end, len, "{scan:?}");
    assert!(scan.end.torn.is_none(), "{scan:?}");
    assert!(scan.skipped.is_some(), "{scan:?}");
}

/// A whole segment that ends before the snapshot (records 1..=10, snapshot at 12) is read as
/// it is: next LSN 11, nothing passed over. Kills `||` → `&&` in the guard `end.next_lsn >
/// covered || end.torn.is_none()` (a clean segment reported as damaged and moved to 13).
#[test]
fn a_clean_segment_ending_before_the_snapshot_is_read_as_it_is() {
    let seg = records(1, 10);
    let len = seg.bytes.len() as u64;
    let (scan, seen) = covered_scan(seg.bytes, TailPolicy::Tolerate, 1, 13, 12).unwrap();
    assert!(seen.is_empty());
    assert_eq!((scan.end.next_lsn, scan.end.data_end), (11, len));
    assert!(
        scan.end.torn.is_none() && scan.skipped.is_none(),
        "{scan:?}"
    );
}

// ---- The searches after damage miss no frame ----

/// Records 1..=3, the third damaged, then record 4 of 0x0101_0101 bytes (16 MiB): its length
/// and length check hold no zero byte, so the frame's first zero is its 11th byte.
fn damaged_then_big_record() -> (Seg, usize) {
    let big_len = 0x0101_0101usize;
    assert!(big_len <= tasklog::wal::frame::RECORD_BYTES_MAX);
    let mut payloads: Vec<Vec<u8>> = (1..=3).map(payload).collect();
    payloads.push(vec![0x01; big_len]);
    let mut seg = segment(1, &payloads);
    seg.damage(3);
    (seg, big_len)
}

/// Damage followed by a valid record is corruption, never a torn tail, also when that record's
/// first 8 bytes hold no zero (a record of 16 MiB or more): cutting there would drop an
/// acknowledged record. Kills `b != 0` → `b == 0` in `valid_frame_after_within`'s zero-run
/// skip (it jumps to 7 bytes before the next zero, past the frame's start).
#[test]
fn damage_before_a_record_whose_length_has_no_zero_byte_is_corruption_not_a_torn_tail() {
    let (seg, _) = damaged_then_big_record();
    let err = plain_scan(seg.bytes, TailPolicy::Tolerate, 1).unwrap_err();
    assert_eq!(corrupt_lsn(&err), Some(3), "{err}");
}

/// The frame after covered damage is found also when its first 8 bytes hold no zero: record 4
/// (16 MiB) after the damaged record 3, snapshot at 3. Kills `b != 0` → `b == 0` in
/// `find_frame`'s zero-run skip.
#[test]
fn a_record_whose_length_has_no_zero_byte_is_found_after_covered_damage() {
    let (seg, big_len) = damaged_then_big_record();
    let (scan, seen) = covered_scan(seg.bytes, TailPolicy::Tolerate, 1, 4, 3).unwrap();
    assert_eq!(seen.len(), 1, "record 4 delivered");
    assert_eq!(seen[0].0, 4);
    assert_eq!(seen[0].1.len(), big_len);
    assert_eq!(scan.end.next_lsn, 5);
    assert_eq!(scan.skipped.as_ref().and_then(corrupt_lsn), Some(3));
}

/// A zeroed stretch among the covered records (records 3..=9 gone to zeros, longer than its
/// own offset: a page that never reached the disk) is stepped over to the first record after
/// the snapshot. Kills `p + q` → `p - q` (overflow inside the zero run) and `p * q` (a jump past
/// the record) in `find_frame`'s zero-run skip.
#[test]
fn a_zeroed_stretch_among_covered_records_is_stepped_over() {
    let mut seg = records(1, 20);
    let (from, to) = (seg.offset(3), seg.offset(10));
    assert!(to - from > from, "the zero run is longer than its offset");
    seg.bytes[from..to].fill(0);
    assert!(from > SEGMENT_HEADER_LEN);
    let (scan, seen) = covered_scan(seg.bytes, TailPolicy::Tolerate, 1, 13, 12).unwrap();
    assert_delivered(&seen, 13, 20);
    assert_eq!(scan.end.next_lsn, 21);
    assert_eq!(scan.skipped.as_ref().and_then(corrupt_lsn), Some(3));
}
