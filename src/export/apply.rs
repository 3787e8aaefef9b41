//! Applying a validated import: planning every mutation first, then writing them as ONE atomic
//! [`Store::batch`], so that a crash at any moment leaves the store as if the import had either
//! never started or wholly finished.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use serde_json::Value;

use super::rebuild::same_fields;
use super::validate::Problems;
use super::{
    IMPORT_ACTOR, IMPORT_BYTES_MAX, ParsedImport, REPLACED_REASON, SourceFormat, parse_import,
};
use crate::error::{Error, Result};
use crate::store::{Change, Mutation, Store};
use crate::task::Task;

/// How an import combines with the tasks already in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportMode {
    /// Add the imported tasks; an id that already exists is handled by [`OnConflict`].
    #[default]
    Merge,
    /// The store's tasks become exactly the imported set. Tasks not in the import are removed
    /// (recorded as `removed` with the reason "replaced by import", so their history stays);
    /// tasks in both are overwritten.
    Replace,
}

/// What a merging import does with an id that already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnConflict {
    /// Keep the existing task and report the id in [`ImportReport::skipped_ids`].
    #[default]
    Skip,
    /// Overwrite the existing task with the imported fields (its history stays and gains an
    /// `imported` event).
    Overwrite,
    /// Reject the whole import, listing every conflicting id.
    Fail,
}

/// How to import.
///
/// ## Defaults
/// - `mode`: [`ImportMode::Merge`].
/// - `on_conflict`: [`OnConflict::Skip`].
/// - `dry_run`: false.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Merge or replace.
    pub mode: ImportMode,
    /// Existing ids, when merging.
    pub on_conflict: OnConflict,
    /// Validate and count, but write nothing.
    pub dry_run: bool,
}

impl ImportOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the mode.
    #[must_use]
    pub fn mode(mut self, mode: ImportMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the conflict policy.
    #[must_use]
    pub fn on_conflict(mut self, c: OnConflict) -> Self {
        self.on_conflict = c;
        self
    }
    /// Sets dry-run.
    #[must_use]
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// New tasks created.
    pub imported: u64,
    /// Existing ids left alone ([`OnConflict::Skip`]).
    pub skipped: u64,
    /// Existing tasks overwritten.
    pub overwritten: u64,
    /// Tasks removed by a replacing import.
    pub removed: u64,
    /// History events re-recorded with their original times.
    pub events_replayed: u64,
    /// New tasks whose exported fields differ from what their history rebuilds: each got an
    /// `imported` event after its history so that the exported fields win.
    pub fields_restored: u64,
    /// The skipped ids.
    pub skipped_ids: Vec<String>,
    /// The document's extra top-level keys (`exported_at`, `cluster_name`, ...).
    pub metadata: BTreeMap<String, Value>,
    /// The layout the document was read as.
    pub format: Option<SourceFormat>,
    /// True when nothing was written.
    pub dry_run: bool,
    /// The store's last LSN after the import.
    pub last_lsn: u64,
}

