//! Goal: pin the log-level findings of the outside durability review (issue #24): a roll
//! whose new segment header was torn (6) leaves a log that opens without `repair`, losing no
//! record.
//!
//! Method: a log on the simulated disk rolled over a few segments, then a last segment is
//! added as a crash in the middle of `create_segment` leaves it: shorter than a header, or a
//! header that does not check out followed by zeros (preallocated space). Also: a reopen after a
//! failed fsync does not trust the page cache (1), and the active segment is never
//! memory-mapped (10, through a storage that records every map).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{all_records, assert_prefix, open_sim, payload, sim_dir, sim_segments, small_opts};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{FileBytes, OpenMode, Storage, StorageFile, StorageLock, Wal};

/// A closed log of `n` records over several segments; returns the disk and the path the next
/// segment would get.
fn rolled_log(n: u64) -> (SimStorage, PathBuf) {
    let sim = SimStorage::new(1);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=n {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    drop(wal);
    assert!(sim_segments(&sim, &sim_dir()).len() >= 2);
    (sim, sim_dir().join(format!("{:020}.seg", n + 1)))
}

fn reopens_with_every_record(sim: &SimStorage, n: u64, what: &str) {
    let wal = open_sim(sim, small_opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_prefix(&all_records(&wal).unwrap(), n);
    assert_eq!(wal.append(&payload(n + 1)).unwrap(), n + 1, "{what}");
    wal.close().unwrap();
    let wal = open_sim(sim, small_opts()).unwrap();
    assert_prefix(&all_records(&wal).unwrap(), n + 1);
}

#[test]
fn a_last_segment_shorter_than_its_header_is_an_unfinished_roll() {
    for len in [1, 7, 20, 47] {
        let (sim, next) = rolled_log(200);
        // The first bytes of a header (magic and more): the write was torn.
        let last = sim_segments(&sim, &sim_dir()).pop().unwrap();
        let header = sim.file_bytes(&last).unwrap();
        sim.put_file(&next, header[..len].to_vec());
        reopens_with_every_record(&sim, 200, &format!("{len} header bytes"));
    }
}

#[test]
fn a_torn_header_followed_by_zeros_is_an_unfinished_roll() {
    let (sim, next) = rolled_log(200);
    let last = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let mut bytes = sim.file_bytes(&last).unwrap()[..48].to_vec();
    // The second half of the header never landed; the preallocated space is zeros.
    bytes[24..].fill(0);
    bytes.resize(4096, 0);
    sim.put_file(&next, bytes);
    reopens_with_every_record(&sim, 200, "torn header");
}

#[test]
fn a_damaged_header_in_front_of_records_is_still_corruption() {
    let (sim, _) = rolled_log(200);
    let last = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let mut bytes = sim.file_bytes(&last).unwrap();
    bytes[30] ^= 0xff;
    sim.put_file(&last, bytes);
    let err = open_sim(&sim, small_opts()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

/// Finding 1: an fsync fails (the simulated disk does what Linux does: the pages become clean,
/// new in the cache, old on the disk). Reopening in the same boot must not trust the cached
/// record that never reached the disk: it is not replayed, a new record takes its LSN, and a
/// power cut after that new record was acknowledged loses nothing acknowledged.
#[test]
fn a_reopen_after_a_failed_fsync_does_not_trust_the_cache() {
    for preallocate in [false, true] {
        let sim = SimStorage::new(7);
        let opts = small_opts().preallocate(preallocate);
        let wal = open_sim(&sim, opts.clone()).unwrap();
        for i in 1..=5 {
            wal.append(&payload(i)).unwrap();
        }
        sim.fail_nth_sync(1);
        assert!(wal.append(&payload(6)).is_err(), "the fsync failed");
        drop(wal);
        let wal = open_sim(&sim, opts.clone()).unwrap();
        let seen = all_records(&wal).unwrap();
        assert_eq!(
            seen.len(),
            5,
            "preallocate {preallocate}: replayed a record that never reached the disk"
        );
        assert_eq!(wal.append(b"after").unwrap(), 6);
        drop(wal);
        let image = sim.crash();
        let wal =
            open_sim(&image, opts).unwrap_or_else(|e| panic!("preallocate {preallocate}: {e}"));
        let seen = all_records(&wal).unwrap();
        assert_prefix(&seen[..5], 5);
        assert_eq!(seen.get(5).map(|r| r.1.as_slice()), Some(&b"after"[..]));
    }
}

/// A storage that records which files were memory-mapped.
#[derive(Debug, Clone)]
struct MapSpy {
    sim: SimStorage,
    mapped: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

#[derive(Debug)]
struct SpyFile {
    inner: Box<dyn StorageFile>,
    path: PathBuf,
    mapped: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl StorageFile for SpyFile {
    fn map_all(&self) -> std::io::Result<FileBytes> {
        self.mapped.lock().unwrap().push(self.path.clone());
        self.inner.map_all()
    }
    storage_file_passes_to!(inner; read_at, write_all_at, sync_data, sync_all, set_len, len, allocate);
}

impl Storage for MapSpy {
    fn open(&self, p: &Path, m: OpenMode) -> std::io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(SpyFile {
            inner: self.sim.open(p, m)?,
            path: p.to_path_buf(),
            mapped: self.mapped.clone(),
        }))
    }
    fn create_dir_all(&self, p: &Path) -> std::io::Result<()> {
        self.sim.create_dir_all(p)
    }
    fn list_dir(&self, p: &Path) -> std::io::Result<Vec<PathBuf>> {
        self.sim.list_dir(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        self.sim.rename(a, b)
    }
    fn remove_file(&self, p: &Path) -> std::io::Result<()> {
        self.sim.remove_file(p)
    }
    fn sync_dir(&self, p: &Path) -> std::io::Result<()> {
        self.sim.sync_dir(p)
    }
    fn exists(&self, p: &Path) -> bool {
        self.sim.exists(p)
    }
    fn try_lock(&self, p: &Path) -> std::io::Result<Option<Box<dyn StorageLock>>> {
        self.sim.try_lock(p)
    }
}

/// Finding 10: a map is shared, so writes into the active (preallocated) segment would show
/// through a live `&[u8]`, and a read error in it would raise SIGBUS. Open and replay map
/// sealed segments only; the active one is copied.
#[test]
fn the_active_segment_is_never_memory_mapped() {
    let spy = MapSpy {
        sim: SimStorage::new(9),
        mapped: Default::default(),
    };
    let opts = small_opts().preallocate(true);
    let open = || {
        Wal::open_with_storage(Arc::new(spy.clone()), sim_dir(), opts.clone())
            .unwrap()
            .0
    };
    let wal = open();
    for i in 1..=200 {
        wal.append(&payload(i)).unwrap();
    }
    assert_prefix(&all_records(&wal).unwrap(), 200);
    wal.close().unwrap();
    let wal = open();
    assert_prefix(&all_records(&wal).unwrap(), 200);
    let segments = sim_segments(&spy.sim, &sim_dir());
    let active = segments.last().unwrap();
    let mapped = spy.mapped.lock().unwrap().clone();
    assert!(!mapped.is_empty(), "sealed segments are still mapped");
    assert!(
        !mapped.contains(active),
        "the active segment {} was mapped",
        active.display()
    );
}
