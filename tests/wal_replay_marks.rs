//! A writer's open notes where the batches of its last segment begin (`segment::Marks`, about
//! every MiB), and a replay from an LSN inside that segment starts at the last mark at or below
//! it instead of reading and checking the whole segment again (a snapshot open replays only
//! the records after its snapshot). Held here: a replay from any LSN, inside a batch or not,
//! gives exactly the records from there on; and the bytes before the mark really are skipped.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tasklog::wal::{Lsn, Wal, WalOptions};

/// Record `i`'s payload: about 1 KiB, different for every record.
fn payload(i: u64) -> Vec<u8> {
    let len = 700 + (i * 131 % 600) as usize;
    (0..len).map(|k| (i as usize * 31 + k * 7) as u8).collect()
}

/// Writes `n` records in batches of 1 to 5, closes, and returns the records by LSN.
fn write_log(dir: &Path, n: u64) -> Vec<(Lsn, Vec<u8>)> {
    let (wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
    let mut written = Vec::new();
    let mut i = 0;
    while i < n {
        let take = (i % 5 + 1).min(n - i);
        let batch: Vec<Vec<u8>> = (i..i + take).map(payload).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let first = wal.append_batch(&refs).unwrap();
        written.extend((first..).zip(batch));
        i += take;
    }
    wal.close().unwrap();
    written
}

fn replay(wal: &Wal, from: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let mut got = Vec::new();
    wal.replay(from, &mut |lsn, p| {
        got.push((lsn, p.to_vec()));
        Ok(())
    })
    .unwrap();
    got
}

fn only_segment(dir: &Path) -> PathBuf {
    let segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.into_iter().next().unwrap()
}

#[test]
fn a_replay_from_any_lsn_gives_exactly_the_records_from_there() {
    let dir = tempfile::tempdir().unwrap();
    // About 6 MiB in one segment: several marks.
    let written = write_log(dir.path(), 6_000);
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let last = written.last().unwrap().0;
    let mut froms: Vec<Lsn> = (1..=last).step_by(97).collect();
    froms.extend([2, 3, 4, 5, 6, last - 2, last - 1, last, last + 1]);
    for from in froms {
        let want: Vec<_> = written
            .iter()
            .filter(|(l, _)| *l >= from)
            .cloned()
            .collect();
        let got = replay(&wal, from);
        assert_eq!(got.len(), want.len(), "replay from LSN {from}");
        assert!(got == want, "replay from LSN {from} differs");
    }
    // Records appended after the open land after the marks: replayed too.
    let more = wal.append(&payload(99_999)).unwrap();
    assert_eq!(replay(&wal, more), vec![(more, payload(99_999))]);
    assert_eq!(replay(&wal, last).len(), 2);
    wal.close().unwrap();
}

#[test]
fn a_replay_from_late_in_the_segment_does_not_read_its_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_log(dir.path(), 6_000);
    let last = written.last().unwrap().0;
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // Damage a byte of an early record after the open checked it: a replay that read the
    // segment from its start again would stop there.
    let segment = only_segment(dir.path());
    let mut file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.seek(SeekFrom::Start(4096)).unwrap();
    file.write_all(&[0xAB]).unwrap();
    file.sync_all().unwrap();
    let tail = replay(&wal, last - 10);
    assert_eq!(tail.len(), 11);
    assert!(
        tail.iter()
            .zip(&written[written.len() - 11..])
            .all(|(a, b)| a == b)
    );
    // A replay that must read the damaged record still reports it.
    let mut seen = 0;
    let whole = wal.replay(1, &mut |_, _| {
        seen += 1;
        Ok(())
    });
    let e = whole.expect_err("the damaged record is read and refused");
    assert!(e.is_corruption(), "{e}");
    assert!(seen < written.len(), "stops at the damage: {seen}");
    wal.close().unwrap();
}
