//! Goal: the promises of reading records by LSN (`Wal::read_lsns`, `src/wal/read_at.rs`, which
//! backs the task histories kept as positions in the log) that cargo-mutants showed untested
//! (issue #23, docs/mutation-survivors.md, "read_at") each have a test here that fails when the
//! promise is broken:
//!
//! - every record reads back whole by its LSN, whatever its size: one larger than the chunks the
//!   reader reads at a time, one that starts in one chunk and ends in the next;
//! - a record that is not where it must be is `Corrupt`, naming the segment, the offset and LSN
//!   of the frame that is damaged and what is wrong with it (cut short, end of data, a length
//!   beyond the record limit, a header that does not check), never the next frame's;
//! - a damaged frame header is never trusted to step over it: the read cannot be led into a
//!   payload's bytes and hand those over as a record.
//!
//! Method: logs on the simulated disk (`SimStorage`), damaged with `put_file` while the writer
//! is open (the bytes change under it, as a disk's would), read through `Wal::read_lsns`. The
//! code change each test catches is listed in docs/durability.md ("Mutation testing").

mod common;

use std::path::PathBuf;

use common::{open_sim, sim_dir, sim_segments};
use tasklog::Error;
use tasklog::wal::frame::{self, FLAGS_SINGLE, FRAME_HEADER_LEN};
use tasklog::wal::segment::SEGMENT_HEADER_LEN;
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{Lsn, Wal, WalOptions};

/// One segment of 1 MiB, not preallocated: a file ends exactly at its data.
fn opts() -> WalOptions {
    WalOptions::default()
        .segment_bytes_max(1 << 20)
        .preallocate(false)
}

/// A writer on a fresh simulated disk holding `payloads` as records 1, 2, ... in one segment.
fn log_of(payloads: &[Vec<u8>]) -> (SimStorage, Wal, PathBuf) {
    let sim = SimStorage::new(14);
    let wal = open_sim(&sim, opts()).unwrap();
    for p in payloads {
        wal.append(p).unwrap();
    }
    let segs = sim_segments(&sim, &sim_dir());
    assert_eq!(segs.len(), 1, "one segment: {segs:?}");
    let seg = segs.into_iter().next().unwrap();
    (sim, wal, seg)
}

