//! `export`: JSON export and import, and CSV export, that never lose or half-apply anything.
//!
//! - [`export_json`] streams a filtered set of tasks, each with its full history, to any
//!   [`std::io::Write`] with bounded memory; [`export_json_to_path`] does so atomically to a
//!   file (temp file, fsync, rename, fsync of the directory).
//! - [`export_tasks_csv`] and [`export_history_csv`] write RFC 4180 CSV with a fixed column set.
//! - [`import_json`] reads tasklog's own export and the formats of the JSON-file schedulers it
//!   replaces, validates the *whole* input first (reporting every problem with its JSON path),
//!   and applies it as one atomic [`Store::batch`](crate::Store::batch).
//!
//! The formats, aliases, columns and guarantees are described in `docs/export.md`.
//!
//! ```
//! use tasklog::export::{ExportOptions, ImportOptions, export_json, import_json_bytes};
//! use tasklog::{NewTask, Store};
//!
//! # fn main() -> tasklog::Result<()> {
//! let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
//! let source = Store::open(a.path())?;
//! source.submit(NewTask::new("carried over").id("t1"))?;
//! let mut json = Vec::new();
//! export_json(&source, &ExportOptions::new(), &mut json, |_, _| {})?;
//!
//! let target = Store::open(b.path())?;
//! let report = import_json_bytes(&target, &json, "export.json", &ImportOptions::new(), |_, _| {})?;
//! assert_eq!(report.imported, 1);
//! assert_eq!(target.history("t1")?.len(), source.history("t1")?.len());
//! # Ok(())
//! # }
//! ```
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod aliases;
mod apply;
mod atomic_file;
mod csv_out;
mod json_de;
mod json_out;
mod parse;
mod rebuild;
mod spool;
mod stream;
mod validate;
mod validated;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::store::Filter;
use crate::task::{EventKind, Task, Timestamp};

pub use aliases::{field_alias, state_alias};
pub use apply::{
    ImportMode, ImportOptions, ImportReport, OnConflict, SKIPPED_IDS_LISTED_MAX, check_conflicts,
    import_json, import_json_bytes, import_json_spooled, import_json_staged,
    import_json_staged_bytes, import_parsed,
};
pub use atomic_file::{default_file_name, write_atomically};
pub use csv_out::{HISTORY_CSV_COLUMNS, TASK_CSV_COLUMNS, export_history_csv, export_tasks_csv};
pub use json_out::{ExportSummary, export_json, export_json_to_path};
pub use parse::{
    parse_import, parse_import_reader, validate_import_bytes, validate_import_reader,
    validate_import_spooled,
};
pub use spool::SpooledDocument;

/// The `format` value of a tasklog export.
pub const EXPORT_FORMAT: &str = "tasklog";
/// The export format version written by this build (and the only one it reads).
pub const EXPORT_VERSION: u64 = 1;
/// Longest string (value or object key) accepted anywhere in an import: 16 MiB. A longer one
/// rejects the document. A string without escapes is measured in place and refused before it
/// is copied; one with escapes is first unescaped by serde_json into its scratch buffer (at most
/// the input's size), so parsing holds at most about twice the input.
pub const IMPORT_STRING_BYTES_MAX: usize = crate::task::limits::TEXT_BYTES_MAX;
/// Largest import document read by [`import_json`]: 1 GiB. The parsed tree takes a few times
/// the input's size (see `docs/export.md`), so this bounds the import's memory.
pub const IMPORT_BYTES_MAX: u64 = 1 << 30;
/// Longest task id accepted by an import (the store's own limit).
pub const TASK_ID_BYTES_MAX: usize = crate::task::limits::TASK_ID_BYTES_MAX;
/// The actor recorded on the events an import writes (other than re-recorded history).
pub const IMPORT_ACTOR: &str = "tasklog-import";
/// The reason recorded on tasks that a replacing import removes.
pub const REPLACED_REASON: &str = "replaced by import";

/// What [`export_json`] and the CSV exports write.
///
/// ## Defaults
/// - `filter`: every task ([`Filter::default`]).
/// - `include_history`: true.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Which tasks (the same filter as listing).
    pub filter: Filter,
    /// Write each task's history (its full audit trail) under `history`.
    pub include_history: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            filter: Filter::default(),
            include_history: true,
        }
    }
}

impl ExportOptions {
    /// Every task, with history.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only tasks matching `filter`.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Whether to include each task's history.
    #[must_use]
    pub fn include_history(mut self, yes: bool) -> Self {
        self.include_history = yes;
        self
    }
}

/// Which document layout an import was read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceFormat {
    /// tasklog's own export (`"format": "tasklog"`).
    Tasklog,
    /// `{"version": "1.0", "exported_at": ..., "tasks": {...}}` of the older schedulers.
    Wrapped,
    /// A plain object of tasks by id.
    Map,
    /// A JSON array of task objects.
    Array,
}

/// A validated import document.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ParsedImport {
    /// The layout it was read as.
    pub format: SourceFormat,
    /// The tasks, in document order.
    pub tasks: Vec<ImportTask>,
    /// The document's top-level keys other than `tasks` (empty for a map or array).
    pub metadata: BTreeMap<String, Value>,
}

/// One task of an import.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImportTask {
    /// The task's fields. `version` and `last_lsn` are assigned by the destination store.
    pub task: Task,
    /// Its history, when the document has one (tasklog exports), ordered by LSN.
    pub history: Option<Vec<ImportEvent>>,
    /// Its JSON path in the document (for messages).
    pub path: String,
    /// The task as its history rebuilds it (when it has one).
    pub(crate) rebuilt: Rebuilt,
}

