//! Goal: each promise of online backups (`src/store/backup.rs`) that a deliberately broken
//! build used to pass (issue #23, cargo-mutants, session 14) has a test here that fails when
//! the promise is broken: a backup never holds an event the store itself could still lose.
//!
//! Method: stores on the simulated disk (`SimStorage`, whose `crash()` keeps only what was made
//! durable). The mutants each test kills are listed in docs/mutation-survivors.md
//! ("store/backup.rs (session 14)").

use std::path::Path;
use std::sync::Arc;

use tasklog::NewTask;
use tasklog::store::{Store, StoreOptions};
use tasklog::wal::Durability;
use tasklog::wal::sim::SimStorage;

fn buffered_store(sim: &SimStorage) -> Store {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .durability(Durability::Buffered)
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap()
}

/// `Store::backup` syncs the log before it writes: with `Buffered` durability (acknowledged
/// before any fdatasync) a power cut right after a backup must not leave the store behind its
/// own backup, holding fewer events than a copy that was handed out as consistent (kills the
/// deleted `!` in `if !read_only`, the sync skipped for writers).
#[test]
fn a_power_cut_after_a_backup_leaves_the_store_no_older_than_the_backup() {
    let sim = SimStorage::new(143);
    let store = buffered_store(&sim);
    for i in 0..10 {
        let id = format!("t{i}");
        store.submit(NewTask::new("job").id(&id)).unwrap();
        store.start(&id).unwrap();
    }
    let info = store.backup("/backup").unwrap();
    assert_eq!((info.lsn, info.tasks), (store.last_lsn(), 10));
    // The power is cut right after the backup, before any sync or close.
    let after = sim.crash();
    drop(store);

    let store = buffered_store(&after);
    assert!(
        store.last_lsn() >= info.lsn,
        "the store reopens at LSN {}, behind its backup at {}",
        store.last_lsn(),
        info.lsn
    );
    assert_eq!(store.len(), 10);
    // Its start survived (the open then applies the interrupted-work policy to it).
    let kinds: Vec<_> = store
        .history("t9")
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(&kinds[..2], ["created", "started"]);
    store.close().unwrap();
    let copy = StoreOptions::new()
        .storage(Arc::new(after.clone()))
        .read_only(true)
        .open(Path::new("/backup"))
        .unwrap();
    assert_eq!(copy.last_lsn(), info.lsn);
}
