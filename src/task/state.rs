//! Task states and the moves allowed between them.

use serde::{Deserialize, Serialize};

/// The state of a task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting to run.
    Pending,
    /// Being worked on.
    Running,
    /// Finished successfully. Final.
    Completed,
    /// Finished with an error; may be retried.
    Failed,
    /// Stopped on request; may be retried.
    Cancelled,
    /// Failed on its last allowed attempt, so nothing will retry it automatically; may be
    /// retried by hand. Appended last: states are persisted by a frozen code (docs/format.md).
    Discarded,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Discarded,
    ];

    /// The lowercase name used in JSON, the CLI and docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Discarded => "discarded",
        }
    }

    /// True for completed, failed, cancelled and discarded.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Discarded
        )
    }

    /// Whether the state machine allows moving from `self` to `to`.
    pub const fn can_move_to(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Pending)
                | (Failed, Pending)
                | (Failed, Discarded)
                | (Cancelled, Pending)
                | (Discarded, Pending)
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?} (expected one of pending, running, completed, failed, cancelled, discarded)"
                )
            })
    }
}
