//! Helpers shared by the log tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tasklog::wal::sim::SimStorage;
use tasklog::wal::{Lsn, Wal, WalOptions};
use tasklog::{Store, StoreOptions};

/// A deterministic payload for record number `i` (its length varies with `i`).
pub fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 61) as usize + 1;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

/// Small segments, no preallocation: files end exactly at their data.
pub fn small_opts() -> WalOptions {
    WalOptions::default()
        .segment_bytes_max(4096)
        .preallocate(false)
}

pub fn sim_dir() -> PathBuf {
    PathBuf::from("/sim/log")
}

pub fn open_sim(sim: &SimStorage, opts: WalOptions) -> tasklog::Result<Wal> {
    Wal::open_with_storage(Arc::new(sim.clone()), sim_dir(), opts).map(|(w, _)| w)
}

/// Every record, in order.
pub fn all_records(wal: &Wal) -> tasklog::Result<Vec<(Lsn, Vec<u8>)>> {
    let mut out = Vec::new();
    wal.replay(1, &mut |lsn, p| {
        out.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

/// Asserts the records are exactly 1..=n with `payload(lsn)`.
pub fn assert_prefix(records: &[(Lsn, Vec<u8>)], n: u64) {
    assert_eq!(records.len() as u64, n, "record count");
    for (i, (lsn, p)) in records.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(*p, payload(*lsn), "payload of LSN {lsn}");
    }
}

/// Segment files of a directory on the sim disk, sorted.
pub fn sim_segments(sim: &SimStorage, dir: &Path) -> Vec<PathBuf> {
    use tasklog::wal::Storage;
    let mut v: Vec<PathBuf> = sim
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// The sizes of the segment files of the log in `sim_dir()`, in name order.
pub fn segment_sizes(sim: &SimStorage) -> Vec<u64> {
    sim_segments(sim, &sim_dir())
        .iter()
        .map(|p| sim.file_bytes(p).map_or(0, |b| b.len() as u64))
        .collect()
}

/// `WalStats` counts exactly what is on disk: `bytes` is the sum of the segment files,
/// `segments` their number.
pub fn assert_stats_match_files(sim: &SimStorage, wal: &Wal, what: &str) {
    let sizes = segment_sizes(sim);
    let stats = wal.stats();
    assert_eq!(
        stats.bytes,
        sizes.iter().sum::<u64>(),
        "{what}: bytes, files {sizes:?}"
    );
    assert_eq!(
        stats.segments,
        sizes.len(),
        "{what}: segments, files {sizes:?}"
    );
}

/// A store at `/db` on the simulated disk, with small segments (the simulated disk copies a
/// whole file on each fsync) and no automatic snapshots.
pub fn sim_store(sim: &SimStorage) -> Store {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap()
}

/// Inside `impl Storage for T`: every method but `open`, passed to `self.$inner`, for test
/// storages that change only how files open (a fault, a short read, a held write).
#[macro_export]
macro_rules! storage_but_open_passes_to {
    ($inner:ident) => {
        fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
            self.$inner.create_dir_all(path)
        }
        fn list_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
            self.$inner.list_dir(path)
        }
        fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
            self.$inner.rename(from, to)
        }
        fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
            self.$inner.remove_file(path)
        }
        fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
            self.$inner.sync_dir(path)
        }
        fn exists(&self, path: &std::path::Path) -> bool {
            self.$inner.exists(path)
        }
        fn try_lock(
            &self,
            path: &std::path::Path,
        ) -> std::io::Result<Option<Box<dyn tasklog::wal::StorageLock>>> {
            self.$inner.try_lock(path)
        }
        fn lock_holder(&self, path: &std::path::Path) -> Option<Vec<u8>> {
            self.$inner.lock_holder(path)
        }
    };
}

