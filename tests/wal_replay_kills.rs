//! A replay plans its segments under the log's lock, then opens them one by one without it:
//! a segment can disappear in between. `open_planned` tells the two ways apart. Removed by the
//! log's own compaction (`truncate_before`, the segment now below the log's first LSN), the
//! replay's start was compacted away: the caller asked for history the log no longer has
//! (`InvalidInput` on `from`, as when asked after the compaction). Removed by anything else
//! (an operator, another program), the segment is missing from a log that still claims it:
//! an I/O error naming the file, never taken for a compaction. Kills the five mutants of
//! `open_planned`'s test `e.kind() == NotFound && seg.first_lsn < first` (`==` → `!=`,
//! `&&` → `||`, `<` → `==` / `>` / `<=`) listed as not killed since session 10.

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{payload, sim_dir, sim_segments, small_opts};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, Storage, StorageFile, Wal};

type Hook = Box<dyn FnOnce() + Send>;

/// The simulated disk, running a hook once, just before a chosen file is opened for reading.
struct RemovedBeforeOpen {
    inner: SimStorage,
    target: PathBuf,
    hook: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for RemovedBeforeOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemovedBeforeOpen")
            .field("target", &self.target)
            .finish()
    }
}

impl Storage for RemovedBeforeOpen {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        if path == self.target && matches!(mode, OpenMode::Read) {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.inner.open(path, mode)
    }
    crate::storage_but_open_passes_to!(inner);
}

/// A log of at least three segments on `sim`, through a storage that runs `hook` when the
/// first segment is next opened for reading; the hook is given the log.
fn log_with_hook(
    sim: &SimStorage,
    hook: impl FnOnce(&Wal, &[PathBuf]) + Send + 'static,
) -> (Arc<Wal>, Vec<PathBuf>) {
    let first = sim_dir().join("00000000000000000001.seg");
    let storage = Arc::new(RemovedBeforeOpen {
        inner: sim.clone(),
        target: first,
        hook: Mutex::new(None),
    });
    let (wal, _) = Wal::open_with_storage(storage.clone(), sim_dir(), small_opts()).unwrap();
    let wal = Arc::new(wal);
    let mut i = 0u64;
    while sim_segments(sim, &sim_dir()).len() < 3 {
        wal.append(&payload(i)).unwrap();
        i += 1;
    }
    wal.sync().unwrap();
    let segments = sim_segments(sim, &sim_dir());
    let (for_hook, names) = (Arc::downgrade(&wal), segments.clone());
    *storage.hook.lock().unwrap() = Some(Box::new(move || {
        if let Some(wal) = for_hook.upgrade() {
            hook(&wal, &names);
        }
    }));
    (wal, segments)
}

/// The first LSN of a segment, from its file name.
fn first_lsn(segment: &Path) -> u64 {
    segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_segment_compacted_between_plan_and_open_is_reported_as_compacted() {
    let sim = SimStorage::new(71);
    let (wal, segments) = log_with_hook(&sim, |wal, segments| {
        let report = wal.truncate_before(first_lsn(&segments[1])).unwrap();
        assert_eq!(report.segments_removed, 1, "{report:?}");
    });
    let err = wal.replay(1, &mut |_, _| Ok(())).unwrap_err();
    match &err {
        tasklog::Error::InvalidInput { at, reason } => {
            assert_eq!(at.as_deref(), Some("from"), "{reason}");
            assert!(reason.contains("compacted away"), "{reason}");
        }
        other => panic!("expected the replay's start reported as compacted, got {other:?}"),
    }
    // The same as a replay asked for after the compaction.
    let after = wal.replay(1, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(after.to_string(), err.to_string());
    assert!(!sim.exists(&segments[0]));
}

#[test]
fn a_segment_removed_by_someone_else_is_an_io_error_naming_it() {
    let sim = SimStorage::new(72);
    let inner = sim.clone();
    let (wal, segments) = log_with_hook(&sim, move |_, segments| {
        inner.remove_file(&segments[0]).unwrap();
    });
    let err = wal.replay(1, &mut |_, _| Ok(())).unwrap_err();
    match &err {
        tasklog::Error::Io { op, path, source } => {
            assert_eq!((*op, path), ("open segment", &segments[0]), "{err}");
            assert_eq!(source.kind(), io::ErrorKind::NotFound, "{err}");
        }
        other => panic!("expected an I/O error naming the missing segment, got {other:?}"),
    }
    // The log did not move its start: the missing file is damage, not a compaction.
    assert_eq!(wal.first_lsn(), 1);
}

/// Covered damage a replay passes over is noted once per segment in `Wal::covered_damage`,
/// also when it appeared after the open (so the open's own list did not have it) and however
/// many replays pass over it. Kills the dedupe of those notes in `replay_range` (`delete !`:
/// never noted; `==` → `!=`: noted again by every replay), open since session 10.
#[test]
fn covered_damage_a_replay_passes_over_is_noted_once() {
    let sim = SimStorage::new(73);
    let wal = common::open_sim(&sim, small_opts()).unwrap();
    let mut i = 0u64;
    while sim_segments(&sim, &sim_dir()).len() < 3 {
        wal.append(&payload(i)).unwrap();
        i += 1;
    }
    wal.close().unwrap();
    drop(wal);
    let segments = sim_segments(&sim, &sim_dir());
    let second = &segments[1];
    let covered = first_lsn(second) + 3;
    let (wal, report) =
        Wal::open_covered(Arc::new(sim.clone()), sim_dir(), small_opts(), covered).unwrap();
    assert!(report.covered_damage.is_empty(), "{report:?}");
    // Damage the first record of the second segment (below `covered`) behind the log's back.
    let mut bytes = sim.file_bytes(second).unwrap();
    bytes[48 + 24 + 2] ^= 0xFF;
    sim.put_file(second, bytes);
    for round in 0..3 {
        let mut delivered = Vec::new();
        wal.replay(covered + 1, &mut |lsn, _| {
            delivered.push(lsn);
            Ok(())
        })
        .unwrap();
        assert_eq!(delivered.first(), Some(&(covered + 1)), "round {round}");
        let notes = wal.covered_damage();
        assert_eq!(notes.len(), 1, "round {round}: {notes:?}");
        assert_eq!(&notes[0].0, second, "round {round}");
    }
}
