//! Mutations: what callers ask the store to change. Each becomes one event after validation.

use serde_json::Value;

use crate::task::{NewTask, OutputKind, Task, TaskUpdate};

/// A change of one task, with optional concurrency and fencing checks.
#[derive(Clone, Debug)]
pub struct Mutation {
    /// The task (ignored for a submit, whose id is in the `NewTask`).
    pub task_id: String,
    /// What to change.
    pub change: Change,
    /// Optimistic concurrency: fail with `Conflict` unless the task is at this version.
    pub expected_version: Option<u64>,
    /// Who makes the change (recorded in the history).
    pub actor: Option<String>,
    /// Fencing: fail with `LeaseMismatch` unless the task's lease belongs to this owner and
    /// its attempt number matches (rejects a stale worker's late completion).
    pub fence: Option<Fence>,
}

/// A worker's claim to be the current runner of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lease owner.
    pub owner: String,
    /// The attempt the worker is running.
    pub attempt: u32,
    /// The claim the worker holds (`Lease::claim_lsn`), when it knows it: tells a stale claim
    /// from a new one by the same owner for the same attempt (after a requeue).
    pub claim_lsn: Option<u64>,
}

/// What to change.
///
/// `Import`, `Historical` and `Interrupt` record history that the caller did not make happen
/// now (a whole task, a past event, a dead owner's work taken back). Outside tasklog they can
/// be matched but not built (each is `#[non_exhaustive]` unless the `testing` feature is on),
/// so no library user can write fake history; the validated entry points are
/// `export::import_json` and `Store::recover_abandoned`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Change {
    /// Create a task.
    Submit(NewTask),
    /// Change descriptive fields.
    Update(TaskUpdate),
    /// pending -> running, optionally under a lease.
    Start {
        /// The worker claiming it.
        owner: Option<String>,
        /// Lease length in milliseconds (with an owner).
        lease_ms: Option<u64>,
    },
    /// Extend the lease.
    Heartbeat {
        /// The worker.
        owner: String,
        /// New lease length from now, in milliseconds.
        lease_ms: u64,
    },
    /// Report progress.
    Progress {
        /// 0 to 100.
        percent: u8,
        /// Step name.
        step: Option<String>,
        /// Step text.
        message: Option<String>,
    },
    /// Take a checkpoint.
    Checkpoint {
        /// Name.
        name: String,
        /// Recoverable data.
        data: Value,
        /// Progress at the checkpoint (default: the current progress).
        progress: Option<u8>,
    },
    /// Record output.
    Output {
        /// Kind.
        kind: OutputKind,
        /// Content.
        content: String,
        /// Artifact path.
        path: Option<String>,
        /// Size in bytes.
        size_bytes: Option<u64>,
        /// MIME type.
        mime: Option<String>,
    },
    /// running -> completed.
    Complete {
        /// Result.
        result: Option<Value>,
    },
    /// running -> failed.
    Fail {
        /// Error text.
        error: String,
    },
    /// pending|running -> cancelled.
    Cancel {
        /// Why.
        reason: Option<String>,
    },
    /// running -> pending.
    Requeue {
        /// Why.
        reason: Option<String>,
    },
    /// failed|cancelled|discarded -> pending, attempt + 1.
    Retry,
    /// failed -> discarded: no retry will follow (the runtime writes it after the last
    /// allowed attempt, in the same batch as that failure).
    Discard {
        /// Why.
        reason: Option<String>,
    },
    /// Remove the task; its history stays.
    Remove {
        /// Why.
        reason: Option<String>,
    },
    /// Write a whole task (import). Not constructible outside tasklog (without the `testing`
    /// feature): use `export::import_json`, which validates the document first.
    #[cfg_attr(not(feature = "testing"), non_exhaustive)]
    Import(Box<Task>),
    /// Re-record an event as it happened elsewhere (an import of a task's history): the event
    /// keeps its original time and goes through the same state-machine checks. Not
    /// constructible outside tasklog (without `testing`): only the importer writes it.
    #[cfg_attr(not(feature = "testing"), non_exhaustive)]
    Historical {
        /// The event.
        kind: Box<crate::task::EventKind>,
        /// When it originally happened.
        at: crate::task::Timestamp,
    },
    /// running -> failed or pending, because the task's owner died (a crash or an expired
    /// lease). Used by recovery and by workers' lease supervision. Not constructible outside
    /// tasklog (without `testing`): use `Store::recover_abandoned`, which checks the owner is
    /// really gone.
    #[cfg_attr(not(feature = "testing"), non_exhaustive)]
    Interrupt {
        /// Why.
        reason: String,
        /// `Failed`, or `Pending` to resume from the checkpoint.
        to: crate::task::TaskState,
    },
}

impl Mutation {
    /// A mutation of `task_id` with no checks.
    pub fn new(task_id: impl Into<String>, change: Change) -> Self {
        Mutation {
            task_id: task_id.into(),
            change,
            expected_version: None,
            actor: None,
            fence: None,
        }
    }
    /// A submit.
    pub fn submit(new: NewTask) -> Self {
        Mutation::new(new.id.clone().unwrap_or_default(), Change::Submit(new))
    }
    /// Requires the task to be at `version`.
    #[must_use]
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
    /// Records who made the change.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    /// Requires the task's lease to be held by `owner` for `attempt`.
    #[must_use]
    pub fn fenced(mut self, owner: impl Into<String>, attempt: u32) -> Self {
        self.fence = Some(Fence {
            owner: owner.into(),
            attempt,
            claim_lsn: None,
        });
        self
    }
    /// Requires the task's lease to be this exact claim (`Lease::claim_lsn`) by `owner` for
    /// `attempt`: the strongest fence, used by the runtime's workers.
    #[must_use]
    pub fn fenced_claim(mut self, owner: impl Into<String>, attempt: u32, claim_lsn: u64) -> Self {
        self.fence = Some(Fence {
            owner: owner.into(),
            attempt,
            claim_lsn: Some(claim_lsn),
        });
        self
    }
}
