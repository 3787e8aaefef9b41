//! The replay `verify` runs: every event of the log through the state machine's checks,
//! keeping per task only what those checks read.
//!
//! `task::apply::check` reads one thing of the task it is given: its state (and whether it
//! exists). So instead of whole `Task` values and their histories (what an open builds: about
//! 1.9 KB per task of a long history), this keeps one map entry per task id, the id and its
//! state (`None` once removed, which a later `created` may bring back, as in `store::state`).
//! That is the per-task figure of verify's memory: about 80 bytes per task id of up to 15 bytes
//! on 64-bit (the map's 24-byte slot and control byte at its load factor, plus the id's own
//! heap block); the fixed part is one segment's bytes at a time (the replay reads a segment,
//! walks it, then drops it) and one scratch `Task`. History length does not enter:
//! `tests/verify_memory.rs` holds that with a counting allocator.

use std::hash::BuildHasher;

use foldhash::HashMap;

use crate::error::{Error, Result};
use crate::store::record;
use crate::store::state::{Held, State};
use crate::task::{self, EventKind, Progress, Task, TaskState, Timestamp, wire};

/// An order-free fingerprint of a set of (task id, state) pairs: two 64-bit sums of each
/// pair's hash under two independently seeded hashers, and the count. Two sets with the same
/// digest hold the same pairs but for a chance of about 2^-128 (the seeds are random per
/// `Digester`, so no stored file can be made to collide on purpose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Digest {
    a: u64,
    b: u64,
    count: u64,
}

/// Makes [`Digest`]s comparable with each other (the same seeds for both sides).
#[derive(Default)]
pub(super) struct Digester {
    a: foldhash::fast::RandomState,
    b: foldhash::fast::RandomState,
}

impl Digester {
    /// The digest of `pairs` (each id once).
    pub fn of<'a>(&self, pairs: impl Iterator<Item = (&'a str, Option<TaskState>)>) -> Digest {
        let mut d = Digest::default();
        for (id, state) in pairs {
            self.add(&mut d, id, state);
        }
        d
    }

    /// Adds the pair (`id`, `state`) to `d` (each id once).
    pub fn add(&self, d: &mut Digest, id: &str, state: Option<TaskState>) {
        let pair = (id, state);
        d.a = d.a.wrapping_add(self.a.hash_one(pair));
        d.b = d.b.wrapping_add(self.b.hash_one(pair));
        d.count += 1;
    }
}

/// Each known task id and its state (`None`: removed).
pub(super) struct CompactState {
    tasks: HashMap<Box<str>, Option<TaskState>>,
    /// Handed to `check` with the state of the task at hand: `check` reads only `state`.
    scratch: Task,
    /// The last LSN applied (the snapshot's LSN before any record).
    pub applied_lsn: u64,
}

impl CompactState {
    /// An empty store: replay from LSN 1.
    pub fn empty() -> Self {
        CompactState {
            tasks: HashMap::default(),
            scratch: scratch_task(),
            applied_lsn: 0,
        }
    }

    /// What the checks need from a snapshot's state (which the caller then drops).
    pub fn from_state(state: &State) -> Self {
        let mut compact = CompactState::empty();
        compact.tasks.reserve(state.entries().size_hint().0);
        for (id, entry) in state.entries() {
            compact
                .tasks
                .insert(Box::from(id), entry.task.as_ref().map(Held::state));
        }
        compact.applied_lsn = state.applied_lsn;
        compact
    }

    /// The tasks read from a snapshot (each id once; set `applied_lsn` to the snapshot's).
    /// Gathered in a vector as they are read, then entered into a map of their exact size:
    /// growing the map by doubling as they came rehashed every id (a tenth of `verify`'s
    /// time with two snapshots, docs/benchmarks.md).
    pub fn from_snapshot(tasks: Vec<(Box<str>, Option<TaskState>)>) -> Self {
        let mut compact = CompactState::empty();
        compact.tasks.reserve(tasks.len());
        compact.tasks.extend(tasks);
        compact
    }

