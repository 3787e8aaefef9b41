//! The store's in-memory state: every task, every history (including removed tasks'), the
//! idempotency keys and the sessions that closed cleanly. Changed only by applying log records
//! in LSN order, so that replay after a crash rebuilds exactly what was acknowledged.
//!
//! One map entry per task id holds both the task (while it lives) and its history (for ever),
//! so applying an event costs one hash lookup. Tasks sit behind an `Arc`: the map's regrowth
//! moves 64-byte entries instead of whole tasks, and a reader can keep a task without copying
//! it. Counts by state and of history events are kept up as events apply, so statistics and
//! counts do not scan.

use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use super::history::History;
use super::record::{self, Record};
use crate::error::{Error, Result};
use crate::task::{self, Event, EventKind, Task, TaskState, wire};

/// One task id: the task while it exists, and its audit trail, which outlives it.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// The task as it stands; `None` once removed.
    pub task: Option<Arc<Task>>,
    /// Every event of the task, including those before a removal.
    pub history: History,
}

/// Everything the store knows.
#[derive(Debug, Default)]
pub struct State {
    /// Every task id ever seen.
    entries: HashMap<String, Entry>,
    /// Live tasks in each state, indexed by `state_index`.
    by_state: [usize; TaskState::ALL.len()],
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
    /// Records applied since the last snapshot.
    pub records_since_snapshot: u64,
    /// Bytes of records applied since the last snapshot.
    pub bytes_since_snapshot: u64,
}

fn state_index(s: TaskState) -> usize {
    TaskState::ALL
        .iter()
        .position(|&x| x == s)
        .expect("TaskState::ALL lists every state")
}

fn breaks_state_machine(lsn: u64, id: &str, e: &Error) -> Error {
    Error::corrupt(
        "log",
        None,
        Some(lsn),
        format!("event of task {id:?} breaks the state machine: {e}"),
    )
}

impl State {
    // ----- reading ---------------------------------------------------------------------------

