//! `export` and `import`, through `tasklog::export` or a server: exports are written
//! atomically (temp file, fsync, rename) with a progress bar; imports are read and validated
//! whole before any store is opened for writing (a rejected import, or a dry run, never creates
//! or writes a store), then applied as one atomic batch.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use tasklog::export::{
    self, ExportOptions, ExportSummary, IMPORT_BYTES_MAX, ImportMode as LibMode, ImportOptions,
    ImportReport, OnConflict as LibConflict,
};
use tasklog::{Error, Store, StoreOptions};

use super::read::{filter_of, filter_query};
use super::{Ctx, close_before_exit};
use crate::args::{ExportArgs, ExportFormat, ImportArgs, ImportMode, OnConflict};
use crate::client::Remote;
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
    if let Some(remote) = &ctx.remote {
        return export_remote(ctx, remote, out, a);
    }
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

/// `GET /v1/tasks/count`'s answer.
#[derive(Deserialize)]
struct Count {
    count: u64,
}

/// `export` through a server: `GET /v1/export`, streamed to the file (atomically) or stdout.
fn export_remote(
    ctx: &Ctx,
    remote: &Remote,
    out: &mut dyn Write,
    a: &ExportArgs,
) -> anyhow::Result<()> {
    let filter = filter_query(&a.filter);
    let tasks = remote.get::<Count>("/v1/tasks/count", &filter)?.count;
    let mut q = filter;
    q.push((
        "format",
        match a.format {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
        }
        .to_string(),
    ));
    if a.no_history {
        q.push(("history", "false".to_string()));
    }
    let mut resp = remote.get_raw("/v1/export", &q, true)?;
    let mut body = resp.body_mut().as_reader();
    let target = a
        .out
        .clone()
        .unwrap_or_else(|| default_export_name(a.format));
    if target.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut body, &mut stdout).context("exporting to stdout")?;
        stdout.flush()?;
        ctx.ui.note(format!(
            "exported {tasks} task(s) from {} to stdout",
            remote.url()
        ));
        return Ok(());
    }
    let written = export::write_atomically(&target, |file| {
        std::io::copy(&mut body, file).map_err(|e| Error::io("write", &target, e))
    })
    .with_context(|| format!("exporting to {}", target.display()))?;
    let events = match a.format {
        ExportFormat::Json if !a.no_history => events_in(&target),
        _ => 0,
    };
    writeln!(
        out,
        "exported {tasks} task(s), {events} event(s), {} to {}",
        bytes(written),
        target.display()
    )?;
    Ok(())
}

/// History events in a JSON export file (`tasks` maps each id to its task, whose `history`
/// lists its events); 0 if it cannot be read back.
fn events_in(path: &Path) -> u64 {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        tasks: std::collections::BTreeMap<String, TaskHistory>,
    }
    #[derive(Deserialize)]
    struct TaskHistory {
        #[serde(default)]
        history: Vec<serde::de::IgnoredAny>,
    }
    let Ok(file) = File::open(path) else { return 0 };
    let doc: Result<Doc, _> = serde_json::from_reader(std::io::BufReader::new(file));
    match doc {
        Ok(d) => d.tasks.values().map(|t| t.history.len() as u64).sum(),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot count the export's events");
            0
        }
    }
}

fn import_options(a: &ImportArgs) -> ImportOptions {
    ImportOptions::new()
        .mode(match a.mode {
            ImportMode::Merge => LibMode::Merge,
            ImportMode::Replace => LibMode::Replace,
        })
        .on_conflict(match a.on_conflict {
            OnConflict::Skip => LibConflict::Skip,
            OnConflict::Overwrite => LibConflict::Overwrite,
            OnConflict::Fail => LibConflict::Fail,
        })
        .dry_run(a.dry_run)
}

/// The import document as a reader, and its name.
fn open_input(a: &ImportArgs) -> anyhow::Result<(Box<dyn Read>, String)> {
    if a.file.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin().lock()), "stdin".into()));
    }
    let f = File::open(&a.file)
        .with_context(|| format!("cannot open the import file {}", a.file.display()))?;
    Ok((Box::new(f), a.file.display().to_string()))
}

