//! `verify`: a read-only check of a whole store directory, what `tasklog verify` and the
//! server's `GET /v1/verify` report.
//!
//! It takes no lock and changes nothing: it walks every log segment and checks every frame's
//! checksum and the LSN sequence (`wal::verify`), reads and checks every snapshot,
//! replays the log into a fresh state from the oldest point it can start at (the state machine
//! is re-checked on every event, keeping per task only its id and state: see `verify/replay.rs`
//! for the memory figure), then opens the store read-only unless that open would only repeat
//! the replay (no snapshot, nothing found). A torn tail (an incomplete
//! last record that was never acknowledged; the next writer cuts it) is reported but is not
//! damage.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::recovery::{snapshot_dir, wal_dir};
use super::snapshot;
use super::{Store, StoreOptions};
use crate::error::Error;
use crate::wal::{StdStorage, Wal, WalOptions};

mod replay;

use replay::{CompactState, Digest, Digester};

/// One thing found wrong.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct VerifyFinding {
    /// `log`, `snapshot`, `replay` or `open`.
    pub check: String,
    /// The file involved.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub file: Option<PathBuf>,
    /// Byte offset in it.
    pub offset: Option<u64>,
    /// The LSN involved.
    pub lsn: Option<u64>,
    /// What is wrong.
    pub reason: String,
    /// Only a torn tail (an incomplete, unacknowledged last record): not damage.
    pub torn_tail: bool,
    /// Damage among records the newest good snapshot holds: redundancy lost, no event lost.
    /// The store still opens (from that snapshot); `tasklog repair --yes` moves the damaged
    /// segments to quarantine. Still damage: `ok` is false.
    pub lost_redundancy: bool,
}

impl VerifyFinding {
    fn from_error(check: &str, e: &Error) -> Self {
        let (file, offset, lsn, reason) = match e {
            Error::Corrupt {
                file,
                offset,
                lsn,
                reason,
            } => (Some(file.clone()), *offset, *lsn, reason.clone()),
            Error::UnsupportedVersion { file, .. } => {
                (Some(file.clone()), None, None, e.to_string())
            }
            _ => (None, None, None, e.to_string()),
        };
        VerifyFinding {
            check: check.to_string(),
            file,
            offset,
            lsn,
            reason,
            torn_tail: false,
            lost_redundancy: false,
        }
    }
}

/// The log's figures.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct VerifyLogSummary {
    /// Segments.
    pub segments: usize,
    /// Records.
    pub records: u64,
    /// First LSN in the log.
    pub first_lsn: u64,
    /// The LSN the next record would get.
    pub next_lsn: u64,
    /// The last record is incomplete.
    pub tail_torn: bool,
}

/// One snapshot checked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct VerifySnapshotSummary {
    /// The file.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub file: PathBuf,
    /// The LSN it covers.
    pub lsn: u64,
    /// It reads back and checks.
    pub ok: bool,
}

/// The replay.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReplaySummary {
    /// The LSN replay started after (0: from the beginning; else a snapshot's LSN).
    pub from_snapshot_lsn: u64,
    /// Events replayed through the state machine.
    pub events_replayed: u64,
    /// Tasks after the replay.
    pub tasks: usize,
}

/// The whole `tasklog verify --json` document.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// No damage (a torn tail alone is not damage).
    pub ok: bool,
    /// The store directory.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub dir: PathBuf,
    /// The log's figures (absent when the log could not be walked).
    pub log: Option<VerifyLogSummary>,
    /// Every snapshot, newest first.
    pub snapshots: Vec<VerifySnapshotSummary>,
    /// The replay (absent when it could not start).
    pub replay: Option<VerifyReplaySummary>,
    /// Everything found wrong.
    pub problems: Vec<VerifyFinding>,
}