    /// The live task `id`.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.entries.get(id)?.task.as_deref()
    }

    /// The live task `id`, shared.
    pub fn task_shared(&self, id: &str) -> Option<&Arc<Task>> {
        self.entries.get(id)?.task.as_ref()
    }

    /// Every live task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.entries.values().filter_map(|e| e.task.as_deref())
    }

    /// Every live task, shared, in no particular order.
    pub fn tasks_shared(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.entries.values().filter_map(|e| e.task.as_ref())
    }

    /// Number of live tasks.
    pub fn len(&self) -> usize {
        self.by_state.iter().sum()
    }

    /// True when no task lives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of live tasks in `state`.
    pub fn count_in(&self, state: TaskState) -> usize {
        self.by_state[state_index(state)]
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
        self.entries.get(id).map(|e| &e.history)
    }

    /// Every entry, live and removed, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    // ----- loading (snapshots) ---------------------------------------------------------------

    /// Room for `n` more ids.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Puts a task and its history in place while loading a snapshot.
    pub fn load(&mut self, id: String, task: Option<Task>, history: History) {
        self.events += history.len() as u64;
        match &task {
            Some(t) => self.by_state[state_index(t.state)] += 1,
            None => self.removed += 1,
        }
        let previous = self.entries.insert(
            id,
            Entry {
                task: task.map(Arc::new),
                history,
            },
        );
        assert!(previous.is_none(), "a snapshot lists each id once");
    }

    /// Frees spare history capacity after a bulk load.
    pub fn shrink_histories(&mut self) {
        for e in self.entries.values_mut() {
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
        let decoded = wire::decode_event_ref(body).map_err(|e| record::at_lsn(e, lsn))?;
        let reshapes = matches!(
            decoded.kind,
            EventKind::Created { .. } | EventKind::Removed { .. } | EventKind::Imported { .. }
        );
        if !reshapes
            && let Some(entry) = self.entries.get_mut(decoded.task_id)
            && let Some(task) = entry.task.as_mut()
        {
            let id = decoded.task_id;
            let event = Event {
                // `apply` never reads the id; the lookup above used the borrowed one.
                task_id: String::new(),
                at: decoded.at,
                actor: decoded.actor,
                kind: decoded.kind,
            };
            let task = Arc::make_mut(task);
            task::apply::check(Some(task), &event)
                .map_err(|e| breaks_state_machine(lsn, id, &e))?;
            let from = task.state;
            task::apply::apply(task, event, lsn);
            let to = task.state;
            entry.history.push(lsn, Some(from), Some(to), body);
            self.moved(from, to);
            self.events += 1;
            return Ok(());
        }
        let event = Event {
            task_id: decoded.task_id.to_string(),
            at: decoded.at,
            actor: decoded.actor,
            kind: decoded.kind,
        };
        // Replay re-checks the state machine: a log that breaks it was not written by us.
        let current = self.task(&event.task_id);
        task::apply::check(current, &event)
            .map_err(|e| breaks_state_machine(lsn, &event.task_id, &e))?;
        let updated = self.next_task_state_owned(event.clone(), lsn);
        self.install(lsn, &event, updated, body);
        Ok(())
    }

    /// An event that changes an existing task, applied without copying the task. Returns
    /// false for events that create, replace or remove a task (use `install`).
    pub fn apply_in_place(&mut self, lsn: u64, event: Event, event_bytes: &[u8]) -> Result<bool> {
        if matches!(
            event.kind,
            EventKind::Created { .. } | EventKind::Removed { .. } | EventKind::Imported { .. }
        ) {
            return Ok(false);
        }
        let Some(entry) = self.entries.get_mut(&event.task_id) else {
            return Ok(false);
        };
        let Some(task) = entry.task.as_mut() else {
            return Ok(false);
        };
        let task = Arc::make_mut(task);
        task::apply::check(Some(task), &event)
            .map_err(|e| breaks_state_machine(lsn, &event.task_id, &e))?;
        let from = task.state;
        task::apply::apply(task, event, lsn);
        let to = task.state;
        entry.history.push(lsn, Some(from), Some(to), event_bytes);
        self.moved(from, to);
        self.events += 1;
        Ok(true)
    }

    /// The task as it will be after `event` (None when the event removes it), computed on a
    /// copy: the state is untouched.
    pub fn next_task_state(&self, current: Option<&Task>, event: &Event, lsn: u64) -> Option<Task> {
        next_task(current, event.clone(), lsn)
    }

    fn next_task_state_owned(&self, event: Event, lsn: u64) -> Option<Task> {
        next_task(self.task(&event.task_id), event, lsn)
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
        let entry = match self.entries.get_mut(id.as_str()) {
            Some(e) => e,
            None => self.entries.entry(id.clone()).or_default(),
        };
        let from = entry.task.as_ref().map(|t| t.state);
        let was_removed = from.is_none() && !entry.history.is_empty();
        // A task created again under a removed id continues the old audit trail.
        entry.history.push(lsn, from, to, event_bytes);
        entry.task = updated.map(Arc::new);
        self.events += 1;
        match (from, to) {
            (Some(f), Some(t)) => self.moved(f, t),
            (Some(f), None) => {
                self.by_state[state_index(f)] -= 1;
                self.removed += 1;
            }
            (None, Some(t)) => {
                self.by_state[state_index(t)] += 1;
                if was_removed {
                    self.removed -= 1;
                }
            }
            (None, None) => {}
        }
    }

    fn moved(&mut self, from: TaskState, to: TaskState) {
        if from != to {
            self.by_state[state_index(from)] -= 1;
            self.by_state[state_index(to)] += 1;
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

    /// Running tasks whose session never closed: their owner died.
    pub fn orphaned_running(&self, current_session: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks()
            .filter(|t| t.state == TaskState::Running)
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
            .tasks()
            .filter(|t| {
                t.state == TaskState::Running
                    && t.lease.as_ref().is_some_and(|l| l.expires_at < now)
            })
            .map(|t| t.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Forgets closed sessions that no running task refers to any more.
    pub fn prune_sessions(&mut self) {
        let live: HashSet<u64> = self
            .tasks()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.session)
            .collect();
        self.closed_sessions.retain(|s| live.contains(s));
    }
}

fn next_task(current: Option<&Task>, event: Event, lsn: u64) -> Option<Task> {
    if matches!(event.kind, EventKind::Removed { .. }) {
        return None;
    }
    match current {
        Some(t) if !matches!(event.kind, EventKind::Imported { .. }) => {
            let mut t = t.clone();
            task::apply::apply(&mut t, event, lsn);
            Some(t)
        }
        Some(t) => {
            let version = t.version;
            let mut next = task::apply::create(event, lsn)?;
            next.version = version + 1;
            Some(next)
        }
        None => task::apply::create(event, lsn),
    }
}
