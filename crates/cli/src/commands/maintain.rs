//! Maintenance: cleanup (retention), snapshot, compact.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tasklog::store::recovery::{snapshot_dir, wal_dir};

use super::{Ctx, close};
use crate::output::bytes;

/// `cleanup --older-than DAYS`.
pub fn cleanup(ctx: &Ctx, out: &mut dyn Write, days: f64) -> anyhow::Result<()> {
    let store = ctx.open_write()?;
    let age = Duration::from_secs_f64(days * 86_400.0);
    let removed = store.cleanup(age);
    close(store)?;
    writeln!(
        out,
        "removed {} terminal task(s) that finished more than {days} day(s) ago (their history is kept)",
        removed?
    )?;
    Ok(())
}

/// `snapshot`.
pub fn snapshot(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = ctx.open_write()?;
    let info = store.snapshot();
    close(store)?;
    let info = info?;
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

/// `compact`: a snapshot now, which prunes old snapshots and the log segments the oldest kept
/// snapshot covers. Prints every file removed.
pub fn compact(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = ctx.open_write()?;
    let before = files(&ctx.dir);
    let info = store.snapshot();
    close(store)?;
    let info = info?;
    let after = files(&ctx.dir);
    writeln!(
        out,
        "snapshot {} written: LSN {}, {}",
        info.path.display(),
        info.lsn,
        bytes(info.bytes)
    )?;
    let gone: Vec<&(PathBuf, u64)> = before
        .iter()
        .filter(|(p, _)| !after.iter().any(|(q, _)| q == p))
        .collect();
    if gone.is_empty() {
        writeln!(
            out,
            "nothing removed: every log segment still holds records newer than the oldest kept snapshot"
        )?;
    }
    let mut total = 0;
    for (path, size) in &gone {
        total += size;
        writeln!(out, "removed {} ({})", path.display(), bytes(*size))?;
    }
    if !gone.is_empty() {
        writeln!(out, "removed {} file(s), {}", gone.len(), bytes(total))?;
    }
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
