//! Goal: records written through every append path read back identically, across segment
//! roll-over, reopen, `read_from` and `truncate_before`. Method: small segments on the real
//! file system, deterministic payloads, full comparison after reopen.

mod common;
use common::*;

use tasklog::wal::{Durability, Wal, WalOptions};

#[test]
fn round_trip_across_segment_roll_over() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().segment_bytes_max(4096);
    let (wal, report) = Wal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!((report.first_lsn, report.next_lsn), (1, 1));
    let mut n = 0u64;
    for _ in 0..500 {
        n += 1;
        assert_eq!(wal.append(&payload(n)).unwrap(), n);
        if n.is_multiple_of(50) {
            let batch: Vec<Vec<u8>> = (n + 1..=n + 5).map(payload).collect();
            let refs: Vec<&[u8]> = batch.iter().map(|v| v.as_slice()).collect();
            assert_eq!(wal.append_batch(&refs).unwrap(), n + 1);
            n += 5;
        }
    }
    assert_eq!(wal.durable_lsn(), n);
    assert!(wal.stats().segments > 3, "small segments should roll");
    let stats = wal.stats();
    assert_eq!(stats.appends, n);
    assert!(
        stats.fsyncs >= 500 && stats.fsync_latency.count == stats.fsyncs,
        "{stats:?}"
    );
    assert!(stats.fsync_latency.p50_us <= stats.fsync_latency.p99_us);
    assert!(stats.fsync_latency.p99_us <= stats.fsync_latency.max_us);
    assert!(stats.bytes > 0 && stats.durable_lsn == n);
    assert_prefix(&all_records(&wal).unwrap(), n);
    wal.close().unwrap();
    assert!(matches!(wal.append(b"x"), Err(tasklog::Error::Closed)));

    let (wal, report) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!((report.next_lsn, report.torn_bytes_cut), (n + 1, 0));
    assert_prefix(&all_records(&wal).unwrap(), n);
    let some = wal.read_from(100, 7).unwrap();
    assert_eq!(some.len(), 7);
    assert_eq!(some[0].lsn, 100);
    assert_eq!(some[6].payload, payload(106));
    assert!(wal.read_from(n + 1, 10).unwrap().is_empty());
    assert_eq!(wal.append(&payload(n + 1)).unwrap(), n + 1);
}

#[test]
fn replay_from_the_middle_and_truncate_before() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default().segment_bytes_max(4096)).unwrap();
    for i in 1..=400u64 {
        wal.append(&payload(i)).unwrap();
    }
    let mut seen = Vec::new();
    wal.replay(250, &mut |lsn, p| {
        assert_eq!(p, payload(lsn).as_slice());
        seen.push(lsn);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, (250..=400).collect::<Vec<_>>());
    let before = wal.stats().segments;
    let report = wal.truncate_before(250).unwrap();
    assert!(report.segments_removed > 0);
    assert_eq!(wal.stats().segments, before - report.segments_removed);
    let first = wal.first_lsn();
    assert!(first > 1 && first <= 250, "first LSN {first}");
    // Everything from 250 on is still there; truncating past the end never drops the active segment.
    assert_eq!(wal.read_from(250, 1000).unwrap().len(), 151);
    wal.truncate_before(10_000).unwrap();
    assert_eq!(wal.stats().segments, 1);
    assert_eq!(wal.append(b"more").unwrap(), 401);
    wal.close().unwrap();
    let (wal, report) =
        Wal::open(dir.path(), WalOptions::default().segment_bytes_max(4096)).unwrap();
    assert_eq!(report.next_lsn, 402);
    let recs = wal.read_from(0, 10_000).unwrap();
    assert_eq!(recs.last().unwrap().payload, b"more");
    assert_eq!(recs.first().unwrap().lsn, wal.first_lsn());
}

#[test]
fn million_record_batch_and_buffered_mode() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default()
        .durability(Durability::Buffered)
        .segment_bytes_max(1 << 20);
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    wal.append(b"before").unwrap();
    let payloads: Vec<[u8; 8]> = (0..1_000_000u64).map(|i| i.to_le_bytes()).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    assert_eq!(wal.append_batch(&refs).unwrap(), 2);
    wal.append(b"after").unwrap();
    wal.sync().unwrap();
    drop(wal); // the last handle syncs on drop
    let (wal, report) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(report.next_lsn, 1_000_003);
    let mut count = 0u64;
    wal.replay(2, &mut |lsn, p| {
        if lsn <= 1_000_001 {
            assert_eq!(p, (lsn - 2).to_le_bytes());
        }
        count += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(count, 1_000_001);
}

#[test]
fn interval_mode_and_ticket_api() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().sync_interval(std::time::Duration::from_millis(5));
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let t = wal.submit(&[b"a", b"b", b"c"]).unwrap();
    assert_eq!((t.first_lsn(), t.last_lsn()), (1, 3));
    assert_eq!(t.wait().unwrap(), 3);
    wal.wait_durable(2).unwrap();
    assert!(wal.wait_durable(99).is_err());
    let clone = wal.clone();
    clone.close().unwrap();
    assert!(matches!(wal.append(b"x"), Err(tasklog::Error::Closed)));
    let (wal, r) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(r.next_lsn, 4);
    assert_eq!(wal.stats().next_lsn, 4);
}
