//! Applying a validated import: planning every mutation first, then writing them as ONE atomic
//! [`Store::batch`], so that a crash at any moment leaves the store as if the import had either
//! never started or wholly finished.

use std::collections::BTreeMap;

use foldhash::{HashSet, HashSetExt as _};
use std::io::Read;

use serde_json::Value;

use super::parse::Input;
use super::validate::Problems;
use super::{IMPORT_ACTOR, ParsedImport, REPLACED_REASON, SourceFormat, parse_import};
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

/// Most skipped ids an [`ImportReport`] lists. Listing every one cost the memory of every id
/// (an import of 1,000,000 tasks into a store that had them all held and printed them all).
pub const SKIPPED_IDS_LISTED_MAX: usize = 100;

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
    /// The first [`SKIPPED_IDS_LISTED_MAX`] skipped ids, in document order (`skipped` counts
    /// them all): a report stays small however many ids an import skips.
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

/// Imports a document read from `input` (at most [`IMPORT_BYTES_MAX`](super::IMPORT_BYTES_MAX)
/// bytes) into `store`.
/// See [`import_json_bytes`]. The document is read as a stream and never held: each task is
/// validated and planned as it arrives, so a dry run keeps only the set of ids, and a real import
/// the planned mutations (written as one batch once the whole document is known to be valid).
pub fn import_json(
    store: &Store,
    input: impl Read,
    source_name: &str,
    options: &ImportOptions,
    progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    import_streamed(
        store,
        Input::Reader(Box::new(input)),
        source_name,
        options,
        progress,
    )
}

/// [`import_json`] from any input.
fn import_streamed(
    store: &Store,
    input: Input<'_>,
    source_name: &str,
    options: &ImportOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    let existing = existing_ids(store)?;
    let mut planner = Planner::new(&existing, options);
    let (format, metadata) = input.stream(source_name, &mut |t| {
        planner.add(t);
        progress(planner.seen, 0);
    })?;
    let (mutations, report) = planner
        .finish(format, metadata)
        .map_err(|p| invalid(source_name, p))?;
    commit(store, mutations, report, source_name, options, progress)
}

/// Imports a document read from `input` (at most [`IMPORT_BYTES_MAX`](super::IMPORT_BYTES_MAX)
/// bytes) into `store` as [`import_json`] does, but without holding its plan: each task that
/// becomes one `imported` event (no history, or an existing task overwritten) is written into
/// the import's staging segment as it is read, so memory holds the ids (and the history events
/// of tasks that have one, which are re-recorded in exported-LSN order once all are known),
/// never every planned task. Still all or nothing: a document found invalid, a conflict, a
/// refusal or a crash leaves the store as it was.
///
/// The input is read while the store's write lock is held (other writers wait for it), so it
/// is meant for a document already validated and quick to read again, e.g. a file that
/// [`validate_import_reader`](super::validate_import_reader) checked before the store was
/// opened for writing (`tasklog import` does the same through [`import_json_spooled`]). Falls
/// back to [`import_json`] for a dry run and for a store over a caller-supplied log (no
/// staging segment there).
///
/// Writing order: the imported events in document order, then the history events in
/// exported-LSN order, the follow-up `imported` events, then a replacing import's removals.
pub fn import_json_staged(
    store: &Store,
    input: impl Read,
    source_name: &str,
    options: &ImportOptions,
    progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    import_staged(
        store,
        Input::Reader(Box::new(input)),
        source_name,
        options,
        progress,
    )
}

/// [`import_json_staged`] over a document in memory, e.g. a
/// [`SpooledDocument`](super::SpooledDocument): the same checks, order and atomicity, parsed
/// 2–3x faster (serde_json scans a slice in place and borrows strings without escapes). What
/// `POST /v1/import` runs on a large request body; `tasklog import` runs
/// [`import_json_spooled`] on its copy of the input.
pub fn import_json_staged_bytes(
    store: &Store,
    bytes: &[u8],
    source_name: &str,
    options: &ImportOptions,
    progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    import_staged(store, Input::Bytes(bytes), source_name, options, progress)
}

