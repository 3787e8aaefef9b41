//! Goal: with 16 threads appending concurrently in `Sync` mode, every acknowledged LSN is
//! replayed exactly once, in order, with the payload its writer sent. Method: each thread
//! records the LSNs it was given and the payload it sent; after reopen the replay must match
//! the union exactly, and group commit must have used fewer fsyncs than appends.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use tasklog::wal::{Wal, WalOptions};

#[test]
fn sixteen_writers_every_ack_replayed_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default().segment_bytes_max(64 << 10);
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let wal = wal.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                for i in 0..150u64 {
                    let p = format!("thread {t} record {i}").into_bytes();
                    let lsn = if i % 25 == 0 {
                        let second = format!("thread {t} record {i} second").into_bytes();
                        let first = wal.append_batch(&[&p, &second]).unwrap();
                        mine.push((first + 1, second));
                        first
                    } else {
                        wal.append(&p).unwrap()
                    };
                    mine.push((lsn, p));
                }
                mine
            })
        })
        .collect();
    let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
    for h in handles {
        for (lsn, p) in h.join().unwrap() {
            assert!(
                expected.insert(lsn, p).is_none(),
                "LSN {lsn} acknowledged twice"
            );
        }
    }
    let stats = wal.stats();
    assert_eq!(stats.appends, expected.len() as u64);
    assert!(
        stats.fsyncs < stats.appends,
        "group commit should share fsyncs: {stats:?}"
    );
    wal.close().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    let mut next = 1u64;
    wal.replay(1, &mut |lsn, p| {
        assert_eq!(lsn, next);
        assert_eq!(
            expected.get(&lsn).map(|v| v.as_slice()),
            Some(p),
            "payload of LSN {lsn}"
        );
        next += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(next - 1, expected.len() as u64);
}
