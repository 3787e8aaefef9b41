//! Opening a store: newest good snapshot, then replay of the log after it, then the
//! interrupted-work policy. Produces a [`RecoveryReport`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::options::StoreOptions;
use super::snapshot;
use super::state::State;
use crate::error::{Error, Result};
use crate::wal::{OpenReport, Wal, WalOptions};

/// What opening the store found and did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The snapshot loaded, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub snapshot_used: Option<PathBuf>,
    /// The LSN that snapshot covers (0 without one).
    pub snapshot_lsn: u64,
    /// Snapshots that were damaged and skipped, with the reason.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub snapshots_skipped: Vec<(PathBuf, String)>,
    /// Log records replayed after the snapshot.
    pub events_replayed: u64,
    /// Bytes of an incomplete record cut from the end of the log.
    pub torn_bytes_cut: u64,
    /// Where the cut was made (file, byte offset).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<serde_json::Value>>))]
    pub torn_at: Option<(PathBuf, u64)>,
    /// Damaged log segments passed over because the snapshot used holds every record they
    /// held: redundancy lost, no event lost (`tasklog repair --yes` moves them to quarantine).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub lost_redundancy: Vec<(PathBuf, String)>,
    /// The last segment, sealed at open because its covered part is damaged (the log goes on
    /// in a new segment).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub sealed_after_damage: Option<PathBuf>,
    /// Tasks found running under a process that died.
    pub tasks_interrupted: Vec<String>,
    /// What was done with them.
    pub interrupted_policy: String,
    /// Tasks after open.
    pub tasks: usize,
    /// Time taken to open, in milliseconds.
    pub duration_ms: f64,
}

/// Where the parts of a store live inside its directory.
pub fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// The snapshot directory.
pub fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// Attempts a read-only open makes before giving up, when a writer changed the files while
/// it looked (each attempt is a whole consistent read; see `recover`).
const READ_ONLY_ATTEMPTS: usize = 20;

/// Opens the log and rebuilds the state. The interrupted-work policy is applied by the caller
/// (it writes events, which needs a running store).
///
/// A read-only open holds no lock, so a writer may snapshot and compact while it reads: the
/// snapshot is read *before* the log is listed (so the log it finds reaches back to it, unless
/// compacted meanwhile), and a failure while the store's files changed under it is retried
/// rather than reported as corruption. A failure with the files unchanged is reported.
pub fn recover(dir: &Path, options: &StoreOptions) -> Result<(Wal, State, RecoveryReport)> {
    if !options.read_only {
        return recover_once(dir, options);
    }
    let storage = options.storage.as_ref();
    let mut attempt = 0;
    loop {
        let before = listing(storage, dir);
        match recover_once(dir, options) {
            Ok(out) => return Ok(out),
            Err(e) => {
                attempt += 1;
                let changed = listing(storage, dir) != before;
                let retriable = e.is_corruption()
                    || matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
                if !(changed && retriable) || attempt >= READ_ONLY_ATTEMPTS {
                    return Err(e);
                }
                tracing::debug!(error = %e, attempt, "the store changed during a read-only open; reading again");
                std::thread::sleep(std::time::Duration::from_millis(attempt as u64));
            }
        }
    }
}

/// The names of the log and snapshot files, to tell whether a writer changed them.
fn listing(storage: &dyn crate::wal::Storage, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in [wal_dir(dir), snapshot_dir(dir)] {
        out.extend(storage.list_dir(&d).unwrap_or_default());
    }
    out.sort();
    out
}

