//! The server's ready queue: the pending tasks a worker's claim may take, by kind, highest
//! priority first, then in creation order (the order of a listing by creation time: creation
//! millisecond, then id); tasks whose `runtime.not_before` is still ahead wait apart until due.
//!
//! NOTE: the queue is a hint, never the truth. Only the hub's thread changes it, in LSN order,
//! from the task as the store holds it; a claim re-reads the task and claims it under its
//! version, so a stale entry costs one refused claim, never a double claim.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;
use tasklog::runtime::{META_KIND, META_NOT_BEFORE};
use tasklog::{Task, TaskState};

/// Order of the queue: priority (highest first), creation time, id.
type Key = (Reverse<u8>, i64, String);

/// Where a queued task sits.
#[derive(Clone, Debug)]
struct Slot {
    key: Key,
    kind: Option<String>,
    /// Ready from this time (ms since the epoch); 0 when it was never held back.
    due_ms: i64,
    /// True while it waits in `delayed`.
    delayed: bool,
}

/// Pending tasks by kind and order.
#[derive(Debug, Default)]
pub struct Ready {
    slots: HashMap<String, Slot>,
    /// Every ready task.
    all: BTreeSet<Key>,
    /// Ready tasks by kind (`None`: tasks without a kind).
    by_kind: HashMap<Option<String>, BTreeSet<Key>>,
    /// Tasks held back, by due time.
    delayed: BTreeSet<(i64, String)>,
}

/// The kind of a task (`runtime.kind`), when it is a string.
pub fn kind_of(task: &Task) -> Option<&str> {
    task.metadata.get(META_KIND).and_then(Value::as_str)
}

