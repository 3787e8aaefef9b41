//! Events: every change of a task is one event. The store appends events to the log and
//! rebuilds tasks (and their history) by applying them in order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutputKind, Task, TaskState, TaskUpdate, Timestamp};

/// One change of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The task changed.
    #[serde(default)]
    pub task_id: String,
    /// When the change was made.
    pub at: Timestamp,
    /// Who made it (a user, a worker id), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What changed.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event changes. Serialized to JSON as `{"kind": "...", ...details}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The task was submitted.
    Created {
        /// Title.
        title: String,
        /// Description.
        description: String,
        /// Role.
        role: Option<String>,
        /// Provider.
        provider: Option<String>,
        /// Model.
        model: Option<String>,
        /// Tags.
        tags: Vec<String>,
        /// Metadata.
        metadata: BTreeMap<String, Value>,
        /// Priority 0 to 10.
        priority: u8,
        /// Idempotency key of the submit.
        request_id: Option<String>,
    },
    /// Descriptive fields changed.
    Updated(TaskUpdate),
    /// An attempt started.
    Started {
        /// The worker that claimed it.
        owner: Option<String>,
        /// When the worker's lease lapses.
        lease_expires_at: Option<Timestamp>,
        /// The store session that started it (to tell, after a crash, whose work was cut off).
        #[serde(skip)]
        session: u64,
    },
    /// The lease was extended.
    Heartbeat {
        /// The worker.
        owner: String,
        /// The new expiry.
        lease_expires_at: Timestamp,
    },
    /// Progress was reported.
    Progress {
        /// 0 to 100.
        percent: u8,
        /// Step name.
        step: Option<String>,
        /// Step text.
        message: Option<String>,
    },
    /// A checkpoint was taken.
    Checkpoint {
        /// Name.
        name: String,
        /// Progress at the checkpoint.
        progress: u8,
        /// Recoverable data.
        data: Value,
    },
    /// Output was recorded.
    Output {
        /// Kind.
        output_kind: OutputKind,
        /// Content.
        content: String,
        /// File path.
        path: Option<String>,
        /// Size in bytes.
        size_bytes: Option<u64>,
        /// MIME type.
        mime: Option<String>,
    },
    /// The task completed.
    Completed {
        /// Its result.
        result: Option<Value>,
    },
    /// The attempt failed.
    Failed {
        /// The error.
        error: String,
    },
    /// The task was cancelled.
    Cancelled {
        /// Why.
        reason: Option<String>,
    },
    /// A running task went back to pending (its worker gave it up).
    Requeued {
        /// Why.
        reason: Option<String>,
    },
    /// A failed, cancelled or discarded task was queued again; the attempt number goes up by one.
    Retried,
    /// The task's owner died (a crash, or an expired lease); the recovery policy moved it.
    Interrupted {
        /// Why.
        reason: String,
        /// Where it went: failed, or pending (keeping its checkpoint).
        to: TaskState,
    },
    /// The task was removed (retention, a replacing import, or on request). Its history stays.
    Removed {
        /// Why.
        reason: Option<String>,
    },
    /// The task was written whole by an import (creating or overwriting it).
    Imported {
        /// The task as imported.
        task: Box<Task>,
    },
    /// A failed task was given up on: its last allowed attempt failed (the runtime, or a
    /// worker of the server, writes this in the same batch as that failure), or someone
    /// discarded it by hand. A retry by hand brings it back.
    Discarded {
        /// Why.
        reason: Option<String>,
    },
}

impl EventKind {
    /// The snake_case name used in history output.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "created",
            EventKind::Updated(_) => "updated",
            EventKind::Started { .. } => "started",
            EventKind::Heartbeat { .. } => "heartbeat",
            EventKind::Progress { .. } => "progress",
            EventKind::Checkpoint { .. } => "checkpoint",
            EventKind::Output { .. } => "output",
            EventKind::Completed { .. } => "completed",
            EventKind::Failed { .. } => "failed",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Requeued { .. } => "requeued",
            EventKind::Retried => "retried",
            EventKind::Interrupted { .. } => "interrupted",
            EventKind::Removed { .. } => "removed",
            EventKind::Imported { .. } => "imported",
            EventKind::Discarded { .. } => "discarded",
        }
    }

    /// The verb used in errors ("cannot start a task that is completed").
    pub const fn action(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "create",
            EventKind::Updated(_) => "update",
            EventKind::Started { .. } => "start",
            EventKind::Heartbeat { .. } => "heartbeat",
            EventKind::Progress { .. } => "report progress on",
            EventKind::Checkpoint { .. } => "checkpoint",
            EventKind::Output { .. } => "record output on",
            EventKind::Completed { .. } => "complete",
            EventKind::Failed { .. } => "fail",
            EventKind::Cancelled { .. } => "cancel",
            EventKind::Requeued { .. } => "requeue",
            EventKind::Retried => "retry",
            EventKind::Interrupted { .. } => "interrupt",
            EventKind::Removed { .. } => "remove",
            EventKind::Imported { .. } => "import",
            EventKind::Discarded { .. } => "discard",
        }
    }
}
