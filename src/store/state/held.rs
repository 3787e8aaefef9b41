//! How the state holds a task: a live one (pending or running) as a `Task` that most events
//! change in place, a terminal one (completed, failed, cancelled, discarded) as its encoded
//! record, decoded when read.
//!
//! Nearly every task of a long-lived store is terminal and read rarely (a `get`, a listing of
//! finished tasks, an export), so the terminal form is what sets the store's memory: one
//! allocation of about 250 bytes for a typical task, instead of a 408-byte `Task` plus one
//! allocation per string (issue #20, docs/design.md "The size of a task in memory"). The record
//! is the v2 snapshot's task record (`TaskV2`), so a snapshot writes it as it is and a snapshot
//! open keeps it as it was read.
//!
//! Invariant: a task is held `Terminal` exactly when its state is terminal. Everything that
//! changes a held task ends with [`Held::settle`] or builds a new one with [`Held::new`].

use std::ops::Deref;
use std::sync::Arc;

use super::index::Keys;
use crate::store::task_record::{RecordHead, TaskV2};
use crate::task::{Task, TaskState};

/// Bytes before the record in a terminal task's buffer: its attempt number and error count
/// (u32 little-endian each), which the indexes sum, and its version (u64 little-endian), which
/// retention names; all three come late in the record or after it.
const PREFIX_LEN: usize = 16;

/// What can be read of a held task without decoding it whole: the indexes' keys, its times
/// and its version (what retention looks at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// What the indexes key it by.
    pub keys: Keys<'a>,
    /// When it last changed (ms).
    pub updated_ms: i64,
    /// When it started (ms).
    pub started_ms: Option<i64>,
    /// When it finished (ms).
    pub completed_ms: Option<i64>,
    /// Its version.
    pub version: u64,
}

impl<'a> Head<'a> {
    /// The head of `t`.
    pub fn of(t: &'a Task) -> Self {
        Head {
            keys: Keys::of(t),
            updated_ms: t.updated_at.0,
            started_ms: t.started_at.map(|s| s.0),
            completed_ms: t.completed_at.map(|s| s.0),
            version: t.version,
        }
    }
}

