//! Goal: each promise of the snapshot file layer (`src/store/snapshot.rs`) that a deliberately
//! broken build used to pass (issue #23, cargo-mutants, session 13) has a test here that fails
//! when the promise is broken: a writer's open removes the temp files of an interrupted
//! snapshot write durably and nothing else; the size limit checked before anything is
//! allocated is exact; a snapshot image cut inside its version field is damage, not a newer
//! format; a v1 image decodes in memory as it reads from its file; the fuzzing reseal repairs
//! v1 checksums as well as v2 ones; `encode_with_layout` is the image `encode` writes.
//!
//! Method: stores on the simulated disk (`SimStorage`, whose `crash()` keeps only what was made
//! durable), the v1 and v2 golden fixtures, and a storage whose files claim a length they do not
//! have (so the 64 GiB limit is tested without a 64 GiB file). The mutants each test kills are
//! listed in docs/mutation-survivors.md ("store/snapshot.rs (session 13)").

mod common;

use std::io;
use std::path::{Path, PathBuf};

use common::sim_store;
use tasklog::store::snapshot::{self, SNAPSHOT_BYTES_MAX, SNAPSHOT_HEADER_LEN};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, StdStorage, Storage, StorageFile, StorageLock};
use tasklog::{Error, NewTask, TaskState};

/// A store on `sim` with tasks "a" (completed) and "b" (pending) and one snapshot holding both;
/// closed. Returns the snapshot's path.
fn store_with_snapshot(sim: &SimStorage) -> PathBuf {
    let store = sim_store(sim);
    store.submit(NewTask::new("k").id("a")).unwrap();
    store.start("a").unwrap();
    store.complete("a", None).unwrap();
    store.submit(NewTask::new("k").id("b")).unwrap();
    let info = store.snapshot().unwrap();
    store.close().unwrap();
    info.path
}

/// `remove_temp_files`: a writer's open removes `snap-*.snap.tmp` (what an interrupted snapshot
/// write leaves) and makes the removal durable, so a power cut right after the open does not
/// bring the file back; the snapshots themselves and files of other names stay.
#[test]
fn a_writer_open_removes_snapshot_temp_files_durably_and_nothing_else() {
    let sim = SimStorage::new(23);
    let snap = store_with_snapshot(&sim);
    let dir = Path::new("/db/snapshots");
    let tmp = dir.join("snap-00000000000000000009.snap.tmp");
    let strangers = [dir.join("notes.snap.tmp"), dir.join("snap-notes.tmp")];
    sim.put_file(&tmp, b"half a snapshot".to_vec());
    for s in &strangers {
        sim.put_file(s, b"not ours".to_vec());
    }

    let store = sim_store(&sim);
    assert_eq!(
        store.recovery_report().snapshot_used.as_deref(),
        Some(&*snap)
    );
    assert!(!sim.exists(&tmp), "the writer's open left the temp file");
    // No close: the power is cut right after the open.
    let after = sim.crash();
    drop(store);
    assert!(
        !after.exists(&tmp),
        "the temp file's removal was not made durable (no fsync of the snapshot directory)"
    );
    assert!(after.exists(&snap), "the snapshot itself was removed");
    for s in &strangers {
        assert!(after.exists(s), "{} was removed", s.display());
    }
    let store = sim_store(&after);
    assert_eq!(
        store.recovery_report().snapshot_used.as_deref(),
        Some(&*snap)
    );
    assert_eq!(store.get("a").unwrap().state, TaskState::Completed);
    assert_eq!(store.get("b").unwrap().state, TaskState::Pending);
}

/// A storage whose files claim to be `len` bytes long (reads past their real end return 0).
#[derive(Debug)]
struct ClaimedLen {
    inner: SimStorage,
    len: u64,
}

#[derive(Debug)]
struct LongFile {
    inner: Box<dyn StorageFile>,
    len: u64,
}

impl StorageFile for LongFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }
    storage_file_passes_to!(inner; read_at, write_all_at, sync_data, sync_all, set_len, allocate);
}

impl Storage for ClaimedLen {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(LongFile {
            inner: self.inner.open(path, mode)?,
            len: self.len,
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        self.inner.try_lock(path)
    }
}

/// `snapshot::read` refuses a file longer than the header plus `SNAPSHOT_BYTES_MAX` as
/// `TooLarge` before reading or allocating anything, and only such a file: at exactly the
/// limit the file goes on to the header checks (here `Corrupt`: the real header's sections do
/// not add up to the claimed length).
#[test]
fn the_size_limit_refuses_one_byte_past_the_maximum_and_no_less() {
    let sim = SimStorage::new(24);
    let snap = store_with_snapshot(&sim);
    let limit = SNAPSHOT_BYTES_MAX + SNAPSHOT_HEADER_LEN as u64;

    let over = ClaimedLen {
        inner: sim.clone(),
        len: limit + 1,
    };
    match snapshot::read(&over, &snap) {
        Err(Error::TooLarge { len, max, .. }) => {
            assert_eq!((len, max), (limit + 1, SNAPSHOT_BYTES_MAX));
        }
        other => panic!("one byte over the limit: {other:?}"),
    }

    let at = ClaimedLen {
        inner: sim.clone(),
        len: limit,
    };
    match snapshot::read(&at, &snap) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (snap.clone(), Some(32)));
        }
        other => panic!("exactly at the limit: {other:?}"),
    }

    // And the file as it is reads back.
    let state = snapshot::read(&sim, &snap).unwrap();
    assert_eq!(state.len(), 2);
}