/// The whole import document (at most [`IMPORT_BYTES_MAX`] bytes) and its name, for a server.
fn read_input(a: &ImportArgs) -> anyhow::Result<(Vec<u8>, String)> {
    let (input, name) = open_input(a)?;
    let mut bytes = Vec::new();
    input
        .take(IMPORT_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() as u64 > IMPORT_BYTES_MAX {
        return Err(Error::TooLarge {
            what: "import document",
            len: bytes.len() as u64,
            max: IMPORT_BYTES_MAX,
        }
        .into());
    }
    Ok((bytes, name))
}

/// What a server's import answers: the fields of [`ImportReport`] the CLI prints.
#[derive(Deserialize)]
struct RemoteReport {
    #[serde(default)]
    imported: u64,
    #[serde(default)]
    overwritten: u64,
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    removed: u64,
    #[serde(default)]
    events_replayed: u64,
    #[serde(default)]
    skipped_ids: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

impl From<ImportReport> for RemoteReport {
    fn from(r: ImportReport) -> Self {
        RemoteReport {
            imported: r.imported,
            overwritten: r.overwritten,
            skipped: r.skipped,
            removed: r.removed,
            events_replayed: r.events_replayed,
            skipped_ids: r.skipped_ids,
            dry_run: r.dry_run,
        }
    }
}

/// `import FILE [--mode merge|replace] [--on-conflict skip|overwrite|fail] [--dry-run]`.
pub fn import(ctx: &Ctx, out: &mut dyn Write, a: &ImportArgs) -> anyhow::Result<()> {
    let options = import_options(a);
    let (r, name): (RemoteReport, String) = match &ctx.remote {
        Some(remote) => {
            let (input, name) = read_input(a)?;
            // IMPORTANT: the whole document is validated before it is sent, so a rejected
            // import writes nothing (whatever the target).
            export::validate_import_bytes(&input, &name)?;
            (import_remote(remote, a, &input, &name)?, name)
        }
        None => {
            let (input, name) = open_input(a)?;
            (import_direct(ctx, input, &name, &options)?.into(), name)
        }
    };
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
        // The report lists the first ids only (`SKIPPED_IDS_LISTED_MAX`); `skipped` counts all.
        let unlisted = r.skipped.saturating_sub(r.skipped_ids.len() as u64);
        let more = if unlisted > 0 {
            format!(" and {unlisted} more")
        } else {
            String::new()
        };
        writeln!(
            out,
            "skipped (already in the store): {}{more}",
            r.skipped_ids.join(", ")
        )?;
    }
    if r.dry_run {
        writeln!(out, "dry run: nothing was written")?;
    }
    Ok(())
}

fn import_remote(
    remote: &Remote,
    a: &ImportArgs,
    input: &[u8],
    name: &str,
) -> anyhow::Result<RemoteReport> {
    let q = vec![
        (
            "mode",
            match a.mode {
                ImportMode::Merge => "merge",
                ImportMode::Replace => "replace",
            }
            .to_string(),
        ),
        (
            "on_conflict",
            match a.on_conflict {
                OnConflict::Skip => "skip",
                OnConflict::Overwrite => "overwrite",
                OnConflict::Fail => "fail",
            }
            .to_string(),
        ),
        ("dry_run", a.dry_run.to_string()),
    ];
    remote
        .post_bytes::<RemoteReport>("/v1/import", &q, input)
        .map_err(|e| match e.downcast::<crate::exit::Exit>() {
            // The server does not know the file's name: word it as the direct path does.
            Ok(mut exit) => {
                exit.message = exit
                    .message
                    .map(|m| m.replacen("in the document:", &format!("in {name}:"), 1));
                exit.into()
            }
            Err(e) => e,
        })
}

/// Imports the document. Its input (a file or stdin) is first copied into a private temporary
/// file and mapped ([`export::SpooledDocument`], at most the size limit), so that it can be read
/// twice and parsed in place: a dry run streams it through the planner against a read-only
/// store and keeps only ids; a real import first validates all of it keeping only ids in
/// memory (and its validated tasks encoded in a temporary file beside the copy), and only then
/// opens the store for writing and streams each validated task into the import's staging
/// segment (`export::import_json_spooled`), so neither a tree of the document nor its
/// validated tasks are ever all held.
fn import_direct(
    ctx: &Ctx,
    input: Box<dyn Read>,
    name: &str,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let exists = tasklog::store::wal_dir(&ctx.dir).is_dir();
    let none = |_: u64, _: u64| {};
    // A dry run (and the conflict check of --on-conflict fail) needs only to read: the store
    // read-only, or an empty store in memory when there is none yet.
    let open_read = || -> anyhow::Result<Store> {
        if exists {
            return ctx.open_read();
        }
        Ok(Store::open_with(&ctx.dir, StoreOptions::new().in_memory())?)
    };
    let document = export::SpooledDocument::read_from(input, name)?;
    if options.dry_run {
        let store = open_read()?;
        return Ok(export::import_json_spooled(
            &store, &document, name, options, none,
        )?);
    }
    // IMPORTANT: the whole document is validated before any store is opened for writing, so a
    // rejected import creates and writes nothing.
    let total = if exists && options.on_conflict == LibConflict::Fail {
        // Validated first, so that the dry run and the import read the validated copy.
        export::validate_import_spooled(&document, name)?;
        // A dry run against the store also refuses the conflicting ids.
        let check = options.clone().dry_run(true);
        let r = export::import_json_spooled(&open_read()?, &document, name, &check, none)?;
        r.imported + r.overwritten + r.skipped
    } else {
        export::validate_import_spooled(&document, name)?
    };
    let store = ctx.open_write()?;
    let bar = ctx.ui.bar(total, "import");
    let progress = |done, _| bar.set_position(done);
    // A small document goes as one ordinary batch (a staging segment would cost it a sealed
    // segment of its own), planned whole: it is small.
    let result = if total < tasklog::store::IMPORT_STAGED_MIN_MUTATIONS as u64 {
        export::import_json(&store, document.bytes(), name, options, progress)
    } else {
        export::import_json_spooled(&store, &document, name, options, progress)
    };
    bar.finish_and_clear();
    finish_import(store, result)
}

/// Closes the store after an import, first turning imported tasks with a cron `schedule`
/// (seed 000's scheduler) into schedules.
fn finish_import(
    store: Store,
    result: tasklog::Result<ImportReport>,
) -> anyhow::Result<ImportReport> {
    // Imported tasks with a cron `schedule` (seed 000's scheduler) become schedules.
    let adopted = match &result {
        Ok(_) => {
            tasklog::runtime::schedule::adopt_imported(&store, tasklog::task::Timestamp::now())
                .map(|_| ())
        }
        Err(_) => Ok(()),
    };
    close_before_exit(store)?;
    let report = result?;
    adopted?;
    Ok(report)
}
