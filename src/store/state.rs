//! The store's in-memory state: every task, every history (including removed tasks'), the
//! idempotency keys and the sessions that closed cleanly. Changed only by applying log records
//! in LSN order, so that replay after a crash rebuilds exactly what was acknowledged.

use foldhash::{HashMap, HashSet};

use super::history::History;
use super::record::{self, Record};
use crate::error::Result;
use crate::task::{self, Event, EventKind, Task, TaskState};

/// Everything the store knows.
#[derive(Debug, Default)]
pub struct State {
    /// Live tasks by id.
    pub tasks: HashMap<String, Task>,
    /// Histories of live tasks, by id.
    pub histories: HashMap<String, History>,
    /// Histories of removed tasks (the audit trail outlives the task).
    pub removed: HashMap<String, History>,
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

impl State {
    /// Applies one log record read back during replay.
    pub fn apply_record(&mut self, lsn: u64, bytes: &[u8]) -> Result<()> {
        match record::decode(lsn, bytes)? {
            Record::Event(event) => {
                if self.apply_in_place(lsn, &event, record::event_body(bytes))? {
                    self.mark_applied(lsn, bytes.len());
                    return Ok(());
                }
                // Replay re-checks the state machine: a log that breaks it was not written by us.
                let current = self.tasks.get(&event.task_id);
                task::apply::check(current, &event).map_err(|e| {
                    crate::Error::corrupt(
                        "log",
                        None,
                        Some(lsn),
                        format!("event breaks the state machine: {e}"),
                    )
                })?;
                let updated = self.next_task_state(current, &event, lsn);
                self.install(lsn, &event, updated, record::event_body(bytes));
            }
            Record::SessionClosed(session) => {
                self.closed_sessions.insert(session);
            }
        }
        self.mark_applied(lsn, bytes.len());
        Ok(())
    }

    /// The common case of replay: an event that changes an existing task, applied without
    /// copying the task. Returns false for events that create, replace or remove a task.
    pub fn apply_in_place(&mut self, lsn: u64, event: &Event, event_bytes: &[u8]) -> Result<bool> {
        if matches!(
            event.kind,
            EventKind::Created { .. } | EventKind::Removed { .. } | EventKind::Imported { .. }
        ) {
            return Ok(false);
        }
        let Some(task) = self.tasks.get_mut(&event.task_id) else {
            return Ok(false);
        };
        task::apply::check(Some(task), event).map_err(|e| {
            crate::Error::corrupt(
                "log",
                None,
                Some(lsn),
                format!("event breaks the state machine: {e}"),
            )
        })?;
        let from = task.state;
        task::apply::apply(task, event, lsn);
        let to = task.state;
        let Some(history) = self.histories.get_mut(&event.task_id) else {
            return Err(crate::Error::corrupt(
                "log",
                None,
                Some(lsn),
                format!("task {:?} has no history", event.task_id),
            ));
        };
        history.push(lsn, Some(from), Some(to), event_bytes);
        Ok(true)
    }

    /// The task as it will be after `event` (None when the event removes it).
    pub fn next_task_state(&self, current: Option<&Task>, event: &Event, lsn: u64) -> Option<Task> {
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
                let mut next = task::apply::create(event, lsn)?;
                next.version = t.version + 1;
                Some(next)
            }
            None => task::apply::create(event, lsn),
        }
    }

    /// Puts a task's new state in place and appends the event to its history.
    pub fn install(&mut self, lsn: u64, event: &Event, updated: Option<Task>, event_bytes: &[u8]) {
        let id = &event.task_id;
        let from = self.tasks.get(id).map(|t| t.state);
        let to = updated.as_ref().map(|t| t.state);
        if let EventKind::Created {
            request_id: Some(r),
            ..
        } = &event.kind
        {
            self.request_ids.insert(r.clone(), id.clone());
        }
        let mut history = match self.histories.remove(id) {
            Some(h) => h,
            // A task created again under a removed id continues the old audit trail.
            None => self.removed.remove(id).unwrap_or_default(),
        };
        history.push(lsn, from, to, event_bytes);
        match updated {
            Some(task) => {
                self.tasks.insert(id.clone(), task);
                self.histories.insert(id.clone(), history);
            }
            None => {
                self.tasks.remove(id);
                self.removed.insert(id.clone(), history);
            }
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

    /// Running tasks whose session never closed: their owner died.
    pub fn orphaned_running(&self, current_session: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks
            .values()
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
            .tasks
            .values()
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
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.session)
            .collect();
        self.closed_sessions.retain(|s| live.contains(s));
    }
}