/// [`import_json_staged_bytes`] over a [`SpooledDocument`](super::SpooledDocument) (what
/// `tasklog import` runs): the mapped copy's pages are released behind the parser, so that
/// reading it keeps about 8 MiB of it resident rather than the whole document. After
/// [`validate_import_spooled`](super::validate_import_spooled) accepted the document, the
/// tasks are decoded from the validated copy it kept instead of parsed again (the same tasks,
/// in the same order).
pub fn import_json_spooled(
    store: &Store,
    document: &super::SpooledDocument,
    source_name: &str,
    options: &ImportOptions,
    progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    import_staged(
        store,
        Input::Spooled(document),
        source_name,
        options,
        progress,
    )
}

/// [`import_json_staged`] from any input.
fn import_staged(
    store: &Store,
    input: Input<'_>,
    source_name: &str,
    options: &ImportOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    if options.dry_run || !store.has_local_log() {
        return import_streamed(store, input, source_name, options, progress);
    }
    let existing = existing_ids(store)?;
    let mut outcome: Option<ImportReport> = None;
    let last_lsn = store.write_staged_from(|sink| {
        let mut planner = Planner::new(&existing, options);
        let mut fed = 0usize;
        let mut refused: Option<Error> = None;
        let streamed = input.stream(source_name, &mut |t| {
            let Some(m) = planner.add_streaming(t) else {
                return;
            };
            progress(planner.seen, 0);
            if refused.is_none() {
                // Each streamed mutation touches its task once (ids are unique in a valid
                // document; a duplicate rejects the whole document below).
                match sink(m, None) {
                    Ok(()) => fed += 1,
                    Err(e) => refused = Some(e),
                }
            }
        });
        let (format, metadata) = streamed?;
        if let Some(e) = refused {
            return Err(e);
        }
        let (rest, report) = planner
            .finish_streamed(format, metadata)
            .map_err(|p| invalid(source_name, p))?;
        let mut later = crate::store::LastTouches::of(&rest);
        for (j, m) in rest.into_iter().enumerate() {
            sink(m, later.next(j).map(|l| fed + l))?;
        }
        outcome = Some(report);
        Ok(())
    })?;
    let report = outcome.expect("a feed that returned Ok set its report");
    let total = report.imported + report.overwritten + report.skipped;
    let report = committed(store, report, last_lsn, source_name, None);
    progress(total, total);
    Ok(report)
}

/// The report of a committed import: its last LSN (the store's when nothing was written), and
/// the log line that says so.
fn committed(
    store: &Store,
    mut report: ImportReport,
    last_lsn: u64,
    source_name: &str,
    events: Option<usize>,
) -> ImportReport {
    report.dry_run = false;
    report.last_lsn = if last_lsn == 0 {
        store.last_lsn()
    } else {
        last_lsn
    };
    tracing::info!(
        source_name,
        events,
        imported = report.imported,
        overwritten = report.overwritten,
        skipped = report.skipped,
        removed = report.removed,
        streamed = events.is_none(),
        "import committed"
    );
    report
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
    let existing = existing_ids(store)?;
    let (mutations, report) =
        plan(parsed, &existing, options, &mut progress).map_err(|p| invalid(source_name, p))?;
    commit(store, mutations, report, source_name, options, progress)
}

/// Checks a parsed document against the ids in `store` as [`OnConflict::Fail`] would, without
/// writing anything (for callers that must refuse before opening a store for writing).
pub fn check_conflicts(store: &Store, parsed: &ParsedImport, source_name: &str) -> Result<()> {
    let existing = existing_ids(store)?;
    let mut conflicts = Problems::default();
    for item in &parsed.tasks {
        if existing.contains(&item.task.id) {
            conflicts.push(&item.path, conflict_message(&item.task.id));
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(invalid(source_name, conflicts))
    }
}

fn conflict_message(id: &str) -> String {
    format!("task {:?} already exists", crate::task::limits::excerpt(id))
}

fn invalid(source_name: &str, problems: Problems) -> Error {
    Error::InvalidDocument {
        source_name: source_name.to_string(),
        total: problems.total(),
        problems: problems.into_vec(),
    }
}

fn existing_ids(store: &Store) -> Result<HashSet<String>> {
    store.read_state(|st| st.live_ids().map(str::to_string).collect())
}

/// Writes the planned mutations as one batch (or nothing, for a dry run).
fn commit(
    store: &Store,
    mutations: Vec<Mutation>,
    mut report: ImportReport,
    source_name: &str,
    options: &ImportOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    let total = report.imported + report.overwritten + report.skipped;
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
    // A large import goes through a staging segment (`Store::write_staged`): the same
    // all-or-nothing promise without a second in-memory copy of the batch.
    let last_lsn = store.write_staged(mutations)?;
    let report = committed(store, report, last_lsn, source_name, Some(count));
    progress(total, total);
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
    let total = parsed.tasks.len() as u64;
    let mut planner = Planner::new(existing, options);
    for item in parsed.tasks {
        planner.add(item);
        progress(planner.seen, total);
    }
    planner.finish(parsed.format, parsed.metadata)
}

/// Plans an import one task at a time, as a stream delivers them. A dry run keeps no
/// mutations, only counts and (for a replacing import) the incoming ids that exist.
pub(crate) struct Planner<'e> {
    existing: &'e HashSet<String>,
    options: ImportOptions,
    report: ImportReport,
    /// Tasks seen.
    seen: u64,
    /// (exported lsn, task index, event index) -> mutation, sorted before writing.
    historical: Vec<((u64, u64, usize), Mutation)>,
    imports: Vec<Mutation>,
    follow_ups: Vec<Mutation>,
    /// Existing ids the document also holds (a replacing import keeps them).
    kept: HashSet<&'e str>,
    conflicts: Problems,
}

