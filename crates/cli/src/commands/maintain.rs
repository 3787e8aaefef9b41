//! Maintenance: cleanup (retention), snapshot, compact; directly or through a server.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tasklog::store::{snapshot_dir, wal_dir};

use tasklog::TaskState;
use tasklog::store::{CleanupAge, CleanupRule};

use super::{Ctx, close};
use crate::args::CleanupByArg;
use crate::output::bytes;

/// `cleanup --older-than DAYS`.
pub fn cleanup(
    ctx: &Ctx,
    out: &mut dyn Write,
    days: f64,
    states: &[TaskState],
    by: CleanupByArg,
) -> anyhow::Result<()> {
    let age = Duration::from_secs_f64(days * 86_400.0);
    // Without --state and --by, exactly the rule scripts know: every terminal state, by finish.
    let plain = states.is_empty() && by == CleanupByArg::Finished;
    let removed = match &ctx.remote {
        Some(remote) => {
            #[derive(Deserialize)]
            struct Removed {
                removed: u64,
            }
            // Whole seconds: the route takes an integer.
            let mut body = json!({ "older_than_secs": age.as_secs() });
            if !plain {
                body["states"] = json!(
                    rule_states(states)
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                );
                body["by"] = json!(match by {
                    CleanupByArg::Finished => "finished",
                    CleanupByArg::LastRun => "last_run",
                });
            }
            remote
                .post::<Removed>("/v1/cleanup", &Vec::new(), &body)?
                .removed
        }
        None => {
            let store = ctx.open_write()?;
            let removed = if plain {
                store.cleanup(age)
            } else {
                let rule = CleanupRule::default()
                    .states(rule_states(states))
                    .older_than(age)
                    .age(match by {
                        CleanupByArg::Finished => CleanupAge::Finished,
                        CleanupByArg::LastRun => CleanupAge::LastRun,
                    });
                store.cleanup_by(&rule)
            };
            close(store)?;
            removed? as u64
        }
    };
    let when = match by {
        CleanupByArg::Finished => "finished",
        CleanupByArg::LastRun => "last ran",
    };
    writeln!(
        out,
        "removed {removed} terminal task(s) that {when} more than {days} day(s) ago (their history is kept)"
    )?;
    Ok(())
}

/// The states of a rule: those given, else every terminal state.
fn rule_states(states: &[TaskState]) -> Vec<TaskState> {
    if states.is_empty() {
        vec![
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Cancelled,
            TaskState::Discarded,
        ]
    } else {
        states.to_vec()
    }
}

/// A snapshot as `POST /v1/snapshot` and `POST /v1/compact` answer it
/// (`tasklog::store::SnapshotInfo`).
#[derive(Deserialize)]
struct Snapshot {
    path: PathBuf,
    lsn: u64,
    bytes: u64,
    #[serde(default)]
    segments_removed: usize,
}

/// A snapshot written directly.
fn snapshot_direct(ctx: &Ctx) -> anyhow::Result<Snapshot> {
    let store = ctx.open_write()?;
    let info = store.snapshot();
    close(store)?;
    let info = info?;
    Ok(Snapshot {
        path: info.path,
        lsn: info.lsn,
        bytes: info.bytes,
        segments_removed: info.segments_removed,
    })
}

/// `snapshot`.
pub fn snapshot(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<()> {
    let info = match &ctx.remote {
        Some(remote) => remote.post("/v1/snapshot", &Vec::new(), &json!({}))?,
        None => snapshot_direct(ctx)?,
    };
    writeln!(
        out,
        "snapshot {} written: LSN {}, {}; {} log segment(s) removed",
        info.path.display(),
        info.lsn,
        bytes(info.bytes),
        info.segments_removed
    )?;
    Ok(())
}

/// `POST /v1/compact`'s answer: the snapshot and every file removed.
#[derive(Deserialize)]
struct Compacted {
    snapshot: Snapshot,
    #[serde(default)]
    removed: Vec<RemovedFile>,
}

#[derive(Deserialize)]
struct RemovedFile {
    path: PathBuf,
    bytes: u64,
}

/// `compact`: a snapshot now, which prunes old snapshots and the log segments the oldest kept
/// snapshot covers. Prints every file removed.
pub fn compact(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<()> {
    let (info, gone): (Snapshot, Vec<(PathBuf, u64)>) = match &ctx.remote {
        Some(remote) => {
            let c: Compacted = remote.post("/v1/compact", &Vec::new(), &json!({}))?;
            let gone = c.removed.into_iter().map(|r| (r.path, r.bytes)).collect();
            (c.snapshot, gone)
        }
        None => {
            let before = files(&ctx.dir);
            let info = snapshot_direct(ctx)?;
            let after = files(&ctx.dir);
            let gone = before.into_iter().filter(|f| !after.contains(f)).collect();
            (info, gone)
        }
    };
    writeln!(
        out,
        "snapshot {} written: LSN {}, {}",
        info.path.display(),
        info.lsn,
        bytes(info.bytes)
    )?;
    if gone.is_empty() {
        writeln!(
            out,
            "nothing removed: every log segment still holds records newer than the oldest kept snapshot"
        )?;
        return Ok(());
    }
    let mut total = 0;
    for (path, size) in &gone {
        total += size;
        writeln!(out, "removed {} ({})", path.display(), bytes(*size))?;
    }
    writeln!(out, "removed {} file(s), {}", gone.len(), bytes(total))?;
    Ok(())
}

/// Log segments and snapshot files with their sizes.
fn files(dir: &Path) -> BTreeSet<(PathBuf, u64)> {
    let mut out = BTreeSet::new();
    for d in [wal_dir(dir), snapshot_dir(dir)] {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if meta.is_file() && !name.contains("lock") && !name.contains("LOCK") {
                out.insert((e.path(), meta.len()));
            }
        }
    }
    out
}
