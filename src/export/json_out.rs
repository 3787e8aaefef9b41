//! The JSON export: a header, then one task (with its history) at a time, so that memory stays
//! bounded by one page of ids-in-flight and one task, whatever the store's size.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::rebuild::before_removal;
use super::{EXPORT_FORMAT, EXPORT_VERSION, ExportOptions, atomic_file};
use crate::error::{Error, Result};
use crate::store::{Filter, HistoryEvent, Store, query};
use crate::task::{Checkpoint, Lease, Output, Task, TaskState, Timestamp};

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ExportSummary {
    /// Tasks written.
    pub tasks: u64,
    /// History events written.
    pub events: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The store's last LSN when the export fixed its set of tasks.
    pub last_lsn: u64,
}

/// The header, in the documented key order.
#[derive(Serialize)]
struct Header<'a> {
    format: &'a str,
    version: u64,
    exported_at: Timestamp,
    task_count: u64,
    last_lsn: u64,
}

#[derive(Serialize)]
struct ProgressOut<'a> {
    percent: u8,
    step: &'a Option<String>,
    message: &'a Option<String>,
}

/// One task as exported: the model's fields in a fixed order, then its history.
#[derive(Serialize)]
struct TaskOut<'a> {
    id: &'a str,
    title: &'a str,
    description: &'a str,
    role: &'a Option<String>,
    state: TaskState,
    progress: ProgressOut<'a>,
    created_at: Timestamp,
    updated_at: Timestamp,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
    provider: &'a Option<String>,
    model: &'a Option<String>,
    tags: &'a [String],
    metadata: &'a BTreeMap<String, Value>,
    result: &'a Option<Box<Value>>,
    last_error: &'a Option<String>,
    error_count: u32,
    attempt: u32,
    priority: u8,
    checkpoint: &'a Option<Box<Checkpoint>>,
    outputs: &'a [Output],
    lease: &'a Option<Box<Lease>>,
    version: u64,
    last_lsn: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<EventOut<'a>>>,
}

/// One history event, with the fields of the CLI's `history --json`.
#[derive(Serialize)]
pub(crate) struct EventOut<'a> {
    lsn: u64,
    at: Timestamp,
    kind: &'a str,
    from: Option<TaskState>,
    to: Option<TaskState>,
    #[serde(skip_serializing_if = "is_none")]
    actor: &'a Option<String>,
    details: &'a Value,
}

fn is_none(actor: &&Option<String>) -> bool {
    actor.is_none()
}

impl<'a> From<&'a HistoryEvent> for EventOut<'a> {
    fn from(e: &'a HistoryEvent) -> Self {
        EventOut {
            lsn: e.lsn,
            at: e.at,
            kind: e.kind,
            from: e.from,
            to: e.to,
            actor: &e.actor,
            details: &e.details,
        }
    }
}

fn task_out<'a>(t: &'a Task, history: Option<&'a [HistoryEvent]>) -> TaskOut<'a> {
    TaskOut {
        id: &t.id,
        title: &t.title,
        description: &t.description,
        role: &t.role,
        state: t.state,
        progress: ProgressOut {
            percent: t.progress.percent,
            step: &t.progress.step,
            message: &t.progress.message,
        },
        created_at: t.created_at,
        updated_at: t.updated_at,
        started_at: t.started_at,
        completed_at: t.completed_at,
        provider: &t.provider,
        model: &t.model,
        tags: &t.tags,
        metadata: &t.metadata,
        result: &t.result,
        last_error: &t.last_error,
        error_count: t.error_count,
        attempt: t.attempt,
        priority: t.priority,
        checkpoint: &t.checkpoint,
        outputs: &t.outputs,
        lease: &t.lease,
        version: t.version,
        last_lsn: t.last_lsn,
        history: history.map(|h| h.iter().map(EventOut::from).collect()),
    }
}

/// The ids of the matching tasks, in export order (creation time, then id), and the store's
/// last LSN, read together under one read lock. Only ids are held, never the tasks.
pub(crate) fn matching_ids(store: &Store, filter: &Filter) -> Result<(Vec<String>, u64)> {
    let (mut keyed, lsn) =
        store.read_state(|st| (query::matching_keys(st, filter), st.applied_lsn))?;
    keyed.sort_unstable();
    Ok((keyed.into_iter().map(|(_, id)| id).collect(), lsn))
}

