//! Goal: a failed fsync, a failed write or ENOSPC poisons the log: every waiter of the failing
//! batch gets an error, no waiter hangs, every later call fails until reopen, and reopening
//! recovers every acknowledged record. Method: 16 writers on the simulated disk with an
//! injected fault; results come back over a channel with a generous timeout (a hang fails the
//! test instead of stalling it); then the disk is reopened (and power-cut) and checked.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use tasklog::Error;
use tasklog::wal::sim::SimStorage;

/// Runs 16 writers × 40 appends; returns (acknowledged LSN → payload, error count).
fn hammer(wal: &tasklog::wal::Wal) -> (BTreeMap<u64, Vec<u8>>, usize) {
    let (tx, rx) = mpsc::channel();
    for t in 0..16u64 {
        let wal = wal.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for i in 0..40u64 {
                let p = format!("t{t} i{i}").into_bytes();
                let r = wal.append(&p);
                let failed = r.is_err();
                tx.send((r, p)).unwrap();
                if failed {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut acked = BTreeMap::new();
    let mut errors = 0;
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Ok(lsn), p)) => {
                acked.insert(lsn, p);
            }
            Ok((Err(e), _)) => {
                assert!(
                    matches!(e, Error::Poisoned { .. } | Error::Io { .. }),
                    "unexpected error {e}"
                );
                errors += 1;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("a writer hung"),
        }
    }
    (acked, errors)
}

fn check_recovered(sim: &SimStorage, acked: &BTreeMap<u64, Vec<u8>>) {
    let wal = open_sim(sim, small_opts()).unwrap();
    let records: BTreeMap<u64, Vec<u8>> = all_records(&wal).unwrap().into_iter().collect();
    for (lsn, p) in acked {
        assert_eq!(records.get(lsn), Some(p), "acknowledged LSN {lsn} lost");
    }
    // And the reopened log accepts writes again.
    wal.append(b"after reopen").unwrap();
}

fn fault_scenario(inject: impl Fn(&SimStorage)) {
    let sim = SimStorage::new(7);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=5 {
        wal.append(&payload(i)).unwrap();
    }
    inject(&sim);
    let (acked, errors) = hammer(&wal);
    assert!(errors >= 1, "the fault should have surfaced");
    // Poisoned until reopen, whatever the call.
    assert!(matches!(wal.append(b"x"), Err(Error::Poisoned { .. })));
    assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(wal.submit(&[b"y"]), Err(Error::Poisoned { .. })));
    assert!(wal.close().is_err());
    sim.clear_faults();
    let mut all = acked.clone();
    for i in 1..=5 {
        all.insert(i, payload(i));
    }
    check_recovered(&sim, &all);
    check_recovered(&sim.crash(), &all);
}

#[test]
fn failed_fsync_with_sixteen_waiters() {
    fault_scenario(|sim| sim.fail_nth_sync(3));
}

#[test]
fn failed_write_with_sixteen_waiters() {
    fault_scenario(|sim| sim.fail_nth_write(4));
}

#[test]
fn torn_write_with_sixteen_waiters() {
    fault_scenario(|sim| sim.tear_nth_write(2));
}

#[test]
fn enospc_with_sixteen_waiters() {
    fault_scenario(|sim| sim.enospc_after_bytes(3000));
}

#[test]
fn failed_fsync_while_rolling_a_segment() {
    // Segment creation fsyncs the file and the directory; fail those too.
    for n in 1..12 {
        fault_scenario(|sim| sim.fail_nth_sync(n));
    }
}
