//! `export` and `import`.
//!
//! TODO(export merge): until branch `export` is merged these use a minimal placeholder format
//! written here; they are replaced by `tasklog::export` after the merge.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};
use tasklog::Store;
use tasklog::store::Query;

use super::Ctx;
use super::read::filter_of;
use crate::args::{ExportArgs, ExportFormat, ImportArgs};
use crate::exit::{Exit, OPERATION};

/// The default export file name: `tasks_export_YYYYMMDD_HHMMSS.<ext>`.
pub fn default_export_name(format: ExportFormat) -> PathBuf {
    let ext = match format {
        ExportFormat::Json => "json",
        ExportFormat::Csv => "csv",
    };
    let now = chrono::Utc::now().format("%Y%m%d_%H%M%S");
    PathBuf::from(format!("tasks_export_{now}.{ext}"))
}

/// `export [--out FILE] [--format json|csv] [--no-history] [filters]`.
pub fn export(ctx: &Ctx, out: &mut dyn Write, a: &ExportArgs) -> anyhow::Result<()> {
    let store = ctx.open_read()?;
    let target = a
        .out
        .clone()
        .unwrap_or_else(|| default_export_name(a.format));
    let query = Query {
        filter: filter_of(&a.filter),
        ..Query::default()
    };
    if target.as_os_str() == "-" {
        let n = write_export(&store, &query, a.format, !a.no_history, out)?;
        ctx.ui.note(format!("exported {n} task(s) to stdout"));
        return Ok(());
    }
    let file = File::create(&target)
        .with_context(|| format!("cannot create the export file {}", target.display()))?;
    let mut w = BufWriter::new(file);
    let n = write_export(&store, &query, a.format, !a.no_history, &mut w)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", target.display()))?;
    writeln!(out, "exported {n} task(s) to {}", target.display())?;
    Ok(())
}

/// Writes the export; returns the number of tasks.
pub fn write_export(
    store: &Store,
    query: &Query,
    format: ExportFormat,
    history: bool,
    w: &mut dyn Write,
) -> anyhow::Result<usize> {
    let tasks = store.list(query)?.tasks;
    match format {
        ExportFormat::Json => {
            let mut items = Vec::with_capacity(tasks.len());
            for t in &tasks {
                let mut v = serde_json::to_value(t)?;
                if history && let Value::Object(m) = &mut v {
                    m.insert(
                        "history".into(),
                        serde_json::to_value(store.history(&t.id)?)?,
                    );
                }
                items.push(v);
            }
            let doc = json!({ "format": "tasklog-export-placeholder", "tasks": items });
            serde_json::to_writer_pretty(&mut *w, &doc)?;
            writeln!(w)?;
        }
        ExportFormat::Csv => {
            writeln!(w, "id,title,state,role,provider,model,attempt,created_at")?;
            for t in &tasks {
                let cells = [
                    t.id.clone(),
                    t.title.clone(),
                    t.state.to_string(),
                    t.role.clone().unwrap_or_default(),
                    t.provider.clone().unwrap_or_default(),
                    t.model.clone().unwrap_or_default(),
                    t.attempt.to_string(),
                    t.created_at.to_rfc3339(),
                ];
                let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                writeln!(w, "{}", row.join(","))?;
            }
        }
    }
    w.flush()?;
    Ok(tasks.len())
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `import FILE [--mode] [--on-conflict] [--dry-run]`.
pub fn import(_ctx: &Ctx, _out: &mut dyn Write, a: &ImportArgs) -> anyhow::Result<()> {
    let _ = Path::new(&a.file);
    Err(Exit::new(
        OPERATION,
        "import is not available in this build yet (it needs the export module)",
    )
    .into())
}

/// Exports every task with its history to a JSON file in `dir`; returns the file and the
/// number of tasks.
pub fn export_to_path(store: &Store, dir: &Path) -> anyhow::Result<(PathBuf, u64)> {
    let path = dir.join(default_export_name(ExportFormat::Json));
    let file = File::create(&path)
        .with_context(|| format!("cannot create the export file {}", path.display()))?;
    let mut w = BufWriter::new(file);
    let n = write_export(store, &Query::default(), ExportFormat::Json, true, &mut w)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((path, n as u64))
}