thread_local! {
    /// Where a task is encoded before its exact-size buffer is allocated (one per thread that
    /// applies events: the committing writer, an open's replay).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest scratch buffer kept between encodings.
const SCRATCH_KEPT_BYTES: usize = 64 * 1024;

/// A task as the state holds it.
#[derive(Clone, Debug)]
pub enum Held {
    /// Pending or running: changed in place by most events.
    Live(Arc<Task>),
    /// Completed, failed, cancelled or discarded: its state, then one buffer holding the
    /// attempt number and error count (`PREFIX_LEN`) and the task's `TaskV2` record, which has
    /// everything but the id (the slot has it).
    Terminal(TaskState, Box<[u8]>),
}

impl Held {
    /// Holds `task` in the form its state calls for.
    pub fn new(task: Task) -> Held {
        if task.state.is_terminal() {
            Held::terminal(&task, None)
        } else {
            Held::Live(Arc::new(task))
        }
    }

    /// Holds a finished task as its record `record`, read from a snapshot and checked to
    /// decode (`TaskV2Ref::check`), with its state, attempt number, error count and version.
    pub fn terminal_record(
        state: TaskState,
        attempt: u32,
        error_count: u32,
        version: u64,
        record: &[u8],
    ) -> Held {
        debug_assert!(
            state.is_terminal(),
            "only a finished task is held as its record"
        );
        Held::Terminal(state, with_prefix(attempt, error_count, version, record))
    }

    fn terminal(task: &Task, record: Option<&[u8]>) -> Held {
        let fill = |record: &[u8]| {
            Held::Terminal(
                task.state,
                with_prefix(task.attempt, task.error_count, task.version, record),
            )
        };
        match record {
            Some(r) => fill(r),
            None => SCRATCH.with_borrow_mut(|scratch| {
                scratch.clear();
                TaskV2::encode_into(task, scratch);
                let held = fill(scratch);
                // A rare huge task must not keep a huge scratch buffer alive.
                if scratch.capacity() > SCRATCH_KEPT_BYTES {
                    *scratch = Vec::new();
                }
                held
            }),
        }
    }

    /// Puts a live task that became terminal into its terminal form (after an event applied in
    /// place); does nothing otherwise.
    pub fn settle(&mut self) {
        if let Held::Live(t) = self
            && t.state.is_terminal()
        {
            *self = Held::terminal(t, None);
        }
    }

    /// The task to change in place, decoding a terminal one into a live one first (call
    /// [`Held::settle`] when done). `id` is the slot's.
    pub fn make_live(&mut self, id: &str) -> &mut Task {
        if let Held::Terminal(_, buffer) = self {
            *self = Held::Live(Arc::new(decode(buffer, id)));
        }
        match self {
            Held::Live(t) => Arc::make_mut(t),
            Held::Terminal(..) => unreachable!("made live just above"),
        }
    }

    /// The task's state, without decoding anything.
    pub fn state(&self) -> TaskState {
        match self {
            Held::Live(t) => t.state,
            Held::Terminal(state, _) => *state,
        }
    }

    /// What the indexes key the task by, without decoding the whole record.
    pub fn keys(&self) -> Keys<'_> {
        self.head().keys
    }

    /// The task's keys, times and version, without decoding the whole record.
    pub fn head(&self) -> Head<'_> {
        match self {
            Held::Live(t) => Head::of(t),
            Held::Terminal(state, buffer) => {
                let head = RecordHead::decode(record_of(buffer)).unwrap_or_else(|e| {
                    panic!("a held record's head should decode (it did when stored): {e}")
                });
                Head {
                    keys: Keys {
                        state: *state,
                        created_ms: head.created_at_ms,
                        role: head.role,
                        provider: head.provider,
                        attempt: u32::from_le_bytes(prefix_bytes(buffer, 0)),
                        error_count: u32::from_le_bytes(prefix_bytes(buffer, 4)),
                    },
                    updated_ms: head.updated_at_ms,
                    started_ms: head.started_at_ms,
                    completed_ms: head.completed_at_ms,
                    version: u64::from_le_bytes(prefix_bytes(buffer, 8)),
                }
            }
        }
    }

    /// The task with id `id` (the slot's; the record leaves it out).
    pub fn get(&self, id: &str) -> TaskRef<'_> {
        match self {
            Held::Live(t) => TaskRef::Borrowed(t),
            Held::Terminal(_, buffer) => TaskRef::Decoded(Box::new(decode(buffer, id))),
        }
    }

    /// The task, shared: the live task's own `Arc`, or a terminal task decoded into a new one.
    pub fn shared(&self, id: &str) -> Arc<Task> {
        match self {
            Held::Live(t) => Arc::clone(t),
            Held::Terminal(_, buffer) => Arc::new(decode(buffer, id)),
        }
    }

    /// A terminal task's `TaskV2` record, as a snapshot writes it.
    pub fn record(&self) -> Option<&[u8]> {
        match self {
            Held::Live(_) => None,
            Held::Terminal(_, buffer) => Some(record_of(buffer)),
        }
    }

    /// Heap bytes this holds (the `Arc`'s counts and `Task`, or the buffer), not counting a
    /// live task's strings and collections.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Held::Live(_) => 2 * size_of::<usize>() + size_of::<Task>(),
            Held::Terminal(_, buffer) => buffer.len(),
        }
    }
}

/// `N` bytes of a terminal buffer's prefix from `at`.
/// A terminal task's buffer: the prefix (`PREFIX_LEN`), then `record`.
fn with_prefix(attempt: u32, error_count: u32, version: u64, record: &[u8]) -> Box<[u8]> {
    // Sized exactly, so that the boxed slice is this allocation (no shrinking copy).
    let mut buffer = Vec::with_capacity(PREFIX_LEN + record.len());
    buffer.extend_from_slice(&attempt.to_le_bytes());
    buffer.extend_from_slice(&error_count.to_le_bytes());
    buffer.extend_from_slice(&version.to_le_bytes());
    buffer.extend_from_slice(record);
    buffer.into_boxed_slice()
}

fn prefix_bytes<const N: usize>(buffer: &[u8], at: usize) -> [u8; N] {
    let bytes = buffer.get(at..at + N).and_then(|b| b.try_into().ok());
    bytes.expect("a terminal buffer starts with its prefix")
}

fn record_of(buffer: &[u8]) -> &[u8] {
    buffer.get(PREFIX_LEN..).unwrap_or_default()
}

/// Decodes a held record: one this state encoded, or one a snapshot open decoded before
/// keeping it. Either way it decodes, so a failure is a bug here, not bad input.
fn decode(buffer: &[u8], id: &str) -> Task {
    TaskV2::decode(record_of(buffer), id).unwrap_or_else(|e| {
        panic!("the held record of task {id:?} should decode (it did when stored): {e}")
    })
}

