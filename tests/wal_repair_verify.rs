//! Goal: `verify` reports damage with file, offset and LSN without changing anything, and
//! `repair` copies the damaged bytes to `quarantine/`, cuts the log at the last good record, and
//! then the log opens. Method: real files; damage a middle record of the last segment (so open
//! refuses it), run verify, repair with dry_run, then repair for real, and reopen.

use tasklog::wal::{Wal, WalOptions, repair, verify};

fn build(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let (wal, _) = Wal::open(dir, WalOptions::default().segment_bytes_max(4096)).unwrap();
    for i in 0..400u32 {
        wal.append(format!("record {i:05}").as_bytes()).unwrap();
    }
    wal.close().unwrap();
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

#[test]
fn verify_reports_and_repair_quarantines() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path());
    assert!(segs.len() >= 3);
    let clean = verify(dir.path()).unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.records, clean.next_lsn), (400, 401));

    // Damage the 3rd record of the second segment: a sealed segment, so corruption.
    let target = &segs[1];
    let mut bytes = std::fs::read(target).unwrap();
    let first: u64 = target
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let frame = 24 + "record 00000".len();
    let offset = 48 + 2 * frame;
    bytes[offset + 30] ^= 0xff;
    std::fs::write(target, &bytes).unwrap();

    assert!(
        Wal::open(dir.path(), WalOptions::default())
            .and_then(|(w, _)| w.replay(1, &mut |_, _| Ok(())))
            .is_err()
    );
    let report = verify(dir.path()).unwrap();
    let p = report.problems.first().expect("a problem");
    assert_eq!(p.file, *target);
    assert_eq!(p.offset, Some(offset as u64));
    assert_eq!(p.lsn, Some(first + 2));
    assert!(!report.tail_torn);

    let dry = repair(dir.path(), true).unwrap();
    let cut = dry.cut.clone().expect("a cut");
    assert_eq!(
        (cut.file.clone(), cut.offset, cut.last_good_lsn),
        (target.clone(), offset as u64, first + 1)
    );
    assert!(dry.bytes_quarantined > 0);
    assert!(
        !dir.path().join("quarantine").exists(),
        "dry run must not write"
    );
    assert_eq!(std::fs::read(target).unwrap(), bytes);

    let done = repair(dir.path(), false).unwrap();
    assert_eq!(done.cut, dry.cut);
    assert_eq!(done.files_quarantined.len(), segs.len() - 1);
    for f in &done.files_quarantined {
        assert!(f.exists(), "{f:?}");
    }
    let q0 = std::fs::read(&done.files_quarantined[0]).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        q0[..] == bytes[offset..end],
        "quarantine holds the damaged bytes minus trailing zeros"
    );
    assert!(verify(dir.path()).unwrap().is_clean());

    let (wal, report) =
        Wal::open(dir.path(), WalOptions::default().segment_bytes_max(4096)).unwrap();
    assert_eq!(report.next_lsn, first + 2);
    let mut n = 0;
    wal.replay(1, &mut |lsn, p| {
        assert_eq!(p, format!("record {:05}", lsn - 1).as_bytes());
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, first + 1);
    assert_eq!(wal.append(b"new").unwrap(), first + 2);
}

#[test]
fn verify_flags_a_torn_tail_as_merely_torn() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path());
    let last = segs.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    std::fs::write(last, &bytes[..end - 5]).unwrap();
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert!(report.tail_torn && report.problems[0].torn_tail);
    assert_eq!(report.problems[0].lsn, Some(400));
    // Repair handles a lock held by a writer.
    let (wal, r) = Wal::open(dir.path(), WalOptions::default().segment_bytes_max(4096)).unwrap();
    assert_eq!(r.next_lsn, 400);
    assert!(matches!(
        repair(dir.path(), true),
        Err(tasklog::Error::Locked { .. })
    ));
    drop(wal);
}
