//! `repair`: cuts a damaged log back to its last good record, after copying the damaged bytes
//! to the log's `quarantine/` directory (`tasklog::wal::repair`). A dry run unless `--yes`.

use std::io::Write;

use tasklog::store::recovery::wal_dir;

use super::{Ctx, require_store};
use crate::output;

/// `repair [--yes]`: a dry run unless `--yes`.
pub fn repair(ctx: &Ctx, out: &mut dyn Write, yes: bool) -> anyhow::Result<()> {
    require_store(&ctx.dir)?;
    let wal = wal_dir(&ctx.dir);
    let r = tasklog::wal::repair(&wal, !yes)?;
    let Some(cut) = &r.cut else {
        writeln!(
            out,
            "the log in {} has no damage: nothing to repair",
            wal.display()
        )?;
        return Ok(());
    };
    let verb = |dry: &'static str, done: &'static str| if r.dry_run { dry } else { done };
    writeln!(
        out,
        "{} the log at {} byte offset {} (keeping records up to LSN {})",
        verb("would cut", "cut"),
        cut.file.display(),
        cut.offset,
        cut.last_good_lsn
    )?;
    for f in &r.files_quarantined {
        writeln!(
            out,
            "{} damaged bytes to {}",
            verb("would copy", "copied"),
            f.display()
        )?;
    }
    writeln!(
        out,
        "{} {} in total",
        verb("would quarantine", "quarantined"),
        output::bytes(r.bytes_quarantined)
    )?;
    for s in &r.segments_removed {
        writeln!(
            out,
            "{} segment {}",
            verb("would remove", "removed"),
            s.display()
        )?;
    }
    if r.dry_run {
        writeln!(
            out,
            "dry run: nothing changed; run `tasklog repair --yes` to do it"
        )?;
    } else {
        writeln!(
            out,
            "repaired: the log now ends at LSN {}; run `tasklog verify` to check",
            cut.last_good_lsn
        )?;
    }
    Ok(())
}
