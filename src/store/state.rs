//! The store's in-memory state: every task, every history (including removed tasks'), the
//! idempotency keys and the sessions that closed cleanly. Changed only by applying log records
//! in LSN order, so that replay after a crash rebuilds exactly what was acknowledged.
//!
//! One entry per task id holds both the task (while it lives) and its history (for ever), so
//! applying an event costs one hash lookup. Entries sit in a vector in order of first
//! appearance (a "slot" each, never reused: histories outlive their tasks) and a hash map
//! finds an id's slot; the indexes of `index` refer to tasks by slot, so walking an index
//! costs no hash lookup. Tasks sit behind an `Arc`: regrowth moves small entries instead of
//! whole tasks, and a reader can keep a task without copying it. Counts of history events and
//! removed tasks, and the indexes (tasks by state, role and provider in creation order; sums
//! of attempts and failures) are kept up as events apply, so statistics, counts and listings
//! by creation time need not scan.

mod check;
mod held;
mod ids;
mod index;
mod memory;

use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use super::history::History;
use super::record::{self, Record};
use crate::error::{Error, Result};
use crate::task::{self, Event, EventKind, Task, TaskState, wire};
pub use held::{Head, Held, TaskRef};
use ids::IdTable;
pub use index::{Builder, Given, Keys};
pub use index::{CreatedKey, IdKey, Ordered};
use index::{Facts, Indexes};
pub use memory::MemoryUse;

/// One task id: the task while it exists, and its audit trail, which outlives it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The task as it stands (live, or encoded when terminal: see `Held`); `None` once
    /// removed.
    pub task: Option<Held>,
    /// Every event of the task, including those before a removal.
    pub history: History,
    /// The id, which the id table compares by and the indexes' keys share (moving a task between
    /// indexes then copies no string). The only copy the state holds besides `Task::id`.
    shared_id: Arc<str>,
}

/// Everything the store knows.
#[derive(Debug, Default)]
pub struct State {
    /// Task id -> its slot in `slots`.
    ids: IdTable,
    /// Every task id ever seen and its entry, in order of first appearance. Never shrinks.
    /// (The id is the entry's `shared_id`: a second `String` copy here cost 29 bytes per id.)
    slots: Vec<Entry>,
    /// Tasks by state, role and provider in creation order; sums of attempts and failures.
    indexes: Indexes,
    /// Ids whose task was removed (their history remains).
    removed: usize,
    /// Events across all histories.
    events: u64,
    /// Idempotency keys: request id -> task id.
    pub request_ids: HashMap<String, String>,
    /// Sessions that closed cleanly and may still own running tasks.
    pub closed_sessions: HashSet<u64>,
    /// LSN of the last record applied.
    pub applied_lsn: u64,
    /// Histories keep the positions of their new events, not the bytes: the log reads records
    /// by LSN (`Log::reads_by_lsn`) and the store reads them from there on demand. Set at
    /// open, before the replay, and never changed after (a history never mixes the two).
    pub histories_in_log: bool,
    /// Records applied since the last snapshot.
    pub records_since_snapshot: u64,
    /// Bytes of records applied since the last snapshot.
    pub bytes_since_snapshot: u64,
}

/// A slot's id in `slots` (what the id table compares and rehashes by).
fn id_of<'s>(slots: &'s [Entry]) -> impl Fn(u32) -> &'s str {
    |slot| {
        let entry = slots.get(slot as usize);
        &entry
            .expect("the id table names slots of the state")
            .shared_id
    }
}

fn breaks_state_machine(lsn: u64, id: &str, e: &Error) -> Error {
    Error::corrupt(
        "log",
        None,
        Some(lsn),
        format!("event of task {id:?} breaks the state machine: {e}"),
    )
}

impl Entry {
    /// The task, if live (a terminal one decoded).
    pub fn get(&self) -> Option<TaskRef<'_>> {
        Some(self.task.as_ref()?.get(&self.shared_id))
    }
}

impl State {
    // ----- reading ---------------------------------------------------------------------------