    /// The digest of the task ids and states held (see [`Digester::of_state`]).
    pub fn digest(&self, digester: &Digester) -> Digest {
        digester.of(self.tasks.iter().map(|(id, state)| (&**id, *state)))
    }

    /// Live tasks (the figure `State::len` gives after a full replay).
    pub fn len(&self) -> usize {
        self.tasks.values().filter(|s| s.is_some()).count()
    }

    /// Checks and applies one log record; errors as `State::apply_record` gives them.
    pub fn apply_record(&mut self, lsn: u64, bytes: &[u8]) -> Result<()> {
        match bytes.split_first() {
            Some((&record::TAG_EVENT, body)) => self.apply_event(lsn, body)?,
            // Session records change nothing `check` reads; decoding them is the check.
            _ => drop(record::decode(lsn, bytes)?),
        }
        self.applied_lsn = lsn;
        Ok(())
    }

    fn apply_event(&mut self, lsn: u64, body: &[u8]) -> Result<()> {
        let decoded = wire::decode_event_ref(body).map_err(|e| record::at_lsn(e, lsn))?;
        let current = self.tasks.get(decoded.task_id).copied().flatten();
        let next = match &decoded.event.kind {
            EventKind::Removed { .. } => None,
            kind => Some(
                task::apply::target_state(kind)
                    .or(current)
                    // Only created/imported events reach a missing task (check below).
                    .unwrap_or(TaskState::Pending),
            ),
        };
        let mut event = decoded.event;
        event.task_id = decoded.task_id.to_string();
        let checked = match current {
            Some(state) => {
                self.scratch.state = state;
                task::apply::check(Some(&self.scratch), &event)
            }
            None => task::apply::check(None, &event),
        };
        checked.map_err(|e| breaks_state_machine(lsn, &event.task_id, &e))?;
        match self.tasks.get_mut(event.task_id.as_str()) {
            Some(slot) => *slot = next,
            None => {
                self.tasks.insert(event.task_id.into_boxed_str(), next);
            }
        }
        Ok(())
    }
}

/// The error `State::apply_record` gives for the same event (same words: scripts read them).
fn breaks_state_machine(lsn: u64, id: &str, e: &Error) -> Error {
    Error::corrupt(
        "log",
        None,
        Some(lsn),
        format!("event of task {id:?} breaks the state machine: {e}"),
    )
}

/// A task whose only field that matters is `state`, set before each check.
fn scratch_task() -> Task {
    Task {
        id: String::new(),
        title: String::new(),
        description: String::new(),
        role: None,
        state: TaskState::Pending,
        progress: Progress::default(),
        created_at: Timestamp::default(),
        updated_at: Timestamp::default(),
        started_at: None,
        completed_at: None,
        provider: None,
        model: None,
        tags: Vec::new(),
        metadata: Default::default(),
        result: None,
        last_error: None,
        error_count: 0,
        attempt: 1,
        priority: 0,
        checkpoint: None,
        outputs: Vec::new(),
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A digest does not depend on the order of its pairs, and tells apart sets that differ
    /// by one state, by one id, by a removal, or by one pair more.
    #[test]
    fn a_digest_is_order_free_and_tells_sets_apart() {
        let d = Digester::default();
        let set = [
            ("a", Some(TaskState::Running)),
            ("b", None),
            ("c", Some(TaskState::Completed)),
        ];
        let digest = d.of(set.iter().copied());
        assert_eq!(digest, d.of(set.iter().rev().copied()));
        let changed = [
            ("a", Some(TaskState::Pending)),
            ("b", None),
            ("c", Some(TaskState::Completed)),
        ];
        assert_ne!(digest, d.of(changed.iter().copied()));
        let renamed = [
            ("a", Some(TaskState::Running)),
            ("B", None),
            ("c", Some(TaskState::Completed)),
        ];
        assert_ne!(digest, d.of(renamed.iter().copied()));
        let removed = [("a", Some(TaskState::Running)), ("b", None), ("c", None)];
        assert_ne!(digest, d.of(removed.iter().copied()));
        assert_ne!(digest, d.of(set.iter().take(2).copied()));
        assert_eq!(d.of(std::iter::empty()), Digest::default());
    }
}
