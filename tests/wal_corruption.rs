//! Goal: damage is detected and reported with the file, byte offset and LSN, and never turns
//! into a wrong payload. Method: write a small multi-segment log on the simulated disk; flip
//! every byte of a sealed segment (and of the last one) one at a time and check that open or
//! replay fails with `Corrupt`/`UnsupportedVersion` naming the file, or (last segment only)
//! that a torn tail was cut and the records returned are a correct prefix. Then remove a middle
//! segment, forge an LSN gap and an unknown version.

mod common;
use common::*;

use std::path::PathBuf;
use std::sync::Arc;

use tasklog::Error;
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{Storage, Wal};

/// A log of 60 records over several 4 KiB segments; returns the disk and the segment files.
fn log() -> (SimStorage, Vec<PathBuf>, u64) {
    let sim = SimStorage::new(3);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=200u64 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let segs = sim_segments(&sim, &sim_dir());
    assert!(segs.len() >= 3);
    (sim, segs, 200)
}

/// Opens and replays; Ok(records) or the first error.
fn open_and_replay(sim: &SimStorage) -> tasklog::Result<Vec<(u64, Vec<u8>)>> {
    let wal = open_sim(sim, small_opts())?;
    all_records(&wal)
}

fn names(err: &Error, file: &PathBuf) -> bool {
    match err {
        Error::Corrupt {
            file: f, offset, ..
        } => f == file && offset.is_some(),
        Error::UnsupportedVersion { file: f, .. } => f == file,
        _ => false,
    }
}

#[test]
fn every_flipped_byte_of_a_sealed_segment_is_detected() {
    let (base, segs, _) = log();
    let target = &segs[1];
    let original = base.file_bytes(target).unwrap();
    for i in 0..original.len() {
        for mask in [0x01u8, 0xff] {
            let sim = base.crash();
            let mut bytes = original.clone();
            bytes[i] ^= mask;
            sim.put_file(target, bytes);
            match open_and_replay(&sim) {
                Err(e) => assert!(
                    names(&e, target),
                    "byte {i}: error should name {target:?}: {e}"
                ),
                Ok(_) => panic!("byte {i} mask {mask:#x}: flip in a sealed segment went unnoticed"),
            }
        }
    }
}

#[test]
fn every_flipped_byte_of_the_last_segment_is_detected_or_torn() {
    let (base, segs, n) = log();
    let target = segs.last().unwrap();
    let original = base.file_bytes(target).unwrap();
    for i in 0..original.len() {
        let sim = base.crash();
        let mut bytes = original.clone();
        bytes[i] ^= 0x20;
        sim.put_file(target, bytes);
        let wal = match open_sim(&sim, small_opts()) {
            Err(e) => {
                assert!(names(&e, target), "byte {i}: {e}");
                continue;
            }
            Ok(w) => w,
        };
        match all_records(&wal) {
            Err(e) => assert!(names(&e, target), "byte {i}: {e}"),
            Ok(recs) => {
                // Only a torn tail may be cut: the rest is a correct prefix.
                assert!(recs.len() as u64 <= n);
                assert_prefix(&recs, recs.len() as u64);
            }
        }
    }
}

#[test]
fn missing_middle_segment_names_the_file() {
    let (sim, segs, _) = log();
    sim.remove_file(&segs[1]).unwrap();
    let err = open_and_replay(&sim).unwrap_err();
    assert!(names(&err, &segs[2]), "{err}");
    assert!(err.to_string().contains("missing segment"), "{err}");
}

#[test]
fn lsn_gap_names_the_file() {
    let (sim, segs, _) = log();
    // Drop the last record of a sealed segment: the next segment then starts one LSN too late.
    let bytes = sim.file_bytes(&segs[0]).unwrap();
    let mut pos = 48usize;
    let mut last_start = pos;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        last_start = pos;
        pos += 24 + len;
    }
    sim.put_file(&segs[0], bytes[..last_start].to_vec());
    let err = open_and_replay(&sim).unwrap_err();
    assert!(names(&err, &segs[1]), "{err}");
    assert!(err.to_string().contains("gap"), "{err}");
    let report = tasklog::wal::verify_with_storage(&sim, &sim_dir()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == segs[1] && p.reason.contains("gap")),
        "{report:?}"
    );
}

#[test]
fn unknown_version_names_the_file() {
    let (sim, segs, _) = log();
    let mut bytes = sim.file_bytes(&segs[0]).unwrap();
    bytes[8] = 9;
    let crc = crc32fast::hash(&bytes[..44]);
    bytes[44..48].copy_from_slice(&crc.to_le_bytes());
    sim.put_file(&segs[0], bytes);
    match open_and_replay(&sim).unwrap_err() {
        Error::UnsupportedVersion {
            file,
            found,
            supported,
        } => {
            assert_eq!((file, found, supported), (segs[0].clone(), 9, 1));
        }
        other => panic!("expected UnsupportedVersion, got {other}"),
    }
    let _ = Wal::open_with_storage(
        Arc::new(sim.clone()),
        sim_dir(),
        small_opts().read_only(true),
    )
    .unwrap_err();
}