fn recover_once(dir: &Path, options: &StoreOptions) -> Result<(Wal, State, RecoveryReport)> {
    let started = Instant::now();
    let storage = options.storage.as_ref();
    if !options.read_only {
        crate::wal::create_dir_durable(storage, dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
    }
    let wal_options = WalOptions {
        segment_bytes_max: options.segment_bytes_max,
        durability: options.durability,
        preallocate: options.preallocate,
        read_only: options.read_only,
        lock_timeout: options.lock_timeout,
    };
    let mut report = RecoveryReport::default();
    // The newest good snapshot is read first, by writers too: the log may then pass over
    // damage among the records it holds (lost redundancy, not lost data; see
    // `Wal::open_covered`). Read-only opens need this order anyway (see `recover`). A writer
    // that races another one here gets `Locked` from the log below; temp files are removed
    // only once the lock is held.
    if !options.read_only {
        probe_lock(storage, dir, options.lock_timeout)?;
    }
    let state = load_snapshot(storage, &snapshot_dir(dir), &mut report)?;
    let (wal, open_report) = Wal::open_covered(
        options.storage.clone(),
        wal_dir(dir),
        wal_options,
        state.applied_lsn,
    )?;
    note_torn_tail(&mut report, &open_report);
    if !options.read_only {
        snapshot::remove_temp_files(storage, &snapshot_dir(dir))?;
        remove_backup_temp(storage, dir)?;
    }
    let mut state = state;
    check_snapshot_fits_log(&wal, &report, dir)?;
    let from = state.applied_lsn.saturating_add(1);
    // NOTE: a snapshot's tasks are indexed in one bulk build as it loads, and the records
    // after it are few: keep those indexes up through the replay. Suspending them here (as before) dropped and
    // rebuilt every index, a quarter of a snapshot open's time (perf, docs/benchmarks.md #20).
    // From the log alone, one bulk build after the replay is cheaper than keeping them up.
    let from_log_only = report.snapshot_used.is_none();
    if from_log_only {
        state.suspend_indexes();
    }
    // NOTE: a read-only open holds no lock, and a writer in another process may compact the
    // log under it at any time: it keeps histories in the log only when its log holds every
    // segment open (`Wal::pins_segments`), so that a removed segment stays readable to it.
    state.histories_in_log = !options.read_only || wal.pins_segments();
    state.reserve(ids_to_reserve(from, wal.next_lsn()));
    report.events_replayed = wal.replay(from, &mut |lsn, bytes| state.apply_record(lsn, bytes))?;
    if from_log_only {
        state.rebuild_indexes();
    }
    report.lost_redundancy = wal.covered_damage();
    state.records_since_snapshot = report.events_replayed;
    state.shrink_histories();
    report.tasks = state.len();
    report.duration_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((wal, state, report))
}

/// Room for new task ids to make before replaying the records `from..next`: a fifth of them
/// (a task's life is a submit, a start and an end, and most report progress), at most
/// `IDS_RESERVED_MAX`. Growing the id table and the slots as a replay met new ids rehashed
/// every id at each doubling, one cache miss each (7 % of a W4 log open). An overestimate
/// costs about 5 bytes per id never made; a store with more ids than that (tasks of fewer
/// records) grows the table for the rest as it replays.
fn ids_to_reserve(from: u64, next: u64) -> usize {
    usize::try_from(next.saturating_sub(from) / 5)
        .unwrap_or(IDS_RESERVED_MAX)
        .min(IDS_RESERVED_MAX)
}

/// The most ids a replay reserves room for up front (about 10 MiB of id table); past it, the
/// table grows as it fills.
const IDS_RESERVED_MAX: usize = 1 << 21;

/// Rebuilds the state over a caller-supplied log (`StoreOptions::open_with_log`): the same
/// steps as `recover_once` (newest good snapshot, then the log's records after it), with the
/// store directory's own lock (`<dir>/LOCK`) in place of the local log's. Returns the log
/// wrapped so that closing it releases that lock.
pub(crate) fn recover_over(
    dir: &Path,
    options: &StoreOptions,
    log: std::sync::Arc<dyn super::Log>,
) -> Result<(super::log::LockedLog, State, RecoveryReport)> {
    let started = Instant::now();
    let storage = options.storage.as_ref();
    // A local log here would be silently ignored: its records are not in `log`.
    if storage.exists(&wal_dir(dir)) {
        return Err(Error::InvalidInput {
            at: Some(wal_dir(dir).display().to_string()),
            reason: "the directory holds a local log; a store over a caller-supplied log keeps only snapshots and its lock there".into(),
        });
    }
    let mut lock = None;
    if !options.read_only {
        crate::wal::create_dir_durable(storage, dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let lock_file = super::log::lock_path(dir);
        lock = Some(crate::wal::lock::acquire(
            storage,
            dir,
            &lock_file,
            options.lock_timeout,
        )?);
    }
    let mut report = RecoveryReport::default();
    if !options.read_only {
        snapshot::remove_temp_files(storage, &snapshot_dir(dir))?;
    }
    // Also for a read-only open (a replica following a writer elsewhere): a log cut below its
    // snapshots leaves it nothing else to start from. Written under a temp name of its own,
    // then renamed: nothing half-written is ever a snapshot.
    fetch_kept_snapshot(storage, &snapshot_dir(dir), log.as_ref());
    let mut state = load_snapshot(storage, &snapshot_dir(dir), &mut report)?;
    check_snapshot_fits_log(log.as_ref(), &report, dir)?;
    let from = state.applied_lsn.saturating_add(1);
    // As over the local log: a snapshot's indexes are kept up through the few records after
    // it; from the log alone, one bulk build after the replay.
    let from_log_only = report.snapshot_used.is_none();
    if from_log_only {
        state.suspend_indexes();
    }
    // As over the local log: positions only for a writer, and only if the log reads them.
    state.histories_in_log = !options.read_only && log.reads_by_lsn();
    state.reserve(ids_to_reserve(from, log.next_lsn()));
    report.events_replayed = log.replay(from, &mut |lsn, bytes| state.apply_record(lsn, bytes))?;
    if from_log_only {
        state.rebuild_indexes();
    }
    state.records_since_snapshot = report.events_replayed;
    state.shrink_histories();
    report.tasks = state.len();
    report.duration_ms = started.elapsed().as_secs_f64() * 1e3;
    let log = super::log::LockedLog {
        log,
        lock: parking_lot::Mutex::new(lock),
    };
    Ok((log, state, report))
}

/// Fails fast with `Locked` when another writer holds the log, before a snapshot is loaded for
/// nothing. Only a probe: the lock is taken for real (and kept) by `Wal::open_covered`.
///
/// NOTE: the file name must match the log's own lock file (`wal/LOCK`, docs/format.md).
fn probe_lock(
    storage: &dyn crate::wal::Storage,
    dir: &Path,
    timeout: std::time::Duration,
) -> Result<()> {
    let wal = wal_dir(dir);
    if !storage.exists(&wal) {
        return Ok(());
    }
    let lock_file = wal.join("LOCK");
    // Waits as long as the options allow, so that a writer queued behind another does not
    // load a snapshot only to be refused; the log's open below waits again if another writer
    // slipped in between.
    match crate::wal::lock::acquire(storage, &wal, &lock_file, timeout) {
        Ok(_probe) => Ok(()),
        Err(e @ Error::Locked { .. }) => Err(e),
        // Let the log's own open report it.
        Err(_) => Ok(()),
    }
}

/// Removes the manifest temp file an interrupted backup left (a backup directory opened as a
/// store by a writer). The backup stays incomplete: only `BACKUP` makes it one.
fn remove_backup_temp(storage: &dyn crate::wal::Storage, dir: &Path) -> Result<()> {
    let tmp = dir.join(format!("{}.tmp", super::backup::MANIFEST));
    if storage.exists(&tmp) {
        storage
            .remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(())
}

fn note_torn_tail(report: &mut RecoveryReport, open: &OpenReport) {
    report.torn_bytes_cut = open.torn_bytes_cut;
    report.torn_at.clone_from(&open.torn_at);
    report.lost_redundancy.clone_from(&open.covered_damage);
    report
        .sealed_after_damage
        .clone_from(&open.sealed_after_damage);
}

/// Loads the newest snapshot that checks out; damaged ones are skipped with a warning.
fn load_snapshot(
    storage: &dyn crate::wal::Storage,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<State> {
    for file in snapshot::list(storage, dir)? {
        let read = snapshot::read(storage, &file.path).and_then(|state| {
            // The name orders the snapshots and decides which log segments may go: a header
            // that disagrees with it is not to be trusted.
            if state.applied_lsn == file.lsn {
                Ok(state)
            } else {
                Err(Error::corrupt(
                    &file.path,
                    None,
                    Some(state.applied_lsn),
                    format!(
                        "the header says LSN {}, the file name LSN {}",
                        state.applied_lsn, file.lsn
                    ),
                ))
            }
        });
        match read {
            Ok(state) => {
                report.snapshot_used = Some(file.path);
                report.snapshot_lsn = state.applied_lsn;
                return Ok(state);
            }
            Err(e) => {
                tracing::warn!(snapshot = %file.path.display(), error = %e, "damaged snapshot skipped, falling back to an older one");
                report.snapshots_skipped.push((file.path, e.to_string()));
            }
        }
    }
    Ok(State::default())
}

/// The name a snapshot fetched from beside the log is written under until it is complete: a
/// snapshot temp name (an interrupted fetch is removed by the next writer's open), unique per
/// fetch (two read-only opens may fetch at once).
fn fetched_temp_name() -> String {
    format!("snap-fetched-{:016x}.snap.tmp", fastrand::u64(..))
}

/// Puts the newest snapshot kept beside the log into `snaps`, when it is newer than every
/// local one (`Log::fetch_snapshot`). A failure is logged, never fatal: the open goes on with
/// the local snapshots, and a log cut below them is then refused by `check_snapshot_fits_log`.
fn fetch_kept_snapshot(storage: &dyn crate::wal::Storage, snaps: &Path, log: &dyn super::Log) {
    let fetched = (|| -> Result<Option<u64>> {
        let newest_local = snapshot::list(storage, snaps)?.first().map_or(0, |f| f.lsn);
        crate::wal::create_dir_durable(storage, snaps)
            .map_err(|e| Error::io("create directory", snaps, e))?;
        let tmp = snaps.join(fetched_temp_name());
        let Some(lsn) = log.fetch_snapshot(newest_local, &tmp)? else {
            return Ok(None);
        };
        if lsn <= newest_local {
            let _ = storage.remove_file(&tmp);
            return Ok(None);
        }
        let to = snaps.join(snapshot::file_name(lsn));
        storage
            .rename(&tmp, &to)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        storage
            .sync_dir(snaps)
            .map_err(|e| Error::io("fsync directory", snaps, e))?;
        Ok(Some(lsn))
    })();
    match fetched {
        Ok(Some(lsn)) => tracing::info!(lsn, "snapshot fetched from beside the log"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "no snapshot fetched from beside the log; opening with the local ones");
        }
    }
}

/// The log must continue exactly where the snapshot ends: no gap below, nothing missing above.
fn check_snapshot_fits_log(
    wal: &dyn super::Log,
    report: &RecoveryReport,
    dir: &Path,
) -> Result<()> {
    let first = wal.first_lsn();
    let next = wal.next_lsn();
    let snap = report.snapshot_lsn;
    if first > snap.saturating_add(1) {
        let what = if report.snapshot_used.is_some() {
            "the newest usable snapshot"
        } else {
            "no usable snapshot"
        };
        return Err(Error::corrupt(
            wal_dir(dir),
            None,
            Some(snap.saturating_add(1)),
            format!(
                "the log starts at LSN {first} but {what} covers only up to LSN {snap}: records {}..{first} are missing",
                snap.saturating_add(1)
            ),
        ));
    }
    if snap >= next && snap > 0 {
        return Err(Error::corrupt(
            wal_dir(dir),
            None,
            Some(snap),
            format!(
                "snapshot covers LSN {snap} but the log ends before LSN {next}: acknowledged records are missing from the log"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{IDS_RESERVED_MAX, ids_to_reserve};

    /// A replay reserves a fifth of its records as ids, never more than the cap, and nothing
    /// for an empty or inverted range.
    #[test]
    fn a_replay_reserves_a_fifth_of_its_records_as_ids() {
        assert_eq!(ids_to_reserve(1, 1_000_001), 200_000);
        assert_eq!(ids_to_reserve(1, 1), 0);
        assert_eq!(ids_to_reserve(10, 1), 0);
        assert_eq!(ids_to_reserve(1, u64::MAX), IDS_RESERVED_MAX);
    }
}
