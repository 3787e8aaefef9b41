//! Regression: a read-only open of a log whose last segment holds a bad record followed by
//! valid ones must refuse it as corruption, exactly like a writer's open. It used to return an
//! empty log: the segment was re-read for a retry from the file's position (at its end) instead
//! of from offset 0, so the retry saw nothing.

use tasklog::wal::{Wal, WalOptions};

#[test]
fn read_only_open_refuses_mid_log_damage_in_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default().preallocate(false)).unwrap();
    for i in 0..10u32 {
        wal.append(format!("record number {i}").as_bytes()).unwrap();
    }
    wal.close().unwrap();
    drop(wal);
    let seg = dir.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, bytes).unwrap();

    let writer = Wal::open(dir.path(), WalOptions::default());
    assert!(
        writer.as_ref().err().is_some_and(|e| e.is_corruption()),
        "writer: {:?}",
        writer.map(|w| w.1)
    );
    let reader = Wal::open(dir.path(), WalOptions::default().read_only(true));
    match reader {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok((w, report)) => panic!(
            "read-only open accepted a damaged log: next LSN {}, {report:?}",
            w.next_lsn()
        ),
    }
}