/// An image too short to hold its version (magic and part of the version field: a cut file) is
/// `Corrupt`, never `UnsupportedVersion` (which would tell the operator to upgrade tasklog).
#[test]
fn an_image_cut_inside_its_version_field_is_corrupt_not_an_unknown_version() {
    let path = Path::new("/db/snapshots/snap-00000000000000000001.snap");
    let mut image = snapshot::SNAPSHOT_MAGIC.to_vec();
    image.extend_from_slice(&snapshot::SNAPSHOT_VERSION.to_le_bytes());
    for cut in 0..image.len() {
        match snapshot::decode(path, &image[..cut]) {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!((file.as_path(), offset), (path, Some(0)), "cut at {cut}");
            }
            other => panic!("image cut at {cut}: {other:?}"),
        }
    }
}

fn fixture_snapshot(store: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(store)
        .join("snapshots");
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    snaps.sort();
    snaps.pop().unwrap()
}

/// What `snapshot::decode` makes of an image held in memory is what `snapshot::read` makes of
/// the file, for format v1 (the golden fixture) as for v2.
#[test]
fn an_image_decodes_in_memory_as_its_file_reads_v1_and_v2() {
    for store in ["store-v1-snapshot", "store-v2-snapshot"] {
        let path = fixture_snapshot(store);
        let image = std::fs::read(&path).unwrap();
        let from_file = snapshot::read(&StdStorage, &path).unwrap();
        let in_memory = snapshot::decode(&path, &image)
            .unwrap_or_else(|e| panic!("{store}: the image does not decode: {e}"));
        assert_eq!(in_memory.applied_lsn, from_file.applied_lsn, "{store}");
        assert!(!in_memory.is_empty(), "{store}");
        assert_eq!(in_memory.len(), from_file.len(), "{store}");
        // Re-encoded (as v2), both give the same bytes: the same tasks and histories.
        assert_eq!(
            snapshot::encode(&in_memory).unwrap(),
            snapshot::encode(&from_file).unwrap(),
            "{store}"
        );
    }
}

/// `reseal_for_fuzzing` recomputes the checksums of a v1 image as of a v1 one and of a v2 or
/// v3 image as of those (same header layout): an image whose
/// CRCs were zeroed decodes again after it, and an intact image is left byte for byte.
#[test]
fn resealing_restores_the_checksums_of_v1_and_v2_images() {
    // v1: header CRC at 36, body CRC at 32; v2, v3: header CRC at 60, section CRCs at 48, 52.
    for (store, crcs) in [
        ("store-v1-snapshot", &[32usize, 36][..]),
        ("store-v2-snapshot", &[48, 52, 60][..]),
        ("store-v3-snapshot", &[48, 52, 60][..]),
    ] {
        let path = fixture_snapshot(store);
        let image = std::fs::read(&path).unwrap();
        let mut same = image.clone();
        snapshot::reseal_for_fuzzing(&mut same);
        assert_eq!(same, image, "{store}: an intact image changed");

        let mut zeroed = image.clone();
        for &at in crcs {
            zeroed[at..at + 4].fill(0);
        }
        assert!(snapshot::decode(&path, &zeroed).is_err(), "{store}");
        snapshot::reseal_for_fuzzing(&mut zeroed);
        assert_eq!(zeroed, image, "{store}: the checksums were not restored");
        assert!(snapshot::decode(&path, &zeroed).is_ok(), "{store}");
    }
}

/// `encode_with_layout` gives the image `encode` gives, and a layout that places the history
/// section where the header says it is.
#[test]
fn encode_with_layout_is_the_image_encode_writes() {
    let sim = SimStorage::new(25);
    let snap = store_with_snapshot(&sim);
    let state = snapshot::read(&sim, &snap).unwrap();
    let (image, layout) = snapshot::encode_with_layout(&state, None).unwrap();
    assert_eq!(image, snapshot::encode(&state).unwrap());
    assert_eq!(image, sim.file_bytes(&snap).unwrap());
    let tasks_len = u64::from_le_bytes(image[32..40].try_into().unwrap());
    let history_len = u64::from_le_bytes(image[40..48].try_into().unwrap());
    assert_eq!(
        (layout.history_offset, layout.history_len),
        (SNAPSHOT_HEADER_LEN as u64 + tasks_len, history_len)
    );
    assert!(history_len > 0);
}
