//! Goal: the end-of-data rule in preallocated segments: zeros after the last complete record are
//! not a torn tail, a torn record inside preallocated space is cut, and garbage after zeros
//! followed by a valid frame is corruption. Method: real files with `preallocate: true`
//! (fallocate extends the file with zeros), damaged by hand, reopened.

use tasklog::wal::{Wal, WalOptions};

fn opts() -> WalOptions {
    WalOptions::default().segment_bytes_max(1 << 20)
}

fn segment(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!("{:020}.seg", 1))
}

#[test]
fn zeros_after_the_last_record_are_end_of_data() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
    for i in 0..10u32 {
        wal.append(&i.to_le_bytes()).unwrap();
    }
    drop(wal);
    let len = std::fs::metadata(segment(dir.path())).unwrap().len();
    // Preallocation starts small and doubles as data arrives (issue 17: small volumes).
    assert!(
        len >= tasklog::wal::segment::writer::PREALLOCATE_BYTES_FIRST,
        "segment should be preallocated, is {len} bytes"
    );
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(
        (report.next_lsn, report.torn_bytes_cut, report.torn_at),
        (11, 0, None)
    );
    assert_eq!(wal.read_from(1, 100).unwrap().len(), 10);
}

#[test]
fn torn_record_inside_preallocated_space_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
    for i in 0..10u32 {
        wal.append(&[i as u8; 40]).unwrap();
    }
    drop(wal);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    // Zero the last 20 bytes of the last record: as if its last sector never reached the disk.
    for b in &mut bytes[end - 20..end] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(report.next_lsn, 10);
    assert_eq!(
        report.torn_at.as_ref().map(|t| t.1),
        Some((end - 64) as u64)
    );
    assert_eq!(wal.append(b"again").unwrap(), 10);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!((report.next_lsn, report.torn_bytes_cut), (11, 0));
    assert_eq!(wal.read_from(10, 1).unwrap()[0].payload, b"again");
}

#[test]
fn garbage_in_zeros_followed_by_a_valid_frame_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
    for i in 0..10u32 {
        wal.append(&[i as u8; 40]).unwrap();
    }
    drop(wal);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    // Zero record 5 entirely: zeros followed by valid records is not the end of data.
    let start = 48 + 4 * 64;
    for b in &mut bytes[start..start + 64] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).unwrap();
    match Wal::open(dir.path(), opts()) {
        Err(tasklog::Error::Corrupt {
            file, offset, lsn, ..
        }) => {
            assert_eq!((file, offset, lsn), (path, Some(start as u64), Some(5)));
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}
