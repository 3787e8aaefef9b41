//! Goal: only one writer at a time, in this process or another, while read-only opens work
//! beside a writer. Method: open twice in-process (expect `Locked`); spawn this test binary
//! as a child process (env var switch) that tries to open the same directory and reports what
//! it got through its exit code; open read-only while the writer appends.

use std::process::Command;

use tasklog::Error;
use tasklog::wal::{Wal, WalOptions};

const CHILD_ENV: &str = "TASKLOG_WAL_LOCK_CHILD_DIR";

#[test]
fn second_writer_in_this_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    match Wal::open(dir.path(), WalOptions::default()) {
        Err(Error::Locked {
            path, lock_file, ..
        }) => {
            assert_eq!(path, dir.path());
            assert_eq!(lock_file, dir.path().join("LOCK"));
        }
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    wal.close().unwrap();
    // Closing releases the lock.
    let (again, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    again.close().unwrap();
}

/// The child side: only runs when the parent set the env var.
#[test]
fn child_tries_to_open() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let code = match Wal::open(&dir, WalOptions::default()) {
        Err(Error::Locked { .. }) => 42,
        Ok(_) => 1,
        Err(_) => 2,
    };
    std::process::exit(code);
}

#[test]
fn second_writer_in_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(b"held").unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_tries_to_open",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "the child should have been refused with Locked"
    );
    wal.close().unwrap();
}

#[test]
fn read_only_open_beside_an_active_writer() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().segment_bytes_max(8192);
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    for i in 0..300u32 {
        wal.append(&i.to_le_bytes()).unwrap();
    }
    let (reader, report) = Wal::open(dir.path(), opts.clone().read_only(true)).unwrap();
    assert_eq!(report.next_lsn, 301);
    // The writer keeps going; the reader sees exactly what was complete when it opened.
    for i in 300..400u32 {
        wal.append(&i.to_le_bytes()).unwrap();
    }
    let mut n = 0u32;
    reader
        .replay(1, &mut |lsn, p| {
            assert_eq!(p, n.to_le_bytes());
            assert_eq!(lsn, u64::from(n) + 1);
            n += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 300);
    assert!(matches!(reader.append(b"x"), Err(Error::ReadOnly)));
    assert!(matches!(reader.truncate_before(5), Err(Error::ReadOnly)));
    wal.close().unwrap();
}
