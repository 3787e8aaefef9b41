//! CSV export (RFC 4180): tasks, one row per task, and history, one row per event. The column
//! sets are fixed (see [`TASK_CSV_COLUMNS`] and [`HISTORY_CSV_COLUMNS`]); lists, objects and
//! free-form JSON values are written as compact JSON text in one cell.

use std::borrow::Cow;
use std::io::{self, Write};

use super::ExportOptions;
use super::json_out::{Counting, ExportSummary, fetch, matching_ids};
use crate::error::{Error, Result};
use crate::store::HistoryEvent;
use crate::store::Store;
use crate::task::{Task, Timestamp};

/// The columns of [`export_tasks_csv`], in order.
pub const TASK_CSV_COLUMNS: [&str; 21] = [
    "id",
    "title",
    "description",
    "role",
    "state",
    "progress_percent",
    "progress_step",
    "progress_message",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "provider",
    "model",
    "tags",
    "metadata",
    "result",
    "last_error",
    "error_count",
    "attempt",
    "priority",
];

/// The columns of [`export_history_csv`], in order.
pub const HISTORY_CSV_COLUMNS: [&str; 8] = [
    "task_id", "lsn", "at", "kind", "from", "to", "actor", "details",
];

/// One field, quoted when it holds `,`, `"`, CR or LF (quotes inside are doubled).
pub(crate) fn quote(field: &str) -> Cow<'_, str> {
    if field.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

/// Writes one record, ending in CRLF as RFC 4180 says.
fn write_row<S: AsRef<str>>(w: &mut impl Write, fields: &[S]) -> io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(quote(f.as_ref()).as_bytes())?;
    }
    w.write_all(b"\r\n")
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn task_row(t: &Task) -> [String; 21] {
    [
        t.id.clone(),
        t.title.clone(),
        t.description.clone(),
        opt(&t.role),
        t.state.to_string(),
        t.progress.percent.to_string(),
        opt(&t.progress.step),
        opt(&t.progress.message),
        t.created_at.to_rfc3339(),
        t.updated_at.to_rfc3339(),
        time(t.started_at),
        time(t.completed_at),
        opt(&t.provider),
        opt(&t.model),
        json(&t.tags),
        json(&t.metadata),
        t.result.as_ref().map(json).unwrap_or_default(),
        opt(&t.last_error),
        t.error_count.to_string(),
        t.attempt.to_string(),
        t.priority.to_string(),
    ]
}

fn io_err(e: io::Error) -> Error {
    Error::io("write", "CSV output", e)
}

/// Writes one row per matching task (columns [`TASK_CSV_COLUMNS`], with a header row), in
/// creation order. Memory is bounded as for [`export_json`](super::export_json).
pub fn export_tasks_csv(
    store: &Store,
    options: &ExportOptions,
    out: impl Write,
    progress: impl FnMut(u64, u64),
) -> Result<ExportSummary> {
    export_rows(
        store,
        options,
        out,
        progress,
        &TASK_CSV_COLUMNS,
        |w, _, task, _, _| write_row(w, &task_row(task)).map_err(io_err),
    )
}

/// Writes one row per history event of each matching task (columns [`HISTORY_CSV_COLUMNS`],
/// with a header row): tasks in creation order, each task's events in LSN order.
pub fn export_history_csv(
    store: &Store,
    options: &ExportOptions,
    out: impl Write,
    progress: impl FnMut(u64, u64),
) -> Result<ExportSummary> {
    export_rows(
        store,
        options,
        out,
        progress,
        &HISTORY_CSV_COLUMNS,
        |w, id, _, history, summary| {
            let state =
                |s: Option<crate::task::TaskState>| s.map(|s| s.to_string()).unwrap_or_default();
            for e in history {
                let row = [
                    id.to_string(),
                    e.lsn.to_string(),
                    e.at.to_rfc3339(),
                    e.kind.to_string(),
                    state(e.from),
                    state(e.to),
                    opt(&e.actor),
                    json(&e.details),
                ];
                write_row(w, &row).map_err(io_err)?;
                summary.events += 1;
            }
            Ok(())
        },
    )
}

/// The shared driver of both CSV exports: fixes the matching ids, writes the header, then
/// hands each task (and its history) to `rows`, counting bytes and reporting progress.
fn export_rows<W: Write>(
    store: &Store,
    options: &ExportOptions,
    out: W,
    mut progress: impl FnMut(u64, u64),
    header: &[&str],
    mut rows: impl FnMut(
        &mut io::BufWriter<Counting<W>>,
        &str,
        &Task,
        &[HistoryEvent],
        &mut ExportSummary,
    ) -> Result<()>,
) -> Result<ExportSummary> {
    let (ids, last_lsn) = matching_ids(store, &options.filter)?;
    let total = ids.len() as u64;
    let mut w = io::BufWriter::with_capacity(
        256 << 10,
        Counting {
            inner: out,
            bytes: 0,
        },
    );
    write_row(&mut w, header).map_err(io_err)?;
    let mut summary = ExportSummary {
        last_lsn,
        ..ExportSummary::default()
    };
    for id in &ids {
        let (task, history) = fetch(store, id)?;
        rows(&mut w, id, &task, &history, &mut summary)?;
        summary.tasks += 1;
        progress(summary.tasks, total);
    }
    w.flush().map_err(io_err)?;
    summary.bytes = w.get_ref().bytes;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_rfc_4180() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(quote("cr\r"), "\"cr\r\"");
        let mut out = Vec::new();
        write_row(&mut out, &["a", "b,c", ""]).expect("should write");
        assert_eq!(out, b"a,\"b,c\",\r\n");
    }
}
