//! What an SSE event carries: a committed event with the states it moved its task between,
//! the same fields as an entry of the task's history (`GET /v1/tasks/{id}/history`).
//!
//! A committed event does not say which state its task left. The narrator remembers the state
//! each task it has seen was left in; for a task it has not seen (the first event of a
//! catch-up, or after it forgot), it reads the entry from the task's history once.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use tasklog::store::Committed;
use tasklog::task::{EventKind, Timestamp};
use tasklog::{Store, TaskState};
use utoipa::ToSchema;

/// Most tasks whose state a narrator remembers; past that it forgets them all and reads
/// histories again (bounds the memory of one subscriber).
const REMEMBERED_MAX: usize = 65_536;

/// The `data` of one SSE event: one committed event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventData {
    /// The event's LSN (also the SSE `id`).
    pub lsn: u64,
    /// The task changed.
    pub task_id: String,
    /// The event kind (`created`, `started`, `progress`, ...; also the SSE `event`).
    pub kind: String,
    /// When it happened.
    pub at: Timestamp,
    /// The task's state before (null when the event created it).
    #[schema(required = true)]
    pub from: Option<TaskState>,
    /// The task's state after (null when the event removed it).
    #[schema(required = true)]
    pub to: Option<TaskState>,
    /// Who made the change, when known.
    #[schema(required = true)]
    pub actor: Option<String>,
    /// The event's own fields (as in the task's history).
    pub details: Value,
}

/// Turns committed events into [`EventData`] for one subscriber, in LSN order.
pub struct Narrator {
    store: Store,
    /// The state each remembered task was left in (`None`: removed).
    states: HashMap<String, Option<TaskState>>,
}

impl Narrator {
    /// A narrator reading histories from `store`.
    pub fn new(store: Store) -> Narrator {
        Narrator {
            store,
            states: HashMap::new(),
        }
    }

    /// The data of `c`. Call in LSN order.
    pub fn describe(&mut self, c: &Committed) -> EventData {
        let id = &c.event.task_id;
        let kind = &c.event.kind;
        let (from, to) = match self.states.get(id) {
            Some(&from) => (from, after(kind, from)),
            None => self.states_in_history(c),
        };
        self.remember(id, to);
        EventData {
            lsn: c.lsn,
            task_id: id.clone(),
            kind: kind.name().to_string(),
            at: c.event.at,
            from,
            to,
            actor: c.event.actor.clone(),
            details: details(kind),
        }
    }

    /// The states of `c` as the task's history recorded them; derived from the event when
    /// the history cannot say (it always can, unless the store failed).
    fn states_in_history(&self, c: &Committed) -> (Option<TaskState>, Option<TaskState>) {
        let id = &c.event.task_id;
        let found = self.store.history(id).ok().and_then(|h| {
            h.binary_search_by_key(&c.lsn, |e| e.lsn)
                .ok()
                .and_then(|i| h.get(i).map(|e| (e.from, e.to)))
        });
        found.unwrap_or_else(|| {
            let from = before(&c.event.kind);
            (from, after(&c.event.kind, from))
        })
    }

    fn remember(&mut self, id: &str, to: Option<TaskState>) {
        match to {
            // Only events that create the task again follow a removal or a completion;
            // their state is known without remembering.
            None | Some(TaskState::Completed) => {
                self.states.remove(id);
            }
            Some(state) => {
                if self.states.len() >= REMEMBERED_MAX {
                    self.states.clear();
                }
                self.states.insert(id.to_string(), Some(state));
            }
        }
    }
}

/// The state after an event, given the state before.
fn after(kind: &EventKind, from: Option<TaskState>) -> Option<TaskState> {
    match kind {
        EventKind::Removed { .. } => None,
        k => k.target_state().or(from),
    }
}

/// The state before an event, as far as the event alone tells.
fn before(kind: &EventKind) -> Option<TaskState> {
    match kind {
        EventKind::Started { .. } => Some(TaskState::Pending),
        EventKind::Heartbeat { .. }
        | EventKind::Progress { .. }
        | EventKind::Checkpoint { .. }
        | EventKind::Completed { .. }
        | EventKind::Failed { .. }
        | EventKind::Requeued { .. }
        | EventKind::Interrupted { .. } => Some(TaskState::Running),
        _ => None,
    }
}

/// The event's own fields as JSON, without the `kind` tag (as in the history).
fn details(kind: &EventKind) -> Value {
    match serde_json::to_value(kind) {
        Ok(Value::Object(mut map)) => {
            map.shift_remove("kind");
            Value::Object(map)
        }
        Ok(_) | Err(_) => Value::Object(Default::default()),
    }
}
