//! `repair`: cuts a damaged log back to its last good record, after copying the damaged bytes
//! to the log's `quarantine/` directory (`tasklog::wal::repair`). A dry run unless `--yes`.

use std::io::Write;

use tasklog::store::wal_dir;

use super::{Ctx, require_store};
use crate::output;

/// `repair [--yes]`: a dry run unless `--yes`. Works from every good copy
/// (`tasklog::store::repair`): damage that only the newest good snapshot's records touch is
/// moved to quarantine with no event lost; otherwise the log is cut, and the plan says how many
/// acknowledged events and which tasks the cut loses.
pub fn repair(ctx: &Ctx, out: &mut dyn Write, yes: bool) -> anyhow::Result<()> {
    require_store(&ctx.dir)?;
    let wal = wal_dir(&ctx.dir);
    let r = tasklog::store::repair::repair(&ctx.dir, !yes)?;
    let verb = |dry: &'static str, done: &'static str| if r.dry_run { dry } else { done };
    match r.action {
        "quarantine" => {
            writeln!(
                out,
                "all damage lies among records the newest good snapshot (LSN {}) holds: no event is lost",
                r.snapshot_lsn
            )?;
            if r.dry_run {
                writeln!(
                    out,
                    "would take a snapshot, then move whole segments to quarantine:"
                )?;
            }
            for (from, to) in &r.segments_quarantined {
                writeln!(
                    out,
                    "{} segment {} to {}",
                    verb("would move", "moved"),
                    from.display(),
                    to.display()
                )?;
            }
        }
        "cut" => print_cut(out, &r)?,
        "resume" => {
            writeln!(
                out,
                "the log ends before the newest good snapshot (LSN {}): {} the log at LSN {}, losing nothing still readable",
                r.snapshot_lsn,
                verb("would resume", "resumed"),
                r.snapshot_lsn + 1
            )?;
        }
        _ => {
            writeln!(
                out,
                "the log in {} has no damage: nothing to repair",
                wal.display()
            )?;
            return Ok(());
        }
    }
    if r.dry_run {
        writeln!(
            out,
            "dry run: nothing changed; run `tasklog repair --yes` to do it"
        )?;
    } else {
        writeln!(out, "repaired; run `tasklog verify` to check")?;
    }
    Ok(())
}

fn print_cut(
    out: &mut dyn Write,
    r: &tasklog::store::repair::StoreRepairReport,
) -> anyhow::Result<()> {
    let verb = |dry: &'static str, done: &'static str| if r.dry_run { dry } else { done };
    let Some(cut) = &r.cut else { return Ok(()) };
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
    if let Some(next) = r.resumed_at {
        writeln!(
            out,
            "the newest good snapshot holds every record up to LSN {}: {} the log at LSN {next}, keeping them",
            r.snapshot_lsn,
            verb("would resume", "resumed")
        )?;
    }
    let lost = match r.lost_lsns {
        Some((a, b)) => format!(" (LSNs {a}..={b})"),
        None => String::new(),
    };
    writeln!(
        out,
        "{} {} acknowledged event(s){lost}; {} task(s) lose events{}{}",
        verb("would lose", "lost"),
        r.events_lost,
        r.tasks_losing_events.len(),
        if r.tasks_losing_events.is_empty() {
            ""
        } else {
            ": "
        },
        r.tasks_losing_events.join(", ")
    )?;
    Ok(())
}
