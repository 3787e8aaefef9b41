//! Goal: each `WalOptions` builder sets the option it names; an option silently dropped by its
//! setter would leave a log that looks fine but keeps another promise (issue #23: the mutants
//! `sync_interval` and `lock_timeout` → `Default::default()` survived every wal test, which
//! set those fields directly or never looked at what the option changed).
//!
//! Method: observe what each option does, not the field: an interval log acknowledges an
//! append before any fsync covers it; a writer given a lock wait opens once the holder leaves.
//! Neither assertion depends on timing: the interval is an hour, the wait a minute against a
//! holder that leaves after 200 ms.

use std::time::Duration;

use tasklog::Error;
use tasklog::wal::{Durability, Wal, WalOptions};

#[test]
fn sync_interval_acknowledges_before_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default().sync_interval(Duration::from_secs(3600));
    assert!(
        matches!(options.durability, Durability::Interval(d) if d == Duration::from_secs(3600))
    );
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let fsyncs = wal.stats().fsyncs;
    let lsn = wal.append(b"acknowledged on write").unwrap();
    assert!(
        wal.synced_lsn() < lsn,
        "an interval log fsynced its append before acknowledging it (it behaves as Sync)"
    );
    assert_eq!(
        wal.stats().fsyncs,
        fsyncs,
        "no fsync before the interval or a sync()"
    );
    wal.sync().unwrap();
    assert!(wal.synced_lsn() >= lsn);
    wal.close().unwrap();
}

#[test]
fn lock_timeout_waits_for_the_holder_to_leave() {
    let dir = tempfile::tempdir().unwrap();
    let (holder, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    holder.append(b"from the holder").unwrap();

    let refused = Wal::open(dir.path(), WalOptions::default());
    assert!(
        matches!(refused, Err(Error::Locked { .. })),
        "no wait by default: {refused:?}"
    );

    let leaves = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        holder.close().unwrap();
    });
    let options = WalOptions::default().lock_timeout(Duration::from_secs(60));
    assert_eq!(options.lock_timeout, Duration::from_secs(60));
    let (wal, report) = Wal::open(dir.path(), options)
        .expect("a writer given a minute's wait opens once the holder closes after 200 ms");
    leaves.join().unwrap();
    assert_eq!(report.next_lsn, 2);
    wal.close().unwrap();
}
