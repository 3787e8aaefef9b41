//! A snapshot starts a new log segment (`Log::boundary` asks for a roll under the state lock,
//! `Wal::finish_segment_roll` makes it once the snapshot is in place if no batch made it
//! first): the records it holds fill whole segments, which the log drops exactly when no kept
//! snapshot needs them, and an open after it scans only the records after it (issue #20).
//!
//! Held here: the segments after snapshots start right after each snapshot's LSN and the
//! oldest go; a requested roll is made by the next batch or by the finish, never twice;
//! sealing while other threads append loses and reorders nothing; a seal on an empty segment
//! does nothing.

use std::path::Path;
use std::sync::Arc;

use tasklog::wal::{Wal, WalOptions};
use tasklog::{NewTask, Store};

/// The first LSN of every segment in the store's log, in order.
fn segment_starts(log_dir: &Path) -> Vec<u64> {
    let mut starts: Vec<u64> = std::fs::read_dir(log_dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    starts.sort_unstable();
    starts
}

fn submit_some(store: &Store, from: usize, n: usize) {
    for i in from..from + n {
        store
            .submit(NewTask::new(format!("t{i}")).id(format!("t{i:05}")))
            .unwrap();
    }
}

#[test]
fn each_snapshot_starts_a_segment_and_the_oldest_segments_go_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("wal");
    let store = Store::open(dir.path()).unwrap();
    submit_some(&store, 0, 50);
    let first = store.snapshot().unwrap();
    // The snapshot holds the first segment whole: it is gone at once.
    assert_eq!(segment_starts(&log_dir), vec![first.lsn + 1]);
    assert_eq!(first.segments_removed, 1);
    submit_some(&store, 50, 50);
    let second = store.snapshot().unwrap();
    // Two snapshots kept (the default): the log keeps what the older one needs, from the
    // segment that starts right after it.
    assert_eq!(
        segment_starts(&log_dir),
        vec![first.lsn + 1, second.lsn + 1]
    );
    assert_eq!(second.segments_removed, 0);
    submit_some(&store, 100, 50);
    let third = store.snapshot().unwrap();
    assert_eq!(
        segment_starts(&log_dir),
        vec![second.lsn + 1, third.lsn + 1]
    );
    assert_eq!(third.segments_removed, 1);
    // A snapshot with no record since the last one seals nothing (no empty segments pile up).
    let again = store.snapshot().unwrap();
    assert_eq!(again.lsn, third.lsn);
    assert_eq!(
        segment_starts(&log_dir),
        vec![second.lsn + 1, third.lsn + 1]
    );
    store.close().unwrap();
    // Everything reopens, from the newest snapshot and from the older one's log alike.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.len(), 150);
    store.close().unwrap();
}

#[test]
fn a_seal_on_an_empty_segment_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(
        !wal.seal_active_segment().unwrap(),
        "a new log's segment is empty"
    );
    wal.append(b"one").unwrap();
    assert!(wal.seal_active_segment().unwrap());
    assert!(
        !wal.seal_active_segment().unwrap(),
        "the new segment is empty"
    );
    assert_eq!(segment_starts(dir.path()), vec![1, 2]);
    wal.append(b"two").unwrap();
    wal.close().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut got = Vec::new();
    wal.replay(1, &mut |lsn, p| {
        got.push((lsn, p.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(got, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
    wal.close().unwrap();
}

#[test]
fn a_requested_roll_is_made_once_by_the_next_batch_or_by_the_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.request_segment_roll();
    assert!(
        !wal.finish_segment_roll().unwrap(),
        "an empty segment needs no roll"
    );
    wal.append(b"1").unwrap();
    // Made by the next batch...
    wal.request_segment_roll();
    wal.append_batch(&[b"2", b"3"]).unwrap();
    assert_eq!(segment_starts(dir.path()), vec![1, 2]);
    assert!(!wal.finish_segment_roll().unwrap(), "made already");
    wal.append(b"4").unwrap();
    assert_eq!(segment_starts(dir.path()), vec![1, 2], "once");
    // ... or by the finish.
    wal.request_segment_roll();
    assert!(wal.finish_segment_roll().unwrap());
    assert!(!wal.finish_segment_roll().unwrap(), "once");
    wal.append(b"5").unwrap();
    assert_eq!(segment_starts(dir.path()), vec![1, 2, 5]);
    // Without a request, the finish does nothing.
    assert!(!wal.finish_segment_roll().unwrap());
    wal.close().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut got = Vec::new();
    wal.replay(1, &mut |lsn, p| {
        got.push((lsn, p.to_vec()));
        Ok(())
    })
    .unwrap();
    let want: Vec<(u64, Vec<u8>)> = (1..=5u64)
        .map(|i| (i, i.to_string().into_bytes()))
        .collect();
    assert_eq!(got, want);
    wal.close().unwrap();
}

#[test]
fn sealing_while_others_append_loses_and_reorders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let wal = Arc::new(wal);
    let writers: Vec<_> = (0..4u8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..400u32 {
                    let mut payload = vec![t];
                    payload.extend_from_slice(&i.to_le_bytes());
                    let lsn = if i % 3 == 0 {
                        wal.append_batch(&[&payload, &payload]).unwrap()
                    } else {
                        wal.append(&payload).unwrap()
                    };
                    acked.push((lsn, payload));
                }
                acked
            })
        })
        .collect();
    let mut seals = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        if wal.seal_active_segment().unwrap() {
            seals += 1;
        }
    }
    let acked: Vec<(u64, Vec<u8>)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    wal.close().unwrap();
    assert!(seals > 0, "no seal happened while appends ran");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut replayed = std::collections::BTreeMap::new();
    let mut next = 1;
    wal.replay(1, &mut |lsn, p| {
        assert_eq!(lsn, next, "LSNs contiguous");
        next += 1;
        replayed.insert(lsn, p.to_vec());
        Ok(())
    })
    .unwrap();
    for (lsn, payload) in acked {
        assert_eq!(replayed.get(&lsn), Some(&payload), "acknowledged LSN {lsn}");
    }
    assert!(segment_starts(dir.path()).len() > 1);
    wal.close().unwrap();
}