/// Runs every check on the store in `dir` once, calling `phase` with the name of each step as
/// it starts (for a progress display). `Err` only for I/O that stops the checks (the snapshot
/// directory cannot be listed, the log cannot be read for a reason other than damage).
pub fn verify(dir: &Path, phase: &mut dyn FnMut(&str)) -> crate::Result<VerifyReport> {
    let mut report = VerifyReport {
        ok: true,
        dir: dir.to_path_buf(),
        log: None,
        snapshots: Vec::new(),
        replay: None,
        problems: Vec::new(),
    };
    phase("checking log segments");
    check_log(dir, &mut report)?;
    let log_first = report.log.as_ref().map(|l| l.first_lsn);
    let files = snapshot::list(&StdStorage, &snapshot_dir(dir))?;
    let digester = Digester::default();
    phase("checking snapshots");
    let mut checked = check_snapshots(&files, log_first, &digester, &mut report);
    phase("replaying");
    let from = ReplayFrom {
        start: checked.start.take(),
        walked_first: log_first,
        good: &checked.good,
    };
    // The replay's states where the newest snapshot stands (its header's LSN, where an open
    // would start from it), against that snapshot's.
    let newest_lsn = checked.newest.map(|(lsn, _)| lsn);
    let replayed = replay_log(dir, from, newest_lsn, &digester);
    report.problems.extend(replayed.findings);
    report.replay = replayed.summary;
    let newest_agrees = checked
        .newest
        .is_some_and(|(_, digest)| replayed.at_newest == Some(digest));
    if open_repeats_replay(&report, newest_agrees) {
        // NOTE: a read-only open would load the newest snapshot (checked above, by a reader
        // that checks more than the open's) and replay the records after it through the same
        // state machine checks, from the same task states the replay had at that LSN (or,
        // with no snapshot, replay the same log from LSN 1). It could find nothing new, only
        // build whole tasks and histories again (an open's time and memory), so it is skipped.
        tracing::debug!("verify: the open would repeat the replay; skipped");
    } else {
        phase("opening");
        match Store::open_with(dir, StoreOptions::new().read_only(true)) {
            Ok(store) => {
                let _ = store.close();
            }
            Err(e) => report.problems.push(VerifyFinding::from_error("open", &e)),
        }
    }
    mark_lost_redundancy(dir, &checked.good, &mut report);
    report.ok = report.problems.iter().all(|p| p.torn_tail);
    Ok(report)
}

/// True when a read-only open would check nothing the replay did not: the log walk, the
/// snapshots and the replay found nothing, and either there is no snapshot file at all and the
/// replay started at LSN 1 (as the open would), or the replay reached the newest snapshot's
/// LSN with the same task states that snapshot holds (`newest_agrees`: what an open starts
/// from, the same checks on the same records after it). The open's own check that the log
/// goes on from its snapshot (`check_snapshot_fits_log`) holds then too: the replay read the
/// records on from that LSN, and it started where a snapshot or LSN 1 covered the log.
fn open_repeats_replay(report: &VerifyReport, newest_agrees: bool) -> bool {
    let clean = report.problems.is_empty() && report.replay.is_some();
    let from_log_start = report.snapshots.is_empty()
        && report.log.as_ref().is_some_and(|l| l.first_lsn <= 1)
        && report
            .replay
            .as_ref()
            .is_some_and(|r| r.from_snapshot_lsn == 0);
    clean && (from_log_start || newest_agrees)
}

/// Marks the log and replay findings that lie among the records of the newest good snapshot:
/// at an LSN it covers, or anywhere in a segment whose records it covers whole (the next
/// segment's name says where those end).
fn mark_lost_redundancy(dir: &Path, good: &[(u64, PathBuf)], report: &mut VerifyReport) {
    let Some(&(covered, _)) = good.first() else {
        return;
    };
    let segs = crate::wal::list_segments(&StdStorage, &wal_dir(dir)).unwrap_or_default();
    let wholly_covered = |file: &Path| {
        let mut it = segs.iter().skip_while(|(_, p)| p != file);
        it.next().is_some() && it.next().is_some_and(|(next, _)| *next <= covered + 1)
    };
    for p in &mut report.problems {
        if p.torn_tail || !matches!(p.check.as_str(), "log" | "replay") {
            continue;
        }
        p.lost_redundancy =
            p.file.as_deref().is_some_and(wholly_covered) || p.lsn.is_some_and(|l| l <= covered);
    }
}

/// [`verify`] beside a running writer: the writer may prune snapshots and log segments (a
/// background snapshot, a compaction) while the checks read them, which can look like a
/// missing file or a gap. So a run that found anything is run once more after a short pause,
/// and the second run is reported: real damage shows twice, a file pruned mid-check does not.
pub fn verify_beside_writer(dir: &Path) -> crate::Result<VerifyReport> {
    match verify(dir, &mut |_| {}) {
        Ok(report) if report.problems.is_empty() => Ok(report),
        _ => {
            std::thread::sleep(std::time::Duration::from_millis(200));
            verify(dir, &mut |_| {})
        }
    }
}

/// `reason` without the "corruption in FILE at ..." prefix the library's Display adds.
fn bare_reason(file: &Path, offset: Option<u64>, lsn: Option<u64>, reason: &str) -> String {
    let prefix = Error::corrupt(file, offset, lsn, "").to_string();
    reason.strip_prefix(&prefix).unwrap_or(reason).to_string()
}