/// When a task may run (`runtime.not_before`, ms since the epoch); 0 when not held back.
pub fn not_before_ms(task: &Task) -> i64 {
    task.metadata
        .get(META_NOT_BEFORE)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

impl Ready {
    /// Puts `task` where its state says: queued when pending, out of the queue otherwise.
    /// True when it is queued now.
    pub fn upsert(&mut self, task: &Task, now_ms: i64) -> bool {
        self.remove(&task.id);
        // A schedule's record is a pending task that no worker may ever run.
        if task.state != TaskState::Pending || tasklog::runtime::schedule::is_record(task) {
            return false;
        }
        let key: Key = (Reverse(task.priority), task.created_at.0, task.id.clone());
        let due_ms = not_before_ms(task);
        let slot = Slot {
            key: key.clone(),
            kind: kind_of(task).map(str::to_string),
            due_ms,
            delayed: due_ms > now_ms,
        };
        if slot.delayed {
            self.delayed.insert((due_ms, task.id.clone()));
        } else {
            self.all.insert(key.clone());
            self.by_kind
                .entry(slot.kind.clone())
                .or_default()
                .insert(key);
        }
        self.slots.insert(task.id.clone(), slot);
        true
    }

    /// Takes `id` out of the queue.
    pub fn remove(&mut self, id: &str) {
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        if slot.delayed {
            self.delayed.remove(&(slot.due_ms, id.to_string()));
            return;
        }
        self.all.remove(&slot.key);
        if let Some(set) = self.by_kind.get_mut(&slot.kind) {
            set.remove(&slot.key);
            if set.is_empty() {
                self.by_kind.remove(&slot.kind);
            }
        }
    }

    /// Empties the queue.
    pub fn clear(&mut self) {
        *self = Ready::default();
    }

    /// Number of queued tasks (ready and held back).
    pub fn queued(&self) -> usize {
        self.slots.len()
    }

    /// Moves the held-back tasks that are due by `now_ms` to the ready sets.
    fn promote(&mut self, now_ms: i64) {
        while let Some(first) = self.delayed.first() {
            if first.0 > now_ms {
                break;
            }
            let Some((_, id)) = self.delayed.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.delayed = false;
                self.all.insert(slot.key.clone());
                self.by_kind
                    .entry(slot.kind.clone())
                    .or_default()
                    .insert(slot.key.clone());
            }
        }
    }

    /// The first ready task of one of `kinds` (any kind when `None`) not in `skip`.
    #[cfg(test)]
    pub fn best(
        &mut self,
        kinds: Option<&[String]>,
        now_ms: i64,
        skip: &HashSet<String>,
    ) -> Option<String> {
        self.best_except(kinds, now_ms, skip, &HashSet::new())
    }

    /// [`Ready::best`], leaving out the tasks of the kinds in `held` (paused, or at a limit).
    pub fn best_except(
        &mut self,
        kinds: Option<&[String]>,
        now_ms: i64,
        skip: &HashSet<String>,
        held: &HashSet<String>,
    ) -> Option<String> {
        self.promote(now_ms);
        let slots = &self.slots;
        let is_held = |id: &str| {
            !held.is_empty()
                && slots
                    .get(id)
                    .and_then(|s| s.kind.as_ref())
                    .is_some_and(|k| held.contains(k))
        };
        let first = |set: &BTreeSet<Key>| {
            set.iter()
                .find(|k| !skip.contains(&k.2) && !is_held(&k.2))
                .cloned()
        };
        let key = match kinds {
            None => first(&self.all),
            Some(kinds) => kinds
                .iter()
                .filter(|k| !held.contains(*k))
                .filter_map(|k| self.by_kind.get(&Some(k.clone())))
                .filter_map(first)
                .min(),
        };
        key.map(|k| k.2)
    }

    /// When the next held-back task becomes due (ms since the epoch).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.delayed.first().map(|(due, _)| *due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, prio: u8, created: i64, kind: Option<&str>, not_before: i64) -> Task {
        let mut new = tasklog::NewTask::new(id).id(id).priority(prio);
        if let Some(k) = kind {
            new = new.meta(META_KIND, Value::from(k));
        }
        if not_before > 0 {
            new = new.meta(META_NOT_BEFORE, Value::from(not_before));
        }
        let mut event = tasklog::task::Event {
            task_id: id.into(),
            at: tasklog::task::Timestamp(created),
            actor: None,
            kind: tasklog::task::EventKind::Created {
                title: new.title,
                description: String::new(),
                role: None,
                provider: None,
                model: None,
                tags: Vec::new(),
                metadata: new.metadata,
                priority: new.priority,
                request_id: None,
            },
        };
        let mut t =
            tasklog::task::apply::create(&mut event, 1).expect("a created event makes a task");
        t.id = id.into();
        t
    }

    #[test]
    fn priority_then_creation_then_kind_and_delay() {
        let mut r = Ready::default();
        let none = HashSet::new();
        r.upsert(&task("a", 1, 10, Some("x"), 0), 0);
        r.upsert(&task("b", 5, 20, Some("y"), 0), 0);
        r.upsert(&task("c", 5, 15, Some("x"), 0), 0);
        r.upsert(&task("d", 9, 5, Some("x"), 100), 0);
        assert_eq!(r.best(None, 0, &none).as_deref(), Some("c"));
        let x = ["x".to_string()];
        assert_eq!(r.best(Some(&x), 0, &none).as_deref(), Some("c"));
        let skip: HashSet<String> = ["c".to_string()].into();
        assert_eq!(r.best(Some(&x), 0, &skip).as_deref(), Some("a"));
        assert_eq!(r.next_due_ms(), Some(100));
        assert_eq!(r.best(Some(&x), 100, &none).as_deref(), Some("d"));
        r.remove("d");
        r.remove("c");
        assert_eq!(r.best(None, 100, &none).as_deref(), Some("b"));
        let mut done = task("b", 5, 20, Some("y"), 0);
        done.state = TaskState::Running;
        assert!(!r.upsert(&done, 100));
        assert_eq!(r.queued(), 1);
    }
}