impl<'e> Planner<'e> {
    pub(crate) fn new(existing: &'e HashSet<String>, options: &ImportOptions) -> Self {
        Planner {
            existing,
            options: options.clone(),
            report: ImportReport::default(),
            seen: 0,
            historical: Vec::new(),
            imports: Vec::new(),
            follow_ups: Vec::new(),
            kept: HashSet::new(),
            conflicts: Problems::default(),
        }
    }

    /// Plans one task.
    pub(crate) fn add(&mut self, item: super::ImportTask) {
        if let Some(m) = self.add_streaming(item) {
            self.imports.push(m);
        }
    }

    /// Plans one task; returns its mutation when it is an `imported` event that can be
    /// written at once (a task without history, or an existing task overwritten: each id
    /// touched once, in document order). Everything else is kept for [`Planner::finish`] or
    /// [`Planner::finish_streamed`].
    pub(crate) fn add_streaming(&mut self, item: super::ImportTask) -> Option<Mutation> {
        let n = self.seen;
        self.seen += 1;
        let keep = !self.options.dry_run;
        let id = item.task.id.clone();
        let import = |task: Task| {
            let task = Box::new(persistable(task));
            Mutation::new(id.clone(), Change::Import(task)).actor(IMPORT_ACTOR)
        };
        if let Some(existing) = self.existing.get(&id) {
            self.kept.insert(existing.as_str());
            match (self.options.mode, self.options.on_conflict) {
                (ImportMode::Merge, OnConflict::Skip) => {
                    self.report.skipped += 1;
                    if self.report.skipped_ids.len() < SKIPPED_IDS_LISTED_MAX {
                        self.report.skipped_ids.push(id.clone());
                    }
                }
                (ImportMode::Merge, OnConflict::Fail) => {
                    self.conflicts.push(&item.path, conflict_message(&id));
                }
                _ => {
                    self.report.overwritten += 1;
                    return keep.then(|| import(item.task));
                }
            }
            return None;
        }
        self.report.imported += 1;
        let differs = item.rebuilt_differs();
        match (item.history, differs) {
            (Some(events), Some(differs)) if !events.is_empty() => {
                self.report.events_replayed += events.len() as u64;
                if differs {
                    self.report.fields_restored += 1;
                    if keep {
                        self.follow_ups.push(import(item.task));
                    }
                }
                if !keep {
                    return None;
                }
                for (k, e) in events.into_iter().enumerate() {
                    let change = Change::Historical {
                        kind: Box::new(e.kind),
                        at: e.at,
                    };
                    let mut m = Mutation::new(id.clone(), change);
                    m.actor = e.actor;
                    self.historical.push(((e.lsn, n, k), m));
                }
                None
            }
            _ => keep.then(|| import(item.task)),
        }
    }

    /// The mutations in writing order, and the report; or the conflicts of
    /// [`OnConflict::Fail`].
    pub(crate) fn finish(
        self,
        format: SourceFormat,
        metadata: BTreeMap<String, Value>,
    ) -> std::result::Result<(Vec<Mutation>, ImportReport), Problems> {
        let (parts, report) = self.into_parts(format, metadata)?;
        let mut mutations = parts.removals;
        mutations.extend(parts.historical);
        mutations.extend(parts.imports);
        mutations.extend(parts.follow_ups);
        Ok((mutations, report))
    }