fn check_log(dir: &Path, report: &mut VerifyReport) -> crate::Result<()> {
    let v = match crate::wal::verify(&wal_dir(dir)) {
        Ok(v) => v,
        Err(e) if e.is_corruption() => {
            report.problems.push(VerifyFinding::from_error("log", &e));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    report.log = Some(VerifyLogSummary {
        segments: v.segments,
        records: v.records,
        first_lsn: v.first_lsn,
        next_lsn: v.next_lsn,
        tail_torn: v.tail_torn,
    });
    for p in v.problems {
        let reason = bare_reason(&p.file, p.offset, p.lsn, &p.reason);
        report.problems.push(VerifyFinding {
            check: "log".into(),
            file: Some(p.file),
            offset: p.offset,
            lsn: p.lsn,
            reason,
            torn_tail: p.torn_tail,
            lost_redundancy: false,
        });
    }
    Ok(())
}

/// What checking the snapshots leaves for the replay.
struct CheckedSnapshots {
    /// The good snapshots as (lsn, path), newest first.
    good: Vec<(u64, PathBuf)>,
    /// The task states of the oldest good snapshot that covers the records before the log's
    /// first, when the log does not start at LSN 1 (the replay starts from it): taken as it
    /// was checked, so that no snapshot is read twice.
    start: Option<CompactState>,
    /// The newest snapshot's LSN (its header's) and the digest of its task states, when it is
    /// good: an open would start from it, so the replay's states are compared with these at
    /// that LSN.
    newest: Option<(u64, Digest)>,
}

/// Checks every snapshot in `files` (newest first), keeping what the replay needs
/// (`CheckedSnapshots`); `log_first` is the log's first LSN, when the log walk got that far.
fn check_snapshots(
    files: &[snapshot::SnapshotFile],
    log_first: Option<u64>,
    digester: &Digester,
    report: &mut VerifyReport,
) -> CheckedSnapshots {
    let mut checked = CheckedSnapshots {
        good: Vec::new(),
        start: None,
        newest: None,
    };
    // The oldest good snapshot that covers the log's start is the replay's base (see
    // `replay_log`); only that one's states are kept for it.
    let covers = |lsn: u64| log_first.is_some_and(|first| first > 1 && lsn + 1 >= first);
    let read = |i: usize, f: &snapshot::SnapshotFile| {
        read_snapshot(&f.path, i == 0, covers(f.lsn), digester)
    };
    // NOTE: two at a time, the second on another thread: a read keeps only ids and states
    // (no loaded store), so checking two at once costs little memory, and a store keeps two
    // snapshots by default (docs/benchmarks.md, "Snapshots read without a store state").
    let mut at = 0;
    for pair in files.chunks(2) {
        let reads: Vec<SnapshotRead> = std::thread::scope(|scope| {
            let second = pair.get(1).map(|f| {
                std::thread::Builder::new()
                    .name("tasklog-verify-snapshot".into())
                    .spawn_scoped(scope, move || read(at + 1, f))
            });
            let mut reads = vec![read(at, &pair[0])];
            match (second, pair.get(1)) {
                (Some(Ok(handle)), _) => reads.push(
                    handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                ),
                // No thread: read here.
                (Some(Err(_)), Some(f)) => reads.push(read(at + 1, f)),
                _ => {}
            }
            reads
        });
        for (f, r) in pair.iter().zip(reads) {
            let ok = match r.read {
                Ok(lsn) => {
                    if let Some(d) = r.digest {
                        checked.newest = Some((lsn, d));
                    }
                    if let Some(mut s) = r.start {
                        s.applied_lsn = lsn;
                        checked.start = Some(s);
                    }
                    true
                }
                Err(e) => {
                    let mut finding = VerifyFinding::from_error("snapshot", &e);
                    finding.file.get_or_insert_with(|| f.path.clone());
                    report.problems.push(finding);
                    false
                }
            };
            if ok {
                checked.good.push((f.lsn, f.path.clone()));
            }
            report.snapshots.push(VerifySnapshotSummary {
                file: f.path.clone(),
                lsn: f.lsn,
                ok,
            });
        }
        at += pair.len();
    }
    checked
}

/// One snapshot read for `check_snapshots`: its LSN or why it was refused, and what was kept
/// of it.
struct SnapshotRead {
    read: crate::Result<u64>,
    /// The digest of its task states (the newest snapshot's only).
    digest: Option<Digest>,
    /// Its task states (a snapshot the replay may start from).
    start: Option<CompactState>,
}

/// Reads the snapshot at `path` with every check (`snapshot::read_visiting`), keeping per task
/// only its id and state, and only what the replay needs: the digest when `newest`, the
/// states when `start`.
fn read_snapshot(path: &Path, newest: bool, start: bool, digester: &Digester) -> SnapshotRead {
    let mut digest = newest.then(Digest::default);
    let mut start = start.then(Vec::new);
    let read = snapshot::read_visiting(&StdStorage, path, &mut |id, state| {
        if let Some(d) = &mut digest {
            digester.add(d, id, state);
        }
        if let Some(s) = &mut start {
            s.push((Box::from(id), state));
        }
        Ok(())
    });
    SnapshotRead {
        read,
        digest,
        start: start.map(CompactState::from_snapshot),
    }
}

/// Where the replay starts when the log does not start at LSN 1: the oldest good snapshot
/// that covers the records before the log's first.
struct ReplayFrom<'a> {
    /// Its states, taken as it was checked, for the log start the walk saw (`walked_first`).
    start: Option<CompactState>,
    walked_first: Option<u64>,
    /// The good snapshots, to read the start again from when the walk saw another start.
    good: &'a [(u64, PathBuf)],
}

/// What the replay found.
struct Replayed {
    summary: Option<VerifyReplaySummary>,
    findings: Vec<VerifyFinding>,
    /// The digest of the task states when the replay stood at the newest snapshot's LSN.
    at_newest: Option<Digest>,
}

impl Replayed {
    fn failed(finding: VerifyFinding) -> Replayed {
        Replayed {
            summary: None,
            findings: vec![finding],
            at_newest: None,
        }
    }
}

/// Replays the log into a fresh state from the earliest point possible (as the CLI does),
/// keeping per task only what the state machine's checks read (see `replay`): memory grows
/// with the number of tasks, not with their histories. Takes the digest of the task states
/// where the replay stands at `newest_lsn` (also at its start).
fn replay_log(
    dir: &Path,
    from: ReplayFrom<'_>,
    newest_lsn: Option<u64>,
    digester: &Digester,
) -> Replayed {
    let options = WalOptions {
        read_only: true,
        ..WalOptions::default()
    };
    let wal = match Wal::open(wal_dir(dir), options) {
        Ok((wal, _)) => wal,
        Err(e) => return Replayed::failed(VerifyFinding::from_error("replay", &e)),
    };
    let first = wal.first_lsn();
    let mut state = if first <= 1 {
        CompactState::empty()
    } else {
        let ReplayFrom {
            start,
            walked_first,
            good,
        } = from;
        // Taken while the snapshots were checked, for the start the log walk saw; when it saw
        // none (or another), the base is read again here.
        let start = start.filter(|_| walked_first == Some(first));
        let base = start.or_else(|| {
            good.iter()
                .rev()
                .find(|(lsn, _)| lsn + 1 >= first)
                .and_then(|(_, path)| snapshot::read(&StdStorage, path).ok())
                // The full state lives only while its compact form is built.
                .map(|s| CompactState::from_state(&s))
        });
        match base {
            Some(s) => s,
            None => {
                let _ = wal.close();
                return Replayed::failed(VerifyFinding {
                    check: "replay".into(),
                    file: Some(wal_dir(dir)),
                    offset: None,
                    lsn: Some(first),
                    reason: format!(
                        "the log starts at LSN {first} and no good snapshot covers the records before it"
                    ),
                    torn_tail: false,
                    lost_redundancy: false,
                });
            }
        }
    };
    let mut replayed = Replayed {
        summary: None,
        findings: Vec::new(),
        at_newest: None,
    };
    let mut summary = VerifyReplaySummary {
        from_snapshot_lsn: state.applied_lsn,
        ..VerifyReplaySummary::default()
    };
    let take_digest = |state: &CompactState, at_newest: &mut Option<Digest>| {
        if Some(state.applied_lsn) == newest_lsn {
            *at_newest = Some(state.digest(digester));
        }
    };
    take_digest(&state, &mut replayed.at_newest);
    let result = wal.replay(state.applied_lsn + 1, &mut |lsn, bytes| {
        state.apply_record(lsn, bytes).map_err(|e| match e {
            Error::Corrupt {
                offset,
                lsn,
                reason,
                ..
            } => Error::corrupt(wal_dir(dir), offset, lsn, reason),
            Error::Codec { what, reason, .. } => Error::corrupt(
                wal_dir(dir),
                None,
                Some(lsn),
                format!("record does not decode ({what}): {reason}"),
            ),
            other => other,
        })?;
        take_digest(&state, &mut replayed.at_newest);
        Ok(())
    });
    match result {
        Ok(n) => summary.events_replayed = n,
        Err(e) => {
            replayed.at_newest = None;
            replayed
                .findings
                .push(VerifyFinding::from_error("replay", &e));
        }
    }
    summary.tasks = state.len();
    replayed.summary = Some(summary);
    let _ = wal.close();
    replayed
}
