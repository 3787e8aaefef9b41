//! `repair` for a whole store: works out from every good copy (the snapshots and the log) what
//! a repair can keep, and never discards an event that a good snapshot still holds.
//!
//! Two cases:
//! * **All damage lies among records the newest good snapshot holds** (lost redundancy): the
//!   store already opens from that snapshot. Repair opens it once as a writer (which seals a
//!   damaged last segment), takes a fresh snapshot so that every damaged segment is covered
//!   whole, and moves those segments, with every segment before them, to `wal/quarantine/`.
//!   No event is lost, and `verify` is clean afterwards.
//! * **Damage after the newest good snapshot**: the log is cut at its last good record
//!   (`wal::repair`, which copies what it cuts to quarantine first). If the newest good
//!   snapshot reaches past the cut, the log goes on at the record after that snapshot (a new,
//!   empty segment), so the store opens with the snapshot's state rather than being refused as
//!   "snapshot ahead of the log". What is lost is exactly the records after both the cut and
//!   the snapshot; the dry run counts them and names their tasks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::recovery::{snapshot_dir, wal_dir};
use super::{Store, StoreOptions, snapshot};
use crate::error::Result;
use crate::wal::{Lsn, StdStorage, Storage};

/// What [`repair`] did, or with `dry_run` would do.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct StoreRepairReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// `none` (no damage), `quarantine` (damage only among snapshot-held records), `cut`, or
    /// `resume` (no damage, but the log ends before the newest good snapshot: an interrupted
    /// earlier repair).
    pub action: &'static str,
    /// The LSN of the newest good snapshot (0: none).
    pub snapshot_lsn: Lsn,
    /// Whole segments moved (or to move) to quarantine: (from, to). For `quarantine`.
    pub segments_quarantined: Vec<(PathBuf, PathBuf)>,
    /// The log's cut, for `cut`.
    pub cut: Option<crate::wal::CutPoint>,
    /// Files the damaged bytes were copied to, for `cut`.
    pub files_quarantined: Vec<PathBuf>,
    /// Bytes copied to quarantine, for `cut`.
    pub bytes_quarantined: u64,
    /// Acknowledged events (readable records) that the repair loses: after the cut and after
    /// the newest good snapshot.
    pub events_lost: u64,
    /// The LSNs of those events, first and last.
    pub lost_lsns: Option<(Lsn, Lsn)>,
    /// The tasks those events belong to.
    pub tasks_losing_events: Vec<String>,
    /// The new segment the log goes on in after a cut below the snapshot.
    pub resumed_at: Option<Lsn>,
}

/// Repairs the store in `dir` (a dry run unless `dry_run` is false). Takes the write lock.
pub fn repair(dir: &Path, dry_run: bool) -> Result<StoreRepairReport> {
    repair_with_storage(Arc::new(StdStorage), dir, dry_run)
}

testing_pub! {
/// [`repair`] over any storage.
fn repair_with_storage(
    storage: Arc<dyn Storage>,
    dir: &Path,
    dry_run: bool,
) -> Result<StoreRepairReport> {
    let mut report = StoreRepairReport {
        dry_run,
        action: "none",
        ..Default::default()
    };
    let wal = wal_dir(dir);
    let found = crate::wal::verify_with_storage(&*storage, &wal)?;
    report.snapshot_lsn = newest_good_snapshot(&*storage, dir);
    let covered = report.snapshot_lsn;
    let segs = crate::wal::list_segments(&*storage, &wal)?;
    let wholly_covered = |file: &Path| {
        let mut it = segs.iter().skip_while(|(_, p)| p != file);
        it.next().is_some() && it.next().is_some_and(|(next, _)| *next <= covered + 1)
    };
    let damage: Vec<_> = found.problems.iter().filter(|p| !p.torn_tail).collect();
    if damage.is_empty() {
        if covered > 0 && found.next_lsn <= covered {
            // The log ends before the newest good snapshot (an earlier cut, interrupted before
            // the log was resumed): resume it after the snapshot.
            report.action = "resume";
            report.resumed_at = Some(covered + 1);
            if !dry_run {
                crate::wal::repair::resume_at(&*storage, &wal, covered + 1, 64 << 20)?;
            }
        }
        return Ok(report);
    }
    let all_covered = covered > 0
        && damage
            .iter()
            .all(|p| wholly_covered(&p.file) || p.lsn.is_some_and(|l| l <= covered));
    if all_covered {
        report.action = "quarantine";
        let files: BTreeSet<PathBuf> = damage.iter().map(|p| p.file.clone()).collect();
        match quarantine_covered(&storage, dir, dry_run, report.clone(), &files) {
            // Damage the walk did not reach (after the first problem of a segment) can still
            // stop the writer's open: then it is a cut after all.
            Err(e) if e.is_corruption() => {}
            other => return other,
        }
    }
    report.action = "cut";
    cut(&*storage, dir, dry_run, report)
}
}