    /// After a stream whose writable mutations [`Planner::add_streaming`] handed out: the rest
    /// in writing order (the history events in exported-LSN order, the follow-up `imported`
    /// events, then a replacing import's removals: the stream wrote other tasks already, so
    /// they come last; they touch only tasks the document does not hold), and the report; or
    /// the conflicts of [`OnConflict::Fail`].
    pub(crate) fn finish_streamed(
        self,
        format: SourceFormat,
        metadata: BTreeMap<String, Value>,
    ) -> std::result::Result<(Vec<Mutation>, ImportReport), Problems> {
        let (parts, report) = self.into_parts(format, metadata)?;
        debug_assert!(parts.imports.is_empty(), "add_streaming hands imports out");
        let mut mutations = parts.historical;
        mutations.extend(parts.imports);
        mutations.extend(parts.follow_ups);
        mutations.extend(parts.removals);
        Ok((mutations, report))
    }

    fn into_parts(
        self,
        format: SourceFormat,
        metadata: BTreeMap<String, Value>,
    ) -> std::result::Result<(PlanParts, ImportReport), Problems> {
        let Planner {
            existing,
            options,
            mut report,
            historical,
            imports,
            follow_ups,
            kept,
            conflicts,
            ..
        } = self;
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        report.metadata = metadata;
        report.format = Some(format);
        let removals = match options.mode {
            ImportMode::Replace => removals(existing, &kept),
            ImportMode::Merge => Vec::new(),
        };
        report.removed = removals.len() as u64;
        if options.dry_run {
            return Ok((PlanParts::default(), report));
        }
        // Sorted as (key, place) pairs, then permuted in place: a mutation is a few hundred
        // bytes, and sorting them directly moved each about log2(n) times (a tenth of a large
        // import's time). Keys are unique (LSN, task number, event number), so an unstable sort
        // gives the same order as a stable one.
        let mut order: Vec<((u64, u64, usize), usize)> = historical
            .iter()
            .enumerate()
            .map(|(place, (key, _))| (*key, place))
            .collect();
        order.sort_unstable();
        let mut historical: Vec<Mutation> = historical.into_iter().map(|(_, m)| m).collect();
        permute(
            &mut historical,
            order.into_iter().map(|(_, place)| place).collect(),
        );
        let parts = PlanParts {
            removals,
            historical,
            imports,
            follow_ups,
        };
        Ok((parts, report))
    }
}

/// Reorders `items` so that `items[j]` becomes the old `items[from[j]]` (`from` a permutation
/// of `0..items.len()`), by following its cycles: each item is moved once, nothing is copied.
fn permute<T>(items: &mut [T], mut from: Vec<usize>) {
    const DONE: usize = usize::MAX;
    for start in 0..from.len() {
        let mut j = start;
        while let Some(slot) = from.get_mut(j).filter(|src| **src != DONE) {
            let src = std::mem::replace(slot, DONE);
            if src == start || src >= items.len() {
                break;
            }
            items.swap(j, src);
            j = src;
        }
    }
}

/// A plan's mutations by kind (see [`Planner::finish`] for their order).
#[derive(Default)]
struct PlanParts {
    removals: Vec<Mutation>,
    historical: Vec<Mutation>,
    imports: Vec<Mutation>,
    follow_ups: Vec<Mutation>,
}

/// For a replacing import: removes every existing task the document does not hold (in id
/// order), keeping its history.
fn removals(existing: &HashSet<String>, kept: &HashSet<&str>) -> Vec<Mutation> {
    let mut gone: Vec<&String> = existing
        .iter()
        .filter(|id| !kept.contains(id.as_str()))
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

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::permute;

    #[test]
    fn permute_puts_each_item_where_the_permutation_says() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in [0usize, 1, 2, 3, 10, 257] {
            for _ in 0..20 {
                let mut from: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut from);
                let old: Vec<String> = (0..n).map(|i| format!("item {i}")).collect();
                let mut items = old.clone();
                permute(&mut items, from.clone());
                let want: Vec<String> = from.iter().map(|&i| old[i].clone()).collect();
                assert_eq!(items, want, "n = {n}, from = {from:?}");
            }
        }
    }
}
