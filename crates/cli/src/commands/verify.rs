//! `verify`: a read-only check of the whole store.
//!
//! It takes no lock and changes nothing: it walks every log segment and checks every frame's
//! checksum and the LSN sequence (`tasklog::wal::verify`), reads and checks every snapshot, and
//! replays the log into a fresh state from the oldest point it can start at (the state machine
//! is re-checked on every event). It then opens the store read-only as `get` would. A torn tail
//! (an incomplete last record that was never acknowledged; the next writer cuts it) is reported
//! but is not damage.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tasklog::store::recovery::{snapshot_dir, wal_dir};
use tasklog::store::snapshot;
use tasklog::store::state::State;
use tasklog::wal::{StdStorage, Wal, WalOptions};
use tasklog::{Error, Store, StoreOptions};

use super::{Ctx, require_store};
use crate::exit::{CORRUPTION, Exit};
use crate::output;

/// One thing found wrong.
#[derive(Debug, Serialize)]
struct Finding {
    /// `log`, `snapshot`, `replay` or `open`.
    check: &'static str,
    file: Option<PathBuf>,
    offset: Option<u64>,
    lsn: Option<u64>,
    reason: String,
    /// Only a torn tail: not damage.
    torn_tail: bool,
}

impl Finding {
    fn from_error(check: &'static str, e: &Error) -> Self {
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
        Finding {
            check,
            file,
            offset,
            lsn,
            reason,
            torn_tail: false,
        }
    }
}

#[derive(Debug, Serialize)]
struct LogSummary {
    segments: usize,
    records: u64,
    first_lsn: u64,
    next_lsn: u64,
    tail_torn: bool,
}

#[derive(Debug, Serialize)]
struct SnapshotSummary {
    file: PathBuf,
    lsn: u64,
    ok: bool,
}

#[derive(Debug, Default, Serialize)]
struct ReplaySummary {
    /// The LSN replay started after (0: from the beginning; else a snapshot's LSN).
    from_snapshot_lsn: u64,
    events_replayed: u64,
    tasks: usize,
}

/// The whole `verify --json` document.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    dir: PathBuf,
    log: Option<LogSummary>,
    snapshots: Vec<SnapshotSummary>,
    replay: Option<ReplaySummary>,
    problems: Vec<Finding>,
}

/// `verify [--json]`: exit 3 when anything is damaged.
pub fn verify(ctx: &Ctx, out: &mut dyn Write, json: bool) -> anyhow::Result<()> {
    require_store(&ctx.dir)?;
    let bar = ctx.ui.bar(0, "verify");
    let mut report = Report {
        ok: true,
        dir: ctx.dir.clone(),
        log: None,
        snapshots: Vec::new(),
        replay: None,
        problems: Vec::new(),
    };
    bar.set_message("checking log segments");
    check_log(&ctx.dir, &mut report)?;
    bar.set_message("checking snapshots");
    let good_snapshots = check_snapshots(&ctx.dir, &mut report)?;
    bar.set_message("replaying");
    check_replay(&ctx.dir, &good_snapshots, &mut report);
    bar.set_message("opening");
    if let Err(e) = Store::open_with(&ctx.dir, StoreOptions::new().read_only(true)) {
        report.problems.push(Finding::from_error("open", &e));
    }
    bar.finish_and_clear();
    report.ok = report.problems.iter().all(|p| p.torn_tail);
    if json {
        output::json(out, &report)?;
    } else {
        human(out, &report)?;
    }
    if report.ok {
        Ok(())
    } else {
        Err(Exit::silent(CORRUPTION).into())
    }
}

/// `reason` without the "corruption in FILE at byte offset N (LSN L): " prefix that the
/// library's Display adds, since we print the location ourselves.
fn bare_reason(file: &Path, offset: Option<u64>, lsn: Option<u64>, reason: &str) -> String {
    let prefix = Error::corrupt(file, offset, lsn, "").to_string();
    reason.strip_prefix(&prefix).unwrap_or(reason).to_string()
}

