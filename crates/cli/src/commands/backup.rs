//! `backup DEST [--keep N]` and `restore BACKUP DIR` (`tasklog::store::backup`).
//!
//! `backup` opens the store read-only, so it works beside a running server or any writer:
//! the copy is the store's durable state when the command starts.

use std::io::Write;
use std::path::Path;

use serde_json::json;
use tasklog::store::backup;

use super::{Ctx, close, open_read};
use crate::output::bytes;

/// `backup DEST [--keep N] [--json]`.
pub fn backup(
    ctx: &Ctx,
    out: &mut dyn Write,
    dest: &Path,
    keep: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let store = open_read(&ctx.dir)?;
    let result = match keep {
        Some(n) => {
            let keep = usize::try_from(n).unwrap_or(usize::MAX);
            backup::backup_rotate(&store, dest, keep)
                .map(|r| (r.backup, r.removed, r.interrupted_removed))
        }
        None => store.backup(dest).map(|b| (b, Vec::new(), Vec::new())),
    };
    close(store)?;
    let (info, removed, interrupted) = result?;
    if json {
        let doc = json!({
            "backup": info,
            "removed": removed,
            "interrupted_removed": interrupted,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "backed up {} task(s) up to LSN {} to {} ({}, verified)",
        info.tasks,
        info.lsn,
        info.dir.display(),
        bytes(info.snapshot_bytes)
    )?;
    for d in &removed {
        writeln!(out, "removed old backup {}", d.display())?;
    }
    for d in &interrupted {
        writeln!(out, "removed interrupted backup {}", d.display())?;
    }
    Ok(())
}

/// `restore BACKUP DIR [--json]`.
pub fn restore(out: &mut dyn Write, from: &Path, target: &Path, json: bool) -> anyhow::Result<()> {
    let info = backup::restore_into(from, target)?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "restored": info, "dir": target }))?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "restored {} task(s) up to LSN {} from {} into {} (verified)",
        info.tasks,
        info.lsn,
        from.display(),
        target.display()
    )?;
    Ok(())
}