/// The payloads of `lsns`, read by position.
fn read(wal: &Wal, lsns: &[Lsn]) -> tasklog::Result<Vec<(Lsn, Vec<u8>)>> {
    let mut out = Vec::new();
    wal.read_lsns(lsns, &mut |lsn, p| {
        out.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

/// Where the frame of record `lsn` starts, for records `payloads` from LSN 1 on.
fn frame_offset(payloads: &[Vec<u8>], lsn: Lsn) -> u64 {
    let before: usize = payloads
        .iter()
        .take(lsn as usize - 1)
        .map(|p| frame::encoded_len(p.len()))
        .sum();
    (SEGMENT_HEADER_LEN + before) as u64
}

/// Asserts `err` is `Corrupt` in `seg` at `offset` for `lsn`, its reason containing `why`.
fn assert_corrupt(err: &Error, seg: &PathBuf, offset: u64, lsn: Lsn, why: &str) {
    match err {
        Error::Corrupt {
            file,
            offset: at,
            lsn: l,
            reason,
        } => {
            assert_eq!(file, seg, "{err}");
            assert_eq!(*at, Some(offset), "offset: {err}");
            assert_eq!(*l, Some(lsn), "LSN: {err}");
            assert!(reason.contains(why), "reason {reason:?} should say {why:?}");
        }
        other => panic!("expected Corrupt naming LSN {lsn}, got {other:?}"),
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|k| (k as u8).wrapping_mul(7) ^ seed).collect()
}

/// Every record reads back by its LSN, whole, whatever its size: small ones, ones that start in
/// one 8 KiB read chunk and end in the next, one of 100 KiB (larger than the 64 KiB chunk the
/// index is built with) at the start of a walk and one in the middle; in one call in reverse
/// order (the index built to the end at once) and one by one on a fresh handle.
///
/// Kills (src/wal/read_at.rs, `walk`): `rest.len() >= FRAME_HEADER_LEN && frame_len(..)` →
/// `||` and `lsn != until` → `==` (a frame taken as whole while only its header is in the
/// buffer: the record cut at the chunk's end and refused as an incomplete frame), the "read
/// again" test `len > want` → `==` / `<` and `n == want` → `!=` (a record larger than the
/// chunk refused as "segment ends inside the frame"). The bug they stand for: a history with a
/// large output, or one event that happens to cross a read boundary, cannot be read back.
#[test]
fn every_record_reads_back_by_lsn_whatever_its_size() {
    let mut payloads: Vec<Vec<u8>> = vec![bytes(100 << 10, 1)];
    for i in 0..90u64 {
        let len = match i % 9 {
            0 => 3000,
            4 => 9000,
            _ => (i as usize * 37) % 700 + 1,
        };
        payloads.push(bytes(len, i as u8));
    }
    payloads.push(bytes(100 << 10, 2));
    payloads.push(bytes(10, 3));
    let (sim, wal, _) = log_of(&payloads);
    let n = payloads.len() as Lsn;
    let want = |lsn: Lsn| payloads[lsn as usize - 1].clone();

    let lsns: Vec<Lsn> = (1..=n).rev().collect();
    let got = read(&wal, &lsns).unwrap();
    assert_eq!(got.len(), lsns.len());
    for (lsn, p) in got {
        assert!(p == want(lsn), "LSN {lsn}: {} bytes read", p.len());
    }
    wal.close().unwrap();

    let wal = open_sim(&sim, opts()).unwrap();
    for lsn in 1..=n {
        let got = read(&wal, &[lsn]).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].1 == want(lsn), "LSN {lsn} one by one");
    }
}

/// A segment cut inside a record of 100 KiB: reading the record after it is `Corrupt` naming
/// the record that is cut (its LSN and offset, "segment ends inside the frame"), not the next
/// one at an offset past the end of the file; reading the cut record itself says the same.
///
/// Kills (`walk`, the test after a read): `len > want && n == want` → `||`, `n == want` → `!=`
/// and the whole guard → `true` (a short read of a large frame taken as "read again": the cut
/// frame stepped over by its header and the damage reported at the wrong record). The bug:
/// `tasklog verify`-style diagnostics pointing an operator at the wrong record and offset.
#[test]
fn a_segment_cut_inside_a_large_record_names_that_record() {
    let payloads = vec![bytes(100 << 10, 1), bytes(50, 2), bytes(60, 3)];
    let (sim, wal, seg) = log_of(&payloads);
    let at1 = frame_offset(&payloads, 1);
    let mut file = sim.file_bytes(&seg).unwrap();
    file.truncate(at1 as usize + FRAME_HEADER_LEN + (50 << 10));
    sim.put_file(&seg, file);

    let err = read(&wal, &[2]).unwrap_err();
    assert_corrupt(&err, &seg, at1, 1, "segment ends inside the frame");
    let err = read(&wal, &[1]).unwrap_err();
    assert_corrupt(&err, &seg, at1, 1, "segment ends inside the frame");
}

/// A segment that ends exactly where a record must start: `Corrupt`, "end of data", at that
/// record; a frame whose length field is beyond the record limit: "frame length beyond the
/// record limit", at that frame, whether it is the first frame read (at the start of the
/// buffer) or one in the middle of it.
///
/// Kills (`walk`): the guard `n >= 4` after a read → `true`, `false` and `<` (the two reasons
/// swapped: a cut segment reported as a bad length and a bad length as a cut segment). The bug:
/// an error that says the wrong thing about the damage it found.
#[test]
fn a_missing_record_and_a_bad_length_are_each_named_for_what_they_are() {
    let payloads = vec![bytes(40, 1), bytes(50, 2), bytes(60, 3)];

    let (sim, wal, seg) = log_of(&payloads);
    let at3 = frame_offset(&payloads, 3);
    let mut file = sim.file_bytes(&seg).unwrap();
    file.truncate(at3 as usize);
    sim.put_file(&seg, file);
    let err = read(&wal, &[3]).unwrap_err();
    assert_corrupt(&err, &seg, at3, 3, "end of data");
    drop(wal);

    for lsn in [1, 2] {
        let (sim, wal, seg) = log_of(&payloads);
        let at = frame_offset(&payloads, lsn) as usize;
        let mut file = sim.file_bytes(&seg).unwrap();
        file[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        sim.put_file(&seg, file);
        let err = read(&wal, &[3]).unwrap_err();
        assert_corrupt(
            &err,
            &seg,
            at as u64,
            lsn,
            "frame length beyond the record limit",
        );
    }
}

/// A frame whose length field no longer matches its check is refused, not stepped over by that
/// length: here the damaged length of record 1 points into record 2's payload, which holds
/// bytes shaped like a frame for LSN 2 and a frame for LSN 3 with a good CRC. Reading LSN 3 is
/// `Corrupt` naming record 1 ("frame header does not check"); the forged payload is never
/// handed over.
///
/// Kills (`walk`): `c == !l && kind == KIND_RECORD` → `||` (a header trusted when only its kind
/// byte is right). The bug: a flipped bit in a length makes a history read return bytes that a
/// task's own output put in the log, as if they were a recorded event.
#[test]
fn a_frame_header_that_does_not_check_is_never_stepped_over() {
    let mut forged = Vec::new();
    frame::encode_into(&mut forged, 2, FLAGS_SINGLE, b"step");
    frame::encode_into(&mut forged, 3, FLAGS_SINGLE, b"forged");
    forged.extend_from_slice(&[0u8; 16]);
    let payloads = vec![bytes(40, 1), forged, b"genuine".to_vec()];
    let (sim, wal, seg) = log_of(&payloads);
    // Read once whole: the index now marks record 1, so the read below starts there.
    assert_eq!(read(&wal, &[3]).unwrap(), vec![(3, b"genuine".to_vec())]);

    // Record 1's length now reaches exactly to the start of record 2's payload; its check field
    // still matches the old length.
    let at1 = frame_offset(&payloads, 1) as usize;
    let at2 = frame_offset(&payloads, 2) as usize;
    let damaged_len = u32::try_from(at2 + FRAME_HEADER_LEN - at1 - FRAME_HEADER_LEN).unwrap();
    let mut file = sim.file_bytes(&seg).unwrap();
    file[at1..at1 + 4].copy_from_slice(&damaged_len.to_le_bytes());
    sim.put_file(&seg, file);

    let err = read(&wal, &[3]).unwrap_err();
    assert_corrupt(&err, &seg, at1 as u64, 1, "frame header does not check");
}