    fn entry(&self, id: &str) -> Option<&Entry> {
        let slot = self.slot_of(id)?;
        self.slots.get(slot as usize)
    }

    /// The slot of `id`, if the state has seen it (live or removed); slots are never reused.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.ids.get(id, id_of(&self.slots))
    }

    /// The live task `id` (a terminal one decoded).
    pub fn task(&self, id: &str) -> Option<TaskRef<'_>> {
        self.entry(id)?.get()
    }

    /// The task `id` when it is pending or running, borrowed (`None` for a terminal task, which
    /// is held encoded, or a removed one).
    pub fn active_task(&self, id: &str) -> Option<&Task> {
        match self.entry(id)?.task.as_ref()? {
            Held::Live(t) => Some(t),
            Held::Terminal(..) => None,
        }
    }

    /// The state of the live task `id`, without decoding anything.
    pub fn task_state(&self, id: &str) -> Option<TaskState> {
        self.entry(id)?.task.as_ref().map(Held::state)
    }

    /// The live task `id`, shared (a terminal one decoded into a new `Arc`).
    pub fn task_shared(&self, id: &str) -> Option<Arc<Task>> {
        let entry = self.entry(id)?;
        Some(entry.task.as_ref()?.shared(&entry.shared_id))
    }

    /// The live task in `slot` (a value of the indexes).
    pub fn task_at(&self, slot: u32) -> Option<TaskRef<'_>> {
        self.slots.get(slot as usize)?.get()
    }

    /// The id of every live task, in no particular order (nothing decoded).
    pub fn live_ids(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|e| e.task.is_some())
            .map(|e| &*e.shared_id)
    }

    /// Every live task, in no particular order (terminal ones decoded as the walk reaches
    /// them).
    pub fn tasks(&self) -> impl Iterator<Item = TaskRef<'_>> {
        self.slots.iter().filter_map(Entry::get)
    }

    /// Number of live tasks.
    pub fn len(&self) -> usize {
        self.indexes.len()
    }

    /// True when no task lives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of live tasks in `state`.
    pub fn count_in(&self, state: TaskState) -> usize {
        self.indexes.by_state(state).len()
    }

    /// The live tasks in `state`, in creation order.
    pub fn by_state(&self, state: TaskState) -> &Ordered {
        self.indexes.by_state(state)
    }

    /// The live tasks with role `role`, in creation order; `None` when no live task has that
    /// role. (The tasks without a role are counted, not indexed: `role_counts`.)
    pub fn by_role(&self, role: &str) -> Option<&Ordered> {
        self.indexes.by_role.get(role)
    }

    /// The live tasks with provider `provider`, like [`State::by_role`].
    pub fn by_provider(&self, provider: &str) -> Option<&Ordered> {
        self.indexes.by_provider.get(provider)
    }

    /// Live tasks by role (`None`: without one), counted as events apply.
    pub fn role_counts(&self) -> impl Iterator<Item = (Option<&str>, usize)> {
        self.indexes.by_role.counts()
    }

    /// Live tasks by provider (`None`: without one), counted as events apply.
    pub fn provider_counts(&self) -> impl Iterator<Item = (Option<&str>, usize)> {
        self.indexes.by_provider.counts()
    }

    /// Sum of the live tasks' attempt numbers.
    pub fn attempts(&self) -> u64 {
        self.indexes.attempts
    }

    /// Sum of the live tasks' error counts.
    pub fn failures(&self) -> u64 {
        self.indexes.failures
    }

    /// Number of removed tasks whose history is kept.
    pub fn removed_len(&self) -> usize {
        self.removed
    }

    /// Events in all histories, removed tasks' included.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The history of `id`, live or removed.
    pub fn history(&self, id: &str) -> Option<&History> {
        self.entry(id).map(|e| &e.history)
    }

    /// Every entry, live and removed, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.slots.iter().map(|e| (&*e.shared_id, e))
    }

    /// Every entry with its slot, live and removed, in slot order.
    pub fn entries_by_slot(&self) -> impl Iterator<Item = (u32, &str, &Entry)> {
        self.slots
            .iter()
            .enumerate()
            .map(|(slot, e)| (slot as u32, &*e.shared_id, e))
    }

    /// Bytes the histories hold in memory (besides their fixed size): the events not yet in a
    /// snapshot on disk.
    pub fn history_heap_bytes(&self) -> usize {
        self.slots.iter().map(|e| e.history.heap_bytes()).sum()
    }

    // ----- loading (snapshots) ---------------------------------------------------------------

    /// Points every history a snapshot wrote at that snapshot's file (`arena`), freeing the
    /// memory its events took: from now on they are read from disk. `layout` says where each
    /// went; events applied since the snapshot was encoded stay in memory.
    pub fn rebase_histories(
        &mut self,
        arena: &Arc<super::history::Arena>,
        layout: &super::snapshot::Layout,
    ) -> Result<()> {
        for &(slot, start, len, count) in &layout.histories {
            let entry = self
                .slots
                .get_mut(slot as usize)
                .ok_or_else(|| Error::Codec {
                    what: "snapshot layout".into(),
                    reason: format!("names slot {slot}, which does not exist"),
                    source: None,
                })?;
            entry.history.rebase(arena, start, len, count)?;
        }
        Ok(())
    }

    /// Room for `n` more ids.
    pub fn reserve(&mut self, n: usize) {
        self.ids.reserve(n, id_of(&self.slots));
        self.slots.reserve(n);
    }

    /// Puts a task (as the state holds it) and its history in place while loading a snapshot.
    /// Returns the task's slot.
    pub fn load(&mut self, id: &str, task: Option<Held>, history: History) -> u32 {
        // `new_slot` takes the id as new (a snapshot's ids strictly ascend: checked by its reader;
        // v1 looks each up first): one hash per id instead of a look-up first.
        self.events += history.len() as u64;
        let slot = self.new_slot(id);
        let entry = self.slots.last_mut().expect("new_slot pushed one");
        match &task {
            // NOTE: while suspended (a snapshot open) the keys are not even read: the indexes
            // are built at the end from every task at once.
            Some(t) if !self.indexes.suspended => {
                self.indexes.insert(slot, &entry.shared_id, t.keys());
            }
            Some(_) => {}
            None => self.removed += 1,
        }
        entry.task = task;
        entry.history = history;
        slot
    }

    /// Adds an entry for an id not seen before; returns its slot.
    fn new_slot(&mut self, id: &str) -> u32 {
        let slot = u32::try_from(self.slots.len()).expect("should hold fewer than 2^32 task ids");
        // Callers looked the id up first, or (a snapshot) checked that ids strictly ascend.
        debug_assert!(
            self.ids.is_deferring() || self.slot_of(id).is_none(),
            "a new slot's id is new"
        );
        self.slots.push(Entry {
            task: None,
            history: History::default(),
            shared_id: Arc::from(id),
        });
        self.ids.insert_new(id, slot, id_of(&self.slots));
        slot
    }

    /// Holds new slots' ids back from the id table until [`State::enter_ids`] enters them all
    /// at once, in the table's own order (`IdTable::defer`). For loading a snapshot into an
    /// empty state: its ids are distinct (its reader checks that they ascend), and nothing
    /// looks an id up until the load ends.
    pub fn defer_ids(&mut self) {
        debug_assert!(
            self.slots.is_empty(),
            "ids are deferred from an empty state"
        );
        self.ids.defer();
    }

    /// Enters the ids held back since [`State::defer_ids`] in the id table.
    pub fn enter_ids(&mut self) {
        self.ids.enter_deferred(id_of(&self.slots));
    }

    /// Stops keeping the indexes up (counts and indexed queries are wrong until
    /// [`State::rebuild_indexes`]); for replay at open.
    pub fn suspend_indexes(&mut self) {
        self.indexes = Indexes {
            suspended: true,
            ..Indexes::default()
        };
    }

    /// Builds the indexes from the live tasks and keeps them up again.
    pub fn rebuild_indexes(&mut self) {
        let mut builder = Builder::default();
        for (slot, e) in (0u32..).zip(&self.slots) {
            if let Some(t) = &e.task {
                builder.push(slot, t.keys());
            }
        }
        self.indexes = builder.finish(Given::AnyOrder, |slot| self.shared_id(slot));
    }

    /// Installs the indexes `builder` gathered while loading (given in order `given`) and
    /// keeps them up again: a snapshot open has every task's keys as it reads its record, so
    /// it need not read them back from the held tasks as [`State::rebuild_indexes`] does.
    pub fn build_indexes(&mut self, builder: Builder, given: Given) {
        debug_assert!(self.indexes.suspended, "indexes built over suspended ones");
        self.indexes = builder.finish(given, |slot| self.shared_id(slot));
    }

    fn shared_id(&self, slot: u32) -> &Arc<str> {
        let entry = self.slots.get(slot as usize);
        &entry
            .expect("the indexes name slots of the state")
            .shared_id
    }

    /// Frees spare history capacity after a bulk load.
    pub fn shrink_histories(&mut self) {
        for e in &mut self.slots {
            e.history.shrink();
        }
    }

    // ----- applying ----------------------------------------------------------------------------

    /// Applies one log record read back during replay.
    pub fn apply_record(&mut self, lsn: u64, bytes: &[u8]) -> Result<()> {
        match bytes.split_first() {
            Some((&record::TAG_EVENT, body)) => self.replay_event(lsn, body)?,
            _ => match record::decode(lsn, bytes)? {
                Record::SessionClosed(session) => {
                    self.closed_sessions.insert(session);
                }
                Record::Event(_) => unreachable!("event records are matched by tag above"),
            },
        }
        self.mark_applied(lsn, bytes.len());
        Ok(())
    }

    /// Replays one event: the common case (an event changing a live task) looks the task up
    /// by an id borrowed from the log and applies in place, without copying id or task.
    fn replay_event(&mut self, lsn: u64, body: &[u8]) -> Result<()> {
        let mut decoded = wire::decode_event_ref(body).map_err(|e| record::at_lsn(e, lsn))?;
        if !task::apply::reshapes(&decoded.event.kind)
            && let Some(slot) = self.slot_of(decoded.task_id)
            && let Some(entry) = self.slots.get_mut(slot as usize)
            && entry.task.is_some()
        {
            let id = decoded.task_id;
            // The event's id stays empty: `apply` never reads it; the lookup above used the
            // borrowed one.
            let in_log = self.histories_in_log;
            apply_in_place(
                entry,
                slot,
                in_log,
                &mut self.indexes,
                lsn,
                &mut decoded.event,
                body,
            )
            .map_err(|e| breaks_state_machine(lsn, id, &e))?;
            self.events += 1;
            return Ok(());
        }
        let mut event = decoded.event;
        event.task_id = decoded.task_id.to_string();
        // A task created under an id never seen (every task of a log open but the re-created):
        // nothing to check it against, and its strings move into the task uncopied.
        if self.install_new(lsn, &mut event, body) {
            return Ok(());
        }
        // Replay re-checks the state machine: a log that breaks it was not written by us.
        let current = self.task(&event.task_id);
        task::apply::check(current.as_deref(), &event)
            .map_err(|e| breaks_state_machine(lsn, &event.task_id, &e))?;
        // The task read for the check is the one the event applies to (a finished task is
        // decoded once, not twice).
        let updated = task::apply::next(current.map(TaskRef::into_owned), event.clone(), lsn);
        self.install(lsn, &event, updated, body);
        Ok(())
    }

    /// An event that changes an existing task, applied without copying the task, given the
    /// slot of its task id (`slot_of`; `None`: no such id yet). Returns false for events that
    /// create, replace or remove a task, or whose task is not live (use `install`).
    pub fn apply_in_place_at(
        &mut self,
        slot: Option<u32>,
        lsn: u64,
        event: &mut Event,
        event_bytes: &[u8],
    ) -> Result<bool> {
        if task::apply::reshapes(&event.kind) {
            return Ok(false);
        }
        let Some(slot) = slot else {
            return Ok(false);
        };
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return Ok(false);
        };
        debug_assert_eq!(
            *entry.shared_id, *event.task_id,
            "the event's id has this slot"
        );
        if entry.task.is_none() {
            return Ok(false);
        }
        let in_log = self.histories_in_log;
        if let Err(e) = apply_in_place(
            entry,
            slot,
            in_log,
            &mut self.indexes,
            lsn,
            event,
            event_bytes,
        ) {
            // Named by the slot's id, looked up again only here: cloning its `Arc` up front
            // cost two atomic operations on every event (about 2 % of a bulk write).
            let id = self.slots.get(slot as usize).map_or("?", |e| &*e.shared_id);
            return Err(breaks_state_machine(lsn, id, &e));
        }
        self.events += 1;
        Ok(true)
    }

    /// The task as it will be after `event` (None when the event removes it), computed on a
    /// copy: the state is untouched.
    pub fn next_task_state(
        &self,
        current: Option<TaskRef<'_>>,
        event: &Event,
        lsn: u64,
    ) -> Option<Task> {
        task::apply::next(current.map(TaskRef::into_owned), event.clone(), lsn)
    }

    /// Installs the task a `Created` event makes under an id the state has never seen (one
    /// lookup, and the event's strings move into the task instead of being copied, as
    /// `next_task_state` and `install` would) and returns true; any other event is left as it
    /// was (false). Such an event passes the state machine's check by definition
    /// (`check(None, Created)`). What is left of an installed event means nothing.
    #[must_use = "an event not installed is still to be applied"]
    pub fn install_new(&mut self, lsn: u64, event: &mut Event, event_bytes: &[u8]) -> bool {
        if !matches!(event.kind, EventKind::Created { .. })
            || self.slot_of(&event.task_id).is_some()
        {
            return false;
        }
        if let EventKind::Created {
            request_id: Some(r),
            ..
        } = &event.kind
        {
            self.request_ids.insert(r.clone(), event.task_id.clone());
        }
        let slot = self.new_slot(&event.task_id);
        let task = task::apply::create(event, lsn).expect("a Created event creates a task");
        let entry = self.slots.last_mut().expect("new_slot pushed one");
        record_event(
            &mut entry.history,
            self.histories_in_log,
            lsn,
            None,
            Some(task.state),
            event_bytes,
        );
        self.indexes.insert(slot, &entry.shared_id, Keys::of(&task));
        entry.task = Some(Held::new(task));
        self.events += 1;
        true
    }

    /// Puts a task's new state in place and appends the event to its history.
    pub fn install(&mut self, lsn: u64, event: &Event, updated: Option<Task>, event_bytes: &[u8]) {
        let id = &event.task_id;
        if let EventKind::Created {
            request_id: Some(r),
            ..
        } = &event.kind
        {
            self.request_ids.insert(r.clone(), id.clone());
        }
        let to = updated.as_ref().map(|t| t.state);
        let slot = match self.slot_of(id) {
            Some(slot) => slot,
            None => self.new_slot(id),
        };
        let entry = self
            .slots
            .get_mut(slot as usize)
            .expect("the id map should hold only slots that exist");
        let from = entry.task.as_ref().map(Held::state);
        let was_removed = from.is_none() && !entry.history.is_empty();
        // A task created again under a removed id continues the old audit trail.
        record_event(
            &mut entry.history,
            self.histories_in_log,
            lsn,
            from,
            to,
            event_bytes,
        );
        if let Some(old) = &entry.task {
            self.indexes.remove(&entry.shared_id, old.keys());
        }
        if let Some(new) = &updated {
            self.indexes.insert(slot, &entry.shared_id, Keys::of(new));
        }
        entry.task = updated.map(Held::new);
        self.events += 1;
        match (from, to) {
            (Some(_), None) => self.removed += 1,
            (None, Some(_)) if was_removed => self.removed -= 1,
            _ => {}
        }
    }

    /// Records that `lsn` was applied.
    pub fn mark_applied(&mut self, lsn: u64, bytes: usize) {
        assert!(
            lsn > self.applied_lsn || self.applied_lsn == 0,
            "records must apply in LSN order"
        );
        self.applied_lsn = lsn;
        self.records_since_snapshot += 1;
        self.bytes_since_snapshot += bytes as u64;
    }

    // ----- sessions and leases -----------------------------------------------------------------

    /// The live tasks in `state`, in creation order.
    pub fn tasks_in(&self, state: TaskState) -> impl Iterator<Item = TaskRef<'_>> {
        self.by_state(state)
            .values()
            .filter_map(|&slot| self.task_at(slot))
    }

    /// The id and head (keys, times, version) of every live task in `state`, in creation
    /// order, decoding no task.
    pub fn heads_in(&self, state: TaskState) -> impl Iterator<Item = (&str, Head<'_>)> {
        self.by_state(state).values().filter_map(|&slot| {
            let entry = self.slots.get(slot as usize)?;
            Some((&*entry.shared_id, entry.task.as_ref()?.head()))
        })
    }

    /// Running tasks whose session never closed: their owner died.
    pub fn orphaned_running(&self, current_session: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks_in(TaskState::Running)
            .filter(|t| {
                t.session != 0
                    && t.session != current_session
                    && !self.closed_sessions.contains(&t.session)
            })
            .map(|t| t.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Running tasks whose lease lapsed before `now`.
    pub fn expired_leases(&self, now: crate::task::Timestamp) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks_in(TaskState::Running)
            .filter(|t| t.lease.as_ref().is_some_and(|l| l.expires_at < now))
            .map(|t| t.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Forgets closed sessions that no running task refers to any more.
    pub fn prune_sessions(&mut self) {
        let live: HashSet<u64> = self
            .tasks_in(TaskState::Running)
            .map(|t| t.session)
            .collect();
        self.closed_sessions.retain(|s| live.contains(s));
    }
}

/// Appends an event to a history: its position when the state keeps histories in the log
/// (and the history holds no bytes of its own), else its bytes.
fn record_event(
    history: &mut History,
    in_log: bool,
    lsn: u64,
    from: Option<TaskState>,
    to: Option<TaskState>,
    event_bytes: &[u8],
) {
    if !(in_log && history.push_ref(lsn, from, to, event_bytes.len())) {
        history.push(lsn, from, to, event_bytes);
    }
}

/// Applies an event that changes an existing task (not one that `task::apply::reshapes`) to
/// the task of `entry` (in `slot`), in place: checks it against the state machine, appends it
/// to the history and keeps `indexes` up. A terminal task is decoded for it and encoded again
/// after (events on terminal tasks are rare: a retry, an update).
fn apply_in_place(
    entry: &mut Entry,
    slot: u32,
    in_log: bool,
    indexes: &mut Indexes,
    lsn: u64,
    event: &mut Event,
    event_bytes: &[u8],
) -> Result<()> {
    let held = entry
        .task
        .as_mut()
        .expect("apply_in_place is given a live task");
    // Checked before anything changes (a terminal task is decoded twice then; it is rare).
    task::apply::check(Some(&held.get(&entry.shared_id)), event)?;
    let task = held.make_live(&entry.shared_id);
    let before = Facts::of(task);
    // Only an update renames a role or provider: re-index the task whole (updates are rare).
    // Every other event keeps the names, and `changed` moves only what moved.
    let renames =
        matches!(&event.kind, EventKind::Updated(u) if u.role.is_some() || u.provider.is_some());
    if renames {
        indexes.remove(&entry.shared_id, Keys::of(task));
    }
    task::apply::apply(task, event, lsn);
    if renames {
        indexes.insert(slot, &entry.shared_id, Keys::of(task));
    } else {
        indexes.changed(slot, &entry.shared_id, before, task);
    }
    let to = Some(task.state);
    held.settle();
    record_event(
        &mut entry.history,
        in_log,
        lsn,
        Some(before.state()),
        to,
        event_bytes,
    );
    Ok(())
}
