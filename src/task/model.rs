//! The task model: what a task is at one point in time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{TaskState, Timestamp};

/// Progress of a running task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100.
    pub percent: u8,
    /// The current step's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The current step's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The latest checkpoint: what a resumed attempt needs to carry on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpoint's name (e.g. the step reached).
    pub name: String,
    /// Progress when it was taken, 0 to 100.
    pub progress: u8,
    /// Recoverable data, any JSON.
    pub data: Value,
    /// When it was taken.
    pub at: Timestamp,
}

/// The kind of an output entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OutputKind {
    /// Standard output text.
    Stdout,
    /// Standard error text.
    Stderr,
    /// A log line.
    Log,
    /// A produced file or blob.
    Artifact,
    /// A commit (e.g. a git hash).
    Commit,
}

impl OutputKind {
    /// Every kind.
    pub const ALL: [OutputKind; 5] = [
        OutputKind::Stdout,
        OutputKind::Stderr,
        OutputKind::Log,
        OutputKind::Artifact,
        OutputKind::Commit,
    ];

    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputKind::Stdout => "stdout",
            OutputKind::Stderr => "stderr",
            OutputKind::Log => "log",
            OutputKind::Artifact => "artifact",
            OutputKind::Commit => "commit",
        }
    }
}

impl std::str::FromStr for OutputKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OutputKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown output kind {s:?} (expected stdout, stderr, log, artifact or commit)"
                )
            })
    }
}

/// One output entry of a task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// What kind of output.
    pub kind: OutputKind,
    /// The content (text, or a reference for artifacts).
    pub content: String,
    /// When it was recorded.
    pub at: Timestamp,
    /// A file path, for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// MIME type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
}

/// A worker's claim on a running task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it (a worker id).
    pub owner: String,
    /// When it lapses unless extended by a heartbeat.
    pub expires_at: Timestamp,
    /// The LSN of the `started` event that made this claim: a fencing token that tells two
    /// claims by the same owner of the same attempt apart.
    #[serde(default)]
    pub claim_lsn: u64,
}

/// A task as it stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id.
    pub id: String,
    /// Short title.
    pub title: String,
    /// Longer description.
    pub description: String,
    /// The role (agent or team) the task belongs to.
    pub role: Option<String>,
    /// Current state.
    pub state: TaskState,
    /// Progress of the current attempt.
    pub progress: Progress,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When anything last changed.
    pub updated_at: Timestamp,
    /// When the current attempt started.
    pub started_at: Option<Timestamp>,
    /// When the task reached a terminal state.
    pub completed_at: Option<Timestamp>,
    /// Provider (e.g. an LLM vendor or a cloud).
    pub provider: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Tags, in insertion order, without duplicates.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, Value>,
    /// The result of a completed task. Boxed, like `checkpoint` and `lease`: most tasks in a
    /// store have none, and inline these three took 216 of the 608 bytes every task held in
    /// memory (issue #20); serde and the OpenAPI schema see through the box.
    pub result: Option<Box<Value>>,
    /// The last error recorded.
    pub last_error: Option<String>,
    /// How many times the task failed.
    pub error_count: u32,
    /// The attempt number, 1 for the first.
    pub attempt: u32,
    /// Priority, 0 to 10 (higher runs first).
    pub priority: u8,
    /// The latest checkpoint.
    pub checkpoint: Option<Box<Checkpoint>>,
    /// Outputs, in order.
    pub outputs: Vec<Output>,
    /// The lease of the worker running it.
    pub lease: Option<Box<Lease>>,
    /// The store session that started the current attempt (0 when not running).
    #[serde(skip)]
    pub session: u64,
    /// Number of events applied to this task (optimistic-concurrency version).
    pub version: u64,
    /// LSN of the task's latest event.
    pub last_lsn: u64,
}

/// Metadata key holding the earliest time a pending task may be handed out, in milliseconds
/// since the epoch (set by [`NewTask::run_at`] and [`NewTask::delay`], and by the runtime
/// for a retry's backoff). The runtime's ready queue and the server's claim both honour it.
pub const META_NOT_BEFORE: &str = "runtime.not_before";

/// The fields a caller gives to create a task; build it with its setters.
///
/// ```
/// use tasklog::{NewTask, Store, TaskState};
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let task = store.submit(NewTask::new("nightly report").id("report-1").tag("nightly"))?;
/// assert_eq!((task.id.as_str(), task.state), ("report-1", TaskState::Pending));
/// # Ok(())
/// # }
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Id; generated when `None`.
    pub id: Option<String>,
    /// Title (required, non-empty).
    pub title: String,
    /// Description.
    pub description: String,
    /// Role.
    pub role: Option<String>,
    /// Provider.
    pub provider: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, Value>,
    /// Priority, 0 to 10.
    pub priority: u8,
    /// Makes a retried submit a no-op: a second submit with the same request id returns the
    /// task the first one created.
    pub request_id: Option<String>,
}

impl NewTask {
    /// A new task with this title and defaults for everything else.
    pub fn new(title: impl Into<String>) -> Self {
        NewTask {
            title: title.into(),
            ..NewTask::default()
        }
    }
    /// Sets the id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// Sets the description.
    #[must_use]
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Sets the role.
    #[must_use]
    pub fn role(mut self, r: impl Into<String>) -> Self {
        self.role = Some(r.into());
        self
    }
    /// Sets the provider.
    #[must_use]
    pub fn provider(mut self, p: impl Into<String>) -> Self {
        self.provider = Some(p.into());
        self
    }
    /// Sets the model.
    #[must_use]
    pub fn model(mut self, m: impl Into<String>) -> Self {
        self.model = Some(m.into());
        self
    }
    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.tags.push(t.into());
        self
    }
    /// Sets a metadata entry.
    #[must_use]
    pub fn meta(mut self, k: impl Into<String>, v: Value) -> Self {
        self.metadata.insert(k.into(), v);
        self
    }
    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    /// Delays the task: no worker (runtime or HTTP claim) is handed it before `at`. Stored as
    /// the metadata entry [`META_NOT_BEFORE`], so it survives export, import and restarts.
    #[must_use]
    pub fn run_at(self, at: super::Timestamp) -> Self {
        self.meta(META_NOT_BEFORE, Value::from(at.as_millis()))
    }
    /// Delays the task by `delay` from now (see [`NewTask::run_at`]).
    #[must_use]
    pub fn delay(self, delay: std::time::Duration) -> Self {
        let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.run_at(super::Timestamp::now().plus_millis(ms))
    }
    /// Sets the idempotency key.
    #[must_use]
    pub fn request_id(mut self, r: impl Into<String>) -> Self {
        self.request_id = Some(r.into());
        self
    }
}

/// Changes to a task's descriptive fields (any state).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// New model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// New priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Tags to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_tags: Vec<String>,
    /// Tags to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
    /// Metadata entries to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_metadata: BTreeMap<String, Value>,
    /// Metadata keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_metadata: Vec<String>,
}
