//! `export` and `import`, through `tasklog::export`: exports are written atomically (temp file,
//! fsync, rename) with a progress bar; imports are validated whole and applied as one atomic
//! batch.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tasklog::Store;
use tasklog::export::{
    self, ExportOptions, ExportSummary, ImportMode as LibMode, ImportOptions,
    OnConflict as LibConflict,
};

use super::read::filter_of;
use super::{Ctx, close};
use crate::args::{ExportArgs, ExportFormat, ImportArgs, ImportMode, OnConflict};
use crate::output::bytes;

/// The default export file name: `tasks_export_YYYYMMDD_HHMMSS.json` (`.csv` for CSV).
pub fn default_export_name(format: ExportFormat) -> PathBuf {
    let name = export::default_file_name();
    match format {
        ExportFormat::Json => PathBuf::from(name),
        ExportFormat::Csv => PathBuf::from(name).with_extension("csv"),
    }
}

/// `export [--out FILE] [--format json|csv] [--no-history] [filters]`.
pub fn export(ctx: &Ctx, out: &mut dyn Write, a: &ExportArgs) -> anyhow::Result<()> {
    let store = ctx.open_read()?;
    let filter = filter_of(&a.filter);
    let total = store.count(&filter)? as u64;
    let options = ExportOptions::new()
        .filter(filter)
        .include_history(!a.no_history);
    let bar = ctx.ui.bar(total, "export");
    let progress = |done: u64, _total: u64| bar.set_position(done);
    let run = |w: &mut dyn Write| -> tasklog::Result<ExportSummary> {
        match a.format {
            ExportFormat::Json => export::export_json(&store, &options, w, progress),
            ExportFormat::Csv => export::export_tasks_csv(&store, &options, w, progress),
        }
    };
    let target = a
        .out
        .clone()
        .unwrap_or_else(|| default_export_name(a.format));
    if target.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        let summary = run(&mut stdout)?;
        stdout.flush()?;
        bar.finish_and_clear();
        ctx.ui.note(format!(
            "exported {} task(s), {} event(s) to stdout",
            summary.tasks, summary.events
        ));
        return Ok(());
    }
    let summary = export::write_atomically(&target, |file| run(file))
        .with_context(|| format!("exporting to {}", target.display()))?;
    bar.finish_and_clear();
    writeln!(
        out,
        "exported {} task(s), {} event(s), {} to {}",
        summary.tasks,
        summary.events,
        bytes(summary.bytes),
        target.display()
    )?;
    Ok(())
}

/// Exports every task with its history to a JSON file in `dir`; returns the file and the
/// number of tasks.
pub fn export_to_path(store: &Store, dir: &Path) -> anyhow::Result<(PathBuf, u64)> {
    let (path, summary) = export::export_json_to_path(store, &ExportOptions::new(), Some(dir))?;
    Ok((path, summary.tasks))
}

/// `import FILE [--mode merge|replace] [--on-conflict skip|overwrite|fail] [--dry-run]`.
pub fn import(ctx: &Ctx, out: &mut dyn Write, a: &ImportArgs) -> anyhow::Result<()> {
    let (input, name): (Box<dyn Read>, String) = if a.file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), "stdin".into())
    } else {
        let f = File::open(&a.file)
            .with_context(|| format!("cannot open the import file {}", a.file.display()))?;
        (Box::new(f), a.file.display().to_string())
    };
    let options = ImportOptions::new()
        .mode(match a.mode {
            ImportMode::Merge => LibMode::Merge,
            ImportMode::Replace => LibMode::Replace,
        })
        .on_conflict(match a.on_conflict {
            OnConflict::Skip => LibConflict::Skip,
            OnConflict::Overwrite => LibConflict::Overwrite,
            OnConflict::Fail => LibConflict::Fail,
        })
        .dry_run(a.dry_run);
    let store = ctx.open_write()?;
    let bar = ctx.ui.bar(0, "import");
    let result = export::import_json(&store, input, &name, &options, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    close(store)?;
    let r = result?;
    let verb = if r.dry_run {
        "would import"
    } else {
        "imported"
    };
    writeln!(
        out,
        "{verb} {} new task(s) from {name}: {} overwritten, {} skipped, {} removed, {} history event(s) re-recorded",
        r.imported, r.overwritten, r.skipped, r.removed, r.events_replayed
    )?;
    if !r.skipped_ids.is_empty() {
        writeln!(
            out,
            "skipped (already in the store): {}",
            r.skipped_ids.join(", ")
        )?;
    }
    if r.dry_run {
        writeln!(out, "dry run: nothing was written")?;
    }
    Ok(())
}