/// Imports a document read from `input` (at most [`IMPORT_BYTES_MAX`] bytes) into `store`.
/// See [`import_json_bytes`].
pub fn import_json(
    store: &Store,
    mut input: impl Read,
    source_name: &str,
    options: &ImportOptions,
    progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    let mut bytes = Vec::new();
    (&mut input)
        .take(IMPORT_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", source_name, e))?;
    if bytes.len() as u64 > IMPORT_BYTES_MAX {
        return Err(Error::TooLarge {
            what: "import document",
            len: bytes.len() as u64,
            max: IMPORT_BYTES_MAX,
        });
    }
    import_json_bytes(store, &bytes, source_name, options, progress)
}

/// Imports a document into `store`: parses and validates all of it (any problem rejects it as
/// [`Error::InvalidDocument`] listing every problem, and the store is untouched), plans every
/// mutation, then writes them as one atomic batch. `progress(done, total)` counts tasks planned,
/// then reports `(total, total)` once the batch is durable.
///
/// A new task with a history has each event re-recorded with its original time, in the
/// exported LSN order across all tasks (so a full export imported into an empty store gets the
/// same LSNs when the source's were contiguous). If the task its history rebuilds differs from
/// the exported fields, an `imported` event follows so that the exported fields win. A task
/// without history, or an existing task being overwritten, is written by one `imported` event.
pub fn import_json_bytes(
    store: &Store,
    bytes: &[u8],
    source_name: &str,
    options: &ImportOptions,
    progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    let parsed = parse_import(bytes, source_name)?;
    import_parsed(store, parsed, source_name, options, progress)
}

/// Imports a document already parsed and validated by [`parse_import`] (so that a caller that
/// validates before opening a store parses it once). See [`import_json_bytes`].
pub fn import_parsed(
    store: &Store,
    parsed: ParsedImport,
    source_name: &str,
    options: &ImportOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    let existing: HashSet<String> =
        store.read_state(|st| st.tasks().map(|t| t.id.clone()).collect())?;
    let total = parsed.tasks.len() as u64;
    let (mutations, mut report) =
        plan(parsed, &existing, options, &mut progress).map_err(|problems| {
            Error::InvalidDocument {
                source_name: source_name.to_string(),
                total: problems.total(),
                problems: problems.into_vec(),
            }
        })?;
    report.dry_run = options.dry_run;
    if options.dry_run || mutations.is_empty() {
        report.last_lsn = store.last_lsn();
        progress(total, total);
        return Ok(report);
    }
    let count = mutations.len();
    // IMPORTANT: one batch. A concurrent writer that creates one of the new ids in the
    // meantime makes the whole batch fail, leaving the store untouched.
    // The tasks written are not needed back: the bulk path copies none of them.
    let last_lsn = store.write_batch(mutations)?;
    report.last_lsn = if last_lsn == 0 {
        store.last_lsn()
    } else {
        last_lsn
    };
    progress(total, total);
    tracing::info!(
        source_name,
        events = count,
        imported = report.imported,
        overwritten = report.overwritten,
        skipped = report.skipped,
        removed = report.removed,
        "import committed"
    );
    Ok(report)
}

/// Plans the mutations of an import against the ids that exist now. Errors are the
/// conflicting ids for [`OnConflict::Fail`]. Consumes the document, moving its tasks and events
/// into the mutations rather than copying them.
pub(crate) fn plan(
    parsed: ParsedImport,
    existing: &HashSet<String>,
    options: &ImportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> std::result::Result<(Vec<Mutation>, ImportReport), Problems> {
    let mut report = ImportReport {
        metadata: parsed.metadata,
        format: Some(parsed.format),
        ..ImportReport::default()
    };
    let total = parsed.tasks.len() as u64;
    let removals = match options.mode {
        ImportMode::Replace => removals(&parsed.tasks, existing),
        ImportMode::Merge => Vec::new(),
    };
    report.removed = removals.len() as u64;
    // (exported lsn, task index, event index) -> mutation, sorted before writing.
    let mut historical = Vec::new();
    let mut imports = Vec::new();
    let mut follow_ups = Vec::new();
    let mut conflicts = Problems::default();
    for (n, item) in parsed.tasks.into_iter().enumerate() {
        let id = item.task.id.clone();
        let import = |task: Task| {
            let task = Box::new(persistable(task));
            Mutation::new(id.clone(), Change::Import(task)).actor(IMPORT_ACTOR)
        };
        if existing.contains(&id) {
            match (options.mode, options.on_conflict) {
                (ImportMode::Merge, OnConflict::Skip) => {
                    report.skipped += 1;
                    report.skipped_ids.push(id.clone());
                }
                (ImportMode::Merge, OnConflict::Fail) => {
                    conflicts.push(
                        &item.path,
                        format!(
                            "task {:?} already exists",
                            crate::task::limits::excerpt(&id)
                        ),
                    );
                }
                _ => {
                    imports.push(import(item.task));
                    report.overwritten += 1;
                }
            }
        } else {
            report.imported += 1;
            match (item.history, &item.rebuilt) {
                (Some(events), Some(rebuilt)) if !events.is_empty() => {
                    for (k, e) in events.into_iter().enumerate() {
                        let change = Change::Historical {
                            kind: Box::new(e.kind),
                            at: e.at,
                        };
                        let mut m = Mutation::new(id.clone(), change);
                        m.actor = e.actor;
                        historical.push(((e.lsn, n, k), m));
                    }
                    if !same_fields(rebuilt, &item.task) {
                        report.fields_restored += 1;
                        follow_ups.push(import(item.task));
                    }
                }
                _ => imports.push(import(item.task)),
            }
        }
        progress(n as u64 + 1, total);
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    historical.sort_by_key(|(key, _)| *key);
    report.events_replayed = historical.len() as u64;
    let mut mutations = removals;
    mutations.extend(historical.into_iter().map(|(_, m)| m));
    mutations.extend(imports);
    mutations.extend(follow_ups);
    Ok((mutations, report))
}

/// For a replacing import: removes every existing task the document does not hold (in id
/// order), keeping its history.
fn removals(tasks: &[super::ImportTask], existing: &HashSet<String>) -> Vec<Mutation> {
    let incoming: HashSet<&str> = tasks.iter().map(|t| t.task.id.as_str()).collect();
    let mut gone: Vec<&String> = existing
        .iter()
        .filter(|id| !incoming.contains(id.as_str()))
        .collect();
    gone.sort();
    gone.into_iter()
        .map(|id| {
            let change = Change::Remove {
                reason: Some(REPLACED_REASON.into()),
            };
            Mutation::new(id.clone(), change).actor(IMPORT_ACTOR)
        })
        .collect()
}

/// The task as an `imported` event persists it: the id comes from the event, and the lease,
/// version, last LSN and session are the destination store's (a lease belongs to a worker of
/// the source store; no worker of this one holds it).
pub(crate) fn persistable(task: Task) -> Task {
    Task {
        id: String::new(),
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
        ..task
    }
}
