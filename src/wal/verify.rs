//! `verify`: a read-only, lock-free check of every segment, every CRC and LSN continuity.

use std::path::{Path, PathBuf};

use super::Lsn;
use super::recovery::{last_not_yet_written, list_segments};
use super::segment::{ScanEnd, ScanSpec, SegmentHeader, TailPolicy, scan_segment};
use super::storage::{OpenMode, StdStorage, Storage};
use crate::error::{Error, Result};

/// One problem found by `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset in the file, when known.
    pub offset: Option<u64>,
    /// The LSN expected or found there, when known.
    pub lsn: Option<Lsn>,
    /// What is wrong.
    pub reason: String,
    /// True if this is only a torn tail (an incomplete last record of the last segment), which
    /// the next writer open cuts on its own.
    pub torn_tail: bool,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment files found.
    pub segments: usize,
    /// Valid records counted (up to the first problem of each segment).
    pub records: u64,
    /// First LSN of the first segment (1 for an empty log).
    pub first_lsn: Lsn,
    /// The LSN after the last valid record.
    pub next_lsn: Lsn,
    /// Every problem, in log order.
    pub problems: Vec<Problem>,
    /// True if there are problems and all of them are a torn tail.
    pub tail_torn: bool,
}

impl VerifyReport {
    /// No problems at all.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Where the log first goes bad: (segment index, byte offset to cut at, last good LSN).
pub(crate) type Damage = (usize, u64, Lsn);

/// The result of walking a log: the report plus the first damage, for repair.
pub(crate) struct Inspection {
    pub report: VerifyReport,
    pub segments: Vec<(Lsn, PathBuf)>,
    pub damage: Option<Damage>,
}

fn problem_from(e: &Error, file: &Path, torn_tail: bool) -> Problem {
    let (offset, lsn) = match e {
        Error::Corrupt { offset, lsn, .. } => (*offset, *lsn),
        _ => (None, None),
    };
    Problem {
        file: file.to_path_buf(),
        offset,
        lsn,
        reason: e.to_string(),
        torn_tail,
    }
}

/// Checks every segment of the log in `dir`. Takes no lock and writes nothing.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    inspect(&StdStorage, dir, true).map(|i| i.report)
}

/// [`verify`] over any storage.
pub fn verify_with_storage(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport> {
    inspect(storage, dir, true).map(|i| i.report)
}

/// Walks every segment, collecting problems and the first damage point.
///
/// `verify` passes `ignore_unwritten_last`: like a read-only open, it ignores a last segment a
/// writer may still be creating ([`last_not_yet_written`]). Repair does not: it owns the lock,
/// so such a segment is a crash leftover it should cut.
pub(crate) fn inspect(
    storage: &dyn Storage,
    dir: &Path,
    ignore_unwritten_last: bool,
) -> Result<Inspection> {
    let mut segments = list_segments(storage, dir)?;
    if ignore_unwritten_last && last_not_yet_written(storage, &segments)? {
        segments.pop();
    }
    let mut report = VerifyReport {
        segments: segments.len(),
        first_lsn: 1,
        next_lsn: 1,
        ..Default::default()
    };
    let mut damage: Option<Damage> = None;
    let mut expected: Option<Lsn> = None;
    let mut prev_first: Option<Lsn> = None;
    for (i, (name_lsn, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let bytes = storage
            .open(path, OpenMode::Read)
            .and_then(|f| f.read_all())
            .map_err(|e| Error::io("read segment", path, e))?;
        let mut note = |p: Problem, d: Damage, report: &mut VerifyReport| {
            report.problems.push(p);
            damage.get_or_insert(d);
        };
        let good_before = expected.map_or(0, |e| e - 1);
        let header = match SegmentHeader::decode(&bytes, path) {
            Ok(h) => h,
            Err(e) => {
                note(
                    problem_from(&e, path, false),
                    (i, 0, good_before),
                    &mut report,
                );
                expected = None;
                prev_first = None;
                continue;
            }
        };
        if i == 0 {
            report.first_lsn = header.first_lsn;
        }
        let chain_problem = if header.first_lsn != *name_lsn {
            Some("first LSN differs from the file name".to_string())
        } else if let Some(e) = expected.filter(|e| *e != header.first_lsn) {
            Some(format!(
                "gap in LSNs: expected this segment to start at LSN {e}, it starts at {}",
                header.first_lsn
            ))
        } else {
            prev_first.filter(|p| *p != header.prev_first_lsn).map(|p| {
                format!(
                    "missing segment: the previous file starts at LSN {p}, the header names {}",
                    header.prev_first_lsn
                )
            })
        };
        if let Some(reason) = chain_problem {
            let e = Error::corrupt(path, Some(0), Some(header.first_lsn), reason);
            note(
                problem_from(&e, path, false),
                (i, 0, good_before),
                &mut report,
            );
        }
        prev_first = Some(header.first_lsn);
        let policy = if last {
            TailPolicy::Tolerate
        } else {
            TailPolicy::Strict
        };
        let spec = ScanSpec {
            file: path,
            first_lsn: header.first_lsn,
            policy,
            from: Lsn::MAX,
            limit: Lsn::MAX,
            zeros_from: u64::MAX,
            resume: None,
            marks: None,
            vouched: None,
        };
        let end = match scan_segment(&bytes, &spec, |_, _| Ok(())) {
            Ok(end) => end,
            Err(e) => {
                let salvage = ScanSpec {
                    policy: TailPolicy::Salvage,
                    ..spec
                };
                let end = scan_segment(&bytes, &salvage, |_, _| Ok(()))?;
                note(
                    problem_from(&e, path, false),
                    (i, end.data_end, end.next_lsn - 1),
                    &mut report,
                );
                ScanEnd { torn: None, ..end }
            }
        };
        if let Some(t) = &end.torn {
            let e = Error::corrupt(
                path,
                Some(t.offset),
                Some(end.next_lsn),
                format!("torn tail: {}", t.reason),
            );
            note(
                problem_from(&e, path, true),
                (i, t.offset, end.next_lsn - 1),
                &mut report,
            );
        }
        report.records += end.records;
        report.next_lsn = end.next_lsn;
        expected = Some(end.next_lsn);
    }
    report.tail_torn = !report.problems.is_empty() && report.problems.iter().all(|p| p.torn_tail);
    Ok(Inspection {
        report,
        segments,
        damage,
    })
}