/// What an import task's history rebuilds.
#[derive(Clone, Debug)]
pub(crate) enum Rebuilt {
    /// No history (or none that rebuilds a task).
    None,
    /// This task (boxed: most import tasks have none).
    Task(Box<Task>),
    /// A task with the same fields as the exported one (ignoring `version`, `last_lsn` and
    /// `session`): what a task read back from a validated copy holds (`validated.rs`), which
    /// keeps the rebuilt task only when it differs.
    SameAsTask,
    /// This task, found to differ from the exported one before both went through the wire
    /// encoding (a task read back from a validated copy): the wire keeps no lease, so
    /// comparing them again could find them the same.
    Differs(Box<Task>),
}

impl From<Option<Task>> for Rebuilt {
    fn from(task: Option<Task>) -> Self {
        task.map_or(Rebuilt::None, |t| Rebuilt::Task(Box::new(t)))
    }
}

impl ImportTask {
    /// The task as its history rebuilds it (replayed through the store's state machine), when
    /// it has a history. When this differs from [`ImportTask::task`] (ignoring `version` and
    /// `last_lsn`), an import re-records the history and then writes the exported fields.
    pub fn rebuilt(&self) -> Option<&Task> {
        match &self.rebuilt {
            Rebuilt::None => None,
            Rebuilt::Task(task) | Rebuilt::Differs(task) => Some(task),
            Rebuilt::SameAsTask => Some(&self.task),
        }
    }

    /// Whether the task its history rebuilds has other fields than the exported one (`None`:
    /// no rebuilt task). An import then writes the exported fields after the history.
    pub(crate) fn rebuilt_differs(&self) -> Option<bool> {
        match &self.rebuilt {
            Rebuilt::None => None,
            Rebuilt::Task(rebuilt) => Some(!rebuild::same_fields(rebuilt, &self.task)),
            Rebuilt::SameAsTask => Some(false),
            Rebuilt::Differs(_) => Some(true),
        }
    }
}

/// One event of an imported history.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ImportEvent {
    /// Its LSN in the exporting store (orders the re-recording across tasks).
    pub lsn: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Who made it.
    pub actor: Option<String>,
    /// What it did.
    pub kind: EventKind,
}

/// Fuzzing entry point: parses and validates arbitrary bytes as an import document. Returns
/// whether they were accepted. Never panics (that is what the fuzz target checks) — except
/// when an accepted document breaks the round trip: it is imported into an in-memory store,
/// exported, and the export must be accepted again with the same tasks (whatever import
/// accepts, export can write back), or when the same document imported the way `tasklog
/// import` does it (validated once, keeping a validated copy, then imported from that copy)
/// reports or stores something else.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn fuzz_import_json(bytes: &[u8]) -> bool {
    let Ok(parsed) = parse_import(bytes, "fuzz") else {
        return false;
    };
    let tasks = parsed.tasks.len();
    let parsed_format = parsed.format;
    // Planning against an empty store must not panic either.
    let plan = apply::plan(
        parsed,
        &foldhash::HashSet::default(),
        &ImportOptions::default(),
        &mut |_, _| {},
    );
    if plan.is_err() {
        return false;
    }
    let memory = crate::wal::sim::SimStorage::new(0);
    let options = crate::StoreOptions::new()
        .storage(std::sync::Arc::new(memory))
        .preallocate(false);
    let store =
        crate::Store::open_with("/fuzz-store", options).expect("should open a store in memory");
    let report = import_json_bytes(&store, bytes, "fuzz", &ImportOptions::default(), |_, _| {})
        .expect("an accepted document should import");
    // What `tasklog import` runs: validated once keeping a validated copy, imported from the
    // copy. It must import the same.
    let document = SpooledDocument::read_from(bytes, "fuzz").expect("should spool a document");
    validate_import_spooled(&document, "fuzz").expect("an accepted document should validate");
    let copy_store = crate::Store::open_with(
        "/fuzz-store",
        crate::StoreOptions::new()
            .storage(std::sync::Arc::new(crate::wal::sim::SimStorage::new(0)))
            .preallocate(false),
    )
    .expect("should open a store in memory");
    let from_copy = import_json_spooled(
        &copy_store,
        &document,
        "fuzz",
        &ImportOptions::default(),
        |_, _| {},
    )
    .expect("an accepted document should import from its validated copy");
    assert_eq!(from_copy, report, "the validated copy imported differently");
    assert_eq!(copy_store.len(), store.len());
    if parsed_format != SourceFormat::Array {
        // (An array's tasks without an id get generated ids.)
        for id in store
            .read_state(|st| st.live_ids().map(str::to_string).collect::<Vec<_>>())
            .expect("ids")
        {
            let want = store.history(&id).expect("history").len();
            let got = copy_store
                .history(&id)
                .expect("the same id from the copy")
                .len();
            assert_eq!(got, want, "history of {id:?} from the validated copy");
        }
    }
    let mut out = Vec::new();
    export_json(&store, &ExportOptions::default(), &mut out, |_, _| {})
        .expect("an imported store should export");
    let again = parse_import(&out, "fuzz re-import")
        .unwrap_or_else(|e| panic!("the export of an accepted document is refused: {e}"));
    assert_eq!(again.tasks.len(), tasks, "the round trip lost tasks");
    assert_eq!(report.imported as usize, tasks);
    true
}
