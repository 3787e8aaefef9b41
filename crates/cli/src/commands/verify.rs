//! `verify`: a read-only check of the whole store ([`tasklog::store::verify`]: every log
//! frame's checksum and the LSN sequence, every snapshot, a replay through the state machine,
//! a read-only open). It takes no lock and changes nothing. A torn tail (an incomplete last
//! record that was never acknowledged; the next writer cuts it) is reported but is not damage.

use std::io::Write;

use tasklog::store::verify::VerifyReport;

use super::{Ctx, require_store};
use crate::exit::{CORRUPTION, Exit};
use crate::output;

/// `verify [--json]`: exit 3 when anything is damaged.
pub fn verify(ctx: &Ctx, out: &mut dyn Write, json: bool) -> anyhow::Result<()> {
    require_store(&ctx.dir)?;
    let bar = ctx.ui.bar(0, "verify");
    let report =
        tasklog::store::verify::verify(&ctx.dir, &mut |phase| bar.set_message(phase.to_string()))?;
    bar.finish_and_clear();
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

fn human(out: &mut dyn Write, r: &VerifyReport) -> std::io::Result<()> {
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
    // NOTE: one damage is usually seen by several checks (the log walk, the replay, the open
    // all stop at the same bad frame): it is reported once, naming every check that saw it.
    let mut seen: Vec<(String, Vec<&str>, &tasklog::store::verify::VerifyFinding)> = Vec::new();
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
        match seen
            .iter_mut()
            .find(|(a, _, q)| *a == at && q.reason == p.reason && q.torn_tail == p.torn_tail)
        {
            Some((_, checks, _)) => checks.push(&p.check),
            None => seen.push((at, vec![&p.check], p)),
        }
    }
    for (at, checks, p) in &seen {
        let label = if p.torn_tail {
            "torn tail"
        } else if p.lost_redundancy {
            "DAMAGE (lost redundancy: the newest good snapshot holds these records)"
        } else {
            "DAMAGE"
        };
        writeln!(out, "  {label} [{}] {at}: {}", checks.join(", "), p.reason)?;
        if !p.torn_tail {
            writeln!(
                out,
                "    fix: tasklog --dir {} repair (shows what it would cut), then repair --yes",
                r.dir.display()
            )?;
        }
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
    } else if r.problems.iter().all(|p| p.torn_tail || p.lost_redundancy) {
        writeln!(
            out,
            "DAMAGED, no event lost: the store opens from its newest good snapshot; run `tasklog repair` to see which segments a repair would move to quarantine"
        )?;
    } else {
        writeln!(
            out,
            "DAMAGED: run `tasklog repair` to see what a repair would cut"
        )?;
    }
    Ok(())
}