/// One task and its history, consistent with each other: the history is cut at the task's
/// own last LSN. A task removed since the ids were fixed is rebuilt from its history as it
/// stood before the removal.
pub(crate) fn fetch(store: &Store, id: &str) -> Result<(Task, Vec<HistoryEvent>)> {
    let task = match store.get(id) {
        Ok(t) => Some(t),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut history = store.history(id)?;
    let task = match task {
        Some(t) => t,
        None => before_removal(id, &history).ok_or_else(|| Error::InvalidInput {
            at: Some(format!("task {id:?}")),
            reason: "removed during the export and its history cannot rebuild it".into(),
        })?,
    };
    history.retain(|e| e.lsn <= task.last_lsn);
    Ok((task, history))
}

/// A writer that counts the bytes it passes on.
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(e: io::Error) -> Error {
    Error::io("write", "export output", e)
}

fn json_err(e: serde_json::Error) -> Error {
    match e.classify() {
        serde_json::error::Category::Io => Error::io("write", "export output", io::Error::other(e)),
        _ => Error::Codec {
            what: "export".into(),
            reason: e.to_string(),
            source: Some(Box::new(e)),
        },
    }
}

/// Writes the tasks matching `options.filter` as a tasklog JSON document to `out`.
///
/// The set of tasks is fixed first (ids only, with the store's last LSN); then each task is read
/// and written in turn, so memory stays bounded by the id list and one task. `task_count` is
/// therefore exact. The document is not a point-in-time snapshot of the whole store: a task
/// changed during the export is written as it stands when its turn comes (its history cut to
/// match), and may have a `last_lsn` above the header's. `progress(done, total)` is called after
/// each task.
pub fn export_json(
    store: &Store,
    options: &ExportOptions,
    out: impl Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportSummary> {
    let (ids, last_lsn) = matching_ids(store, &options.filter)?;
    let total = ids.len() as u64;
    // NOTE: the buffer sits above the counter, so the counter sees few, large writes.
    let mut w = io::BufWriter::with_capacity(
        256 << 10,
        Counting {
            inner: out,
            bytes: 0,
        },
    );
    let header = Header {
        format: EXPORT_FORMAT,
        version: EXPORT_VERSION,
        exported_at: Timestamp::now(),
        task_count: total,
        last_lsn,
    };
    let mut head = serde_json::to_vec(&header).map_err(json_err)?;
    head.pop(); // the closing brace: `tasks` follows
    w.write_all(&head).map_err(io_err)?;
    w.write_all(b",\"tasks\":{").map_err(io_err)?;
    let mut summary = ExportSummary {
        last_lsn,
        ..ExportSummary::default()
    };
    for (n, id) in ids.iter().enumerate() {
        let (task, history) = fetch(store, id)?;
        w.write_all(if n == 0 { b"\n" } else { b",\n" })
            .map_err(io_err)?;
        serde_json::to_writer(&mut w, id.as_str()).map_err(json_err)?;
        w.write_all(b":").map_err(io_err)?;
        let history = options.include_history.then_some(history.as_slice());
        summary.events += history.map_or(0, |h| h.len() as u64);
        serde_json::to_writer(&mut w, &task_out(&task, history)).map_err(json_err)?;
        summary.tasks += 1;
        progress(summary.tasks, total);
    }
    w.write_all(b"\n}}\n").map_err(io_err)?;
    w.flush().map_err(io_err)?;
    summary.bytes = w.get_ref().bytes;
    tracing::info!(
        tasks = summary.tasks,
        events = summary.events,
        bytes = summary.bytes,
        "JSON export written"
    );
    Ok(summary)
}

/// Exports to a file, atomically: the document is written to a temporary file in the same
/// directory, fsynced, renamed into place, and the directory fsynced. `path` is a directory
/// (the file is named `tasks_export_YYYYMMDD_HHMMSS.json` in it), a file path, or `None` (that
/// name in the current directory). Returns the file written.
pub fn export_json_to_path(
    store: &Store,
    options: &ExportOptions,
    path: Option<&Path>,
) -> Result<(PathBuf, ExportSummary)> {
    let target = match path {
        None => PathBuf::from(atomic_file::default_file_name()),
        Some(p) if p.is_dir() => p.join(atomic_file::default_file_name()),
        Some(p) => p.to_path_buf(),
    };
    let summary = atomic_file::write_atomically(&target, |file| {
        export_json(store, options, file, |_, _| {})
    })?;
    Ok((target, summary))
}