fn check_log(dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let v = match tasklog::wal::verify(&wal_dir(dir)) {
        Ok(v) => v,
        Err(e) if e.is_corruption() => {
            report.problems.push(Finding::from_error("log", &e));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    report.log = Some(LogSummary {
        segments: v.segments,
        records: v.records,
        first_lsn: v.first_lsn,
        next_lsn: v.next_lsn,
        tail_torn: v.tail_torn,
    });
    for p in v.problems {
        let reason = bare_reason(&p.file, p.offset, p.lsn, &p.reason);
        report.problems.push(Finding {
            check: "log",
            file: Some(p.file),
            offset: p.offset,
            lsn: p.lsn,
            reason,
            torn_tail: p.torn_tail,
        });
    }
    Ok(())
}

/// Checks every snapshot; returns the good ones as (lsn, path), newest first.
fn check_snapshots(dir: &Path, report: &mut Report) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut good = Vec::new();
    for f in snapshot::list(&StdStorage, &snapshot_dir(dir))? {
        let ok = match snapshot::read_checked(&StdStorage, &f.path) {
            Ok(_) => true,
            Err(e) => {
                let mut finding = Finding::from_error("snapshot", &e);
                finding.file.get_or_insert_with(|| f.path.clone());
                report.problems.push(finding);
                false
            }
        };
        if ok {
            good.push((f.lsn, f.path.clone()));
        }
        report.snapshots.push(SnapshotSummary {
            file: f.path,
            lsn: f.lsn,
            ok,
        });
    }
    Ok(good)
}

/// Replays the log into a fresh state from the earliest point possible: the beginning when the
/// log still starts at LSN 1, else the oldest good snapshot the log continues. Every event goes
/// through the state machine again.
fn check_replay(dir: &Path, good_snapshots: &[(u64, PathBuf)], report: &mut Report) {
    let options = WalOptions {
        read_only: true,
        ..WalOptions::default()
    };
    let wal = match Wal::open(wal_dir(dir), options) {
        Ok((wal, _)) => wal,
        Err(e) => {
            report.problems.push(Finding::from_error("replay", &e));
            return;
        }
    };
    let first = wal.first_lsn();
    let mut summary = ReplaySummary::default();
    let mut state = if first <= 1 {
        State::default()
    } else {
        let base = good_snapshots
            .iter()
            .rev()
            .find(|(lsn, _)| lsn + 1 >= first)
            .and_then(|(_, path)| snapshot::read(&StdStorage, path).ok());
        match base {
            Some(s) => s,
            None => {
                report.problems.push(Finding {
                    check: "replay",
                    file: Some(wal_dir(dir)),
                    offset: None,
                    lsn: Some(first),
                    reason: format!(
                        "the log starts at LSN {first} and no good snapshot covers the records before it"
                    ),
                    torn_tail: false,
                });
                return;
            }
        }
    };
    summary.from_snapshot_lsn = state.applied_lsn;
    let result = wal.replay(state.applied_lsn + 1, &mut |lsn, bytes| {
        state.apply_record(lsn, bytes).map_err(|e| match e {
            Error::Corrupt {
                offset,
                lsn,
                reason,
                ..
            } => Error::corrupt(wal_dir(dir), offset, lsn, reason),
            Error::Codec { what, reason } => Error::corrupt(
                wal_dir(dir),
                None,
                Some(lsn),
                format!("record does not decode ({what}): {reason}"),
            ),
            other => other,
        })
    });
    match result {
        Ok(n) => summary.events_replayed = n,
        Err(e) => report.problems.push(Finding::from_error("replay", &e)),
    }
    summary.tasks = state.len();
    report.replay = Some(summary);
    let _ = wal.close();
}

fn human(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "store {}", r.dir.display())?;
    if let Some(l) = &r.log {
        writeln!(
            out,
            "  log: {} segment(s), {} record(s), LSN {}..{}",
            l.segments,
            l.records,
            l.first_lsn,
            l.next_lsn.saturating_sub(1)
        )?;
    }
    let bad = r.snapshots.iter().filter(|s| !s.ok).count();
    writeln!(out, "  snapshots: {} ({} damaged)", r.snapshots.len(), bad)?;
    if let Some(s) = &r.replay {
        writeln!(
            out,
            "  replay: {} event(s) from LSN {} re-checked against the state machine, {} task(s)",
            s.events_replayed,
            s.from_snapshot_lsn + 1,
            s.tasks
        )?;
    }
    for p in &r.problems {
        let mut at = String::new();
        if let Some(f) = &p.file {
            at.push_str(&f.display().to_string());
        }
        if let Some(o) = p.offset {
            at.push_str(&format!(" offset {o}"));
        }
        if let Some(l) = p.lsn {
            at.push_str(&format!(" LSN {l}"));
        }
        let label = if p.torn_tail { "torn tail" } else { "DAMAGE" };
        writeln!(out, "  {label} [{}] {at}: {}", p.check, p.reason)?;
    }
    if r.ok {
        if r.problems.is_empty() {
            writeln!(out, "OK: no damage found")?;
        } else {
            writeln!(
                out,
                "OK: only a torn tail (an unacknowledged, incomplete last record); the next write open cuts it"
            )?;
        }
    } else {
        writeln!(
            out,
            "DAMAGED: run `tasklog repair` to see what a repair would cut"
        )?;
    }
    Ok(())
}