/// A task read from the state: borrowed when live, decoded when terminal. Derefs to `Task`.
#[derive(Debug)]
pub enum TaskRef<'a> {
    /// A task the state (or a batch's overlay) holds as a `Task`.
    Borrowed(&'a Task),
    /// A terminal task decoded from its record (boxed: a `Task` is 400 bytes).
    Decoded(Box<Task>),
}

impl TaskRef<'_> {
    /// The task, owned (a decoded one without a copy).
    pub fn into_owned(self) -> Task {
        match self {
            TaskRef::Borrowed(t) => t.clone(),
            TaskRef::Decoded(t) => *t,
        }
    }
}

impl Deref for TaskRef<'_> {
    type Target = Task;

    fn deref(&self) -> &Task {
        match self {
            TaskRef::Borrowed(t) => t,
            TaskRef::Decoded(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: TaskState) -> Task {
        crate::store::task_record::sample_task(state)
    }

    /// A terminal task is held encoded, a live one as a task; either reads back whole, and
    /// the head read from the encoded form is the task's own.
    #[test]
    fn each_state_is_held_in_its_form_and_reads_back() {
        for state in TaskState::ALL {
            let t = task(state);
            let held = Held::new(t.clone());
            assert_eq!(
                matches!(held, Held::Terminal(..)),
                state.is_terminal(),
                "{state:?}"
            );
            assert_eq!(held.state(), state);
            assert_eq!(*held.get("t-1"), t);
            assert_eq!(*held.shared("t-1"), t);
            assert_eq!(held.head(), Head::of(&t));
            assert_eq!(held.record().is_some(), state.is_terminal());
            // What `State::memory_use` counts: the buffer (prefix and record), or the `Arc`.
            let expected = match held.record() {
                Some(record) => PREFIX_LEN + record.len(),
                None => 2 * size_of::<usize>() + size_of::<Task>(),
            };
            assert_eq!(held.heap_bytes(), expected, "{state:?}");
        }
    }

    /// A terminal task made live for an event and settled again is encoded again; one that
    /// the event made live (a retry) stays live.
    #[test]
    fn settle_puts_a_task_back_in_the_form_its_state_calls_for() {
        let mut held = Held::new(task(TaskState::Failed));
        held.make_live("t-1").attempt = 7;
        assert!(matches!(held, Held::Live(_)));
        held.settle();
        assert!(matches!(held, Held::Terminal(..)));
        assert_eq!(held.head().keys.attempt, 7);

        let live = held.make_live("t-1");
        live.state = TaskState::Pending;
        held.settle();
        assert!(matches!(held, Held::Live(_)));
        assert_eq!(held.get("t-1").state, TaskState::Pending);
    }

    /// The scratch buffer is kept between encodings (that is its point), but not once a huge
    /// task grew it past `SCRATCH_KEPT_BYTES`.
    #[test]
    fn the_scratch_buffer_is_kept_unless_huge() {
        let capacity = || SCRATCH.with_borrow(Vec::capacity);
        let _ = Held::new(task(TaskState::Completed));
        let small = capacity();
        assert!(small > 0 && small <= SCRATCH_KEPT_BYTES, "{small}");
        let mut medium = task(TaskState::Completed);
        // 16 KiB: a large task, far below the limit (64 KiB), keeps its room.
        medium.title = "x".repeat(16 * 1024);
        let _ = Held::new(medium);
        assert!(capacity() > 16 * 1024, "a 16 KiB task's room is kept");
        let mut huge = task(TaskState::Completed);
        huge.title = "x".repeat(SCRATCH_KEPT_BYTES * 2);
        let held = Held::new(huge.clone());
        assert_eq!(*held.get("t-1"), huge);
        assert_eq!(capacity(), 0, "a huge scratch buffer is dropped");
    }

    /// A snapshot's record bytes are kept as they are for a terminal task.
    #[test]
    fn a_snapshot_record_is_kept_as_read() {
        let t = task(TaskState::Completed);
        let record = {
            let mut out = Vec::new();
            TaskV2::encode_into(&t, &mut out);
            out
        };
        let held = Held::terminal_record(t.state, t.attempt, t.error_count, t.version, &record);
        assert_eq!(held.record(), Some(&record[..]));
        assert_eq!(*held.get("t-1"), t);
        assert_eq!(held.heap_bytes(), Held::new(t).heap_bytes());
    }
}