/// Inside `impl tasklog::store::Log for T`: the required methods, passed to the local `Wal` in
/// `self.$wal`, for test logs that change only a provided method (`reads_by_lsn`, `read_lsns`).
#[macro_export]
macro_rules! log_passes_to {
    ($wal:tt) => {
        fn replay(
            &self,
            from: u64,
            f: &mut dyn FnMut(u64, &[u8]) -> tasklog::Result<()>,
        ) -> tasklog::Result<u64> {
            self.$wal.replay(from, f)
        }
        $crate::log_but_replay_passes_to!($wal);
    };
}

/// [`log_passes_to!`] without `replay`, for test logs that change what a replay delivers.
#[macro_export]
macro_rules! log_but_replay_passes_to {
    ($wal:tt) => {
        fn submit(&self, payloads: &[&[u8]]) -> tasklog::Result<tasklog::wal::Ticket> {
            self.$wal.submit(payloads)
        }
        fn wait_durable(&self, lsn: u64) -> tasklog::Result<()> {
            self.$wal.wait_durable(lsn)
        }
        fn truncate_before(&self, lsn: u64) -> tasklog::Result<tasklog::wal::TruncateReport> {
            self.$wal.truncate_before(lsn)
        }
        fn sync(&self) -> tasklog::Result<()> {
            self.$wal.sync()
        }
        fn next_lsn(&self) -> u64 {
            self.$wal.next_lsn()
        }
        fn durable_lsn(&self) -> u64 {
            self.$wal.durable_lsn()
        }
        fn first_lsn(&self) -> u64 {
            self.$wal.first_lsn()
        }
        fn stats(&self) -> tasklog::wal::WalStats {
            self.$wal.stats()
        }
        fn close(&self) -> tasklog::Result<()> {
            self.$wal.close()
        }
    };
}

/// Inside `impl tasklog::wal::StorageFile for T`: the listed methods, each passed unchanged to
/// `self.$inner`, for test files that change one or two methods (a short read, a held write):
/// `storage_file_passes_to!(inner; sync_data, sync_all, set_len, len, allocate);`. Methods left
/// out of the list keep the trait's default (or the test's own body).
#[macro_export]
macro_rules! storage_file_passes_to {
    ($inner:tt; $($method:ident),+ $(,)?) => {
        $($crate::storage_file_passes_to!(@one $inner $method);)+
    };
    (@one $inner:tt read_at) => {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            self.$inner.read_at(buf, offset)
        }
    };
    (@one $inner:tt write_all_at) => {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.$inner.write_all_at(buf, offset)
        }
    };
    (@one $inner:tt sync_data) => {
        fn sync_data(&self) -> std::io::Result<()> {
            self.$inner.sync_data()
        }
    };
    (@one $inner:tt sync_all) => {
        fn sync_all(&self) -> std::io::Result<()> {
            self.$inner.sync_all()
        }
    };
    (@one $inner:tt set_len) => {
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.$inner.set_len(len)
        }
    };
    (@one $inner:tt len) => {
        fn len(&self) -> std::io::Result<u64> {
            self.$inner.len()
        }
    };
    (@one $inner:tt allocate) => {
        fn allocate(&self, len: u64) -> std::io::Result<()> {
            self.$inner.allocate(len)
        }
    };
    (@one $inner:tt preallocate) => {
        fn preallocate(&self, len: u64) -> std::io::Result<()> {
            self.$inner.preallocate(len)
        }
    };
    (@one $inner:tt zeros_from) => {
        fn zeros_from(&self) -> std::io::Result<u64> {
            self.$inner.zeros_from()
        }
    };
    (@one $inner:tt drop_cache) => {
        fn drop_cache(&self) -> std::io::Result<()> {
            self.$inner.drop_cache()
        }
    };
    (@one $inner:tt map_all) => {
        fn map_all(&self) -> std::io::Result<tasklog::wal::FileBytes> {
            self.$inner.map_all()
        }
    };
    (@one $inner:tt read_all) => {
        fn read_all(&self) -> std::io::Result<Vec<u8>> {
            self.$inner.read_all()
        }
    };
    (@one $inner:tt read_prefix) => {
        fn read_prefix(&self, max: u64) -> std::io::Result<Vec<u8>> {
            self.$inner.read_prefix(max)
        }
    };
}