/// The LSN of the newest snapshot that reads back whole (0: none).
fn newest_good_snapshot(storage: &dyn Storage, dir: &Path) -> Lsn {
    snapshot::list(storage, &snapshot_dir(dir))
        .unwrap_or_default()
        .into_iter()
        .find(|f| snapshot::read_checked(storage, &f.path).is_ok_and(|s| s.applied_lsn == f.lsn))
        .map_or(0, |f| f.lsn)
}

fn quarantine_covered(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    dry_run: bool,
    mut report: StoreRepairReport,
    damaged: &BTreeSet<PathBuf>,
) -> Result<StoreRepairReport> {
    let wal = wal_dir(dir);
    if !dry_run {
        // A writer open seals a damaged last segment; a snapshot then covers every segment
        // but the new active one.
        let store = Store::open_with(
            dir,
            StoreOptions::new()
                .storage(storage.clone())
                .preallocate(false)
                // Keep every snapshot: pruning after this snapshot would cut the log below
                // the oldest kept one and delete damaged segments outright, instead of moving
                // them to the quarantine an operator can inspect. The next ordinary
                // snapshot prunes as usual.
                .snapshots_kept(usize::MAX)
                .interrupted_policy(super::InterruptedPolicy::Leave),
        )?;
        store.snapshot()?;
        store.close()?;
        report.snapshot_lsn = newest_good_snapshot(&**storage, dir);
    }
    let segs = crate::wal::list_segments(&**storage, &wal)?;
    // Keep from the segment after the last damaged one.
    let last_damaged = segs.iter().rposition(|(_, p)| damaged.contains(p));
    let keep_first = match last_damaged.and_then(|i| segs.get(i + 1)) {
        Some((first, _)) => *first,
        // The damage is in the last segment (a dry run: the writer open would seal it): all
        // segments before the one the writer will create go.
        None => segs.last().map_or(1, |(f, _)| *f).max(1),
    };
    if dry_run {
        report.segments_quarantined = segs
            .iter()
            .filter(|(f, p)| *f < keep_first || damaged.contains(p))
            .map(|(_, p)| {
                (
                    p.clone(),
                    wal.join("quarantine")
                        .join(p.file_name().unwrap_or_default()),
                )
            })
            .collect();
        return Ok(report);
    }
    report.segments_quarantined =
        crate::wal::repair::quarantine_before(&**storage, &wal, keep_first, false)?;
    Ok(report)
}

fn cut(
    storage: &dyn Storage,
    dir: &Path,
    dry_run: bool,
    mut report: StoreRepairReport,
) -> Result<StoreRepairReport> {
    let wal = wal_dir(dir);
    let plan = crate::wal::repair_with_storage(storage, &wal, true)?;
    let Some(cut) = plan.cut.clone() else {
        return Ok(report);
    };
    let keep = cut.last_good_lsn.max(report.snapshot_lsn);
    let lost = crate::wal::repair::records_above(storage, &wal, keep)?;
    let mut tasks = BTreeSet::new();
    for (lsn, bytes) in &lost {
        if let Ok(super::record::Record::Event(e)) = super::record::decode(*lsn, bytes) {
            tasks.insert(e.task_id);
        }
    }
    report.events_lost = lost.len() as u64;
    report.lost_lsns = lost.first().zip(lost.last()).map(|(a, b)| (a.0, b.0));
    report.tasks_losing_events = tasks.into_iter().collect();
    report.cut = Some(cut.clone());
    report.files_quarantined = plan.files_quarantined;
    report.bytes_quarantined = plan.bytes_quarantined;
    if report.snapshot_lsn > cut.last_good_lsn {
        report.resumed_at = Some(report.snapshot_lsn + 1);
    }
    if dry_run {
        return Ok(report);
    }
    let done = crate::wal::repair_with_storage(storage, &wal, false)?;
    report.files_quarantined = done.files_quarantined;
    if let Some(next) = report.resumed_at {
        crate::wal::repair::resume_at(storage, &wal, next, 64 << 20)?;
    }
    Ok(report)
}
