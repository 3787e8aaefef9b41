//! Request bodies of the task routes (also the fields of a batch's mutations), each turned into
//! the store's [`Change`] after checks that name the JSON path of a bad value. The store checks
//! again; these checks only make the answers precise.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tasklog::NewTask;
use tasklog::runtime::{META_INPUT, META_KIND};
use tasklog::store::Change;
use tasklog::task::{OutputKind, TaskUpdate};
use utoipa::ToSchema;

use super::check_key;
use crate::error::{ApiResult, Problem};

pub use crate::extract::int;

/// A change and the actor the body names.
pub type Changed = (Change, Option<String>);

fn out_of_range(at: &str, field: &str, v: u64, max: u64) -> Problem {
    let at = format!("{at}.{field}");
    Problem::bad_request(
        "invalid_input",
        format!("{at}: {v} is out of range (0 to {max})"),
    )
    .at(at)
}

fn ranged(at: &str, field: &str, v: u64, max: u64) -> ApiResult<u8> {
    match u8::try_from(v) {
        Ok(b) if v <= max => Ok(b),
        _ => Err(out_of_range(at, field, v, max)),
    }
}

fn non_empty(at: &str, field: &str, v: &str) -> ApiResult<()> {
    if v.trim().is_empty() {
        let at = format!("{at}.{field}");
        return Err(
            Problem::bad_request("invalid_input", format!("{at} must not be empty")).at(at),
        );
    }
    Ok(())
}

fn key(v: Option<String>, at: &str, field: &str) -> ApiResult<Option<String>> {
    check_key(v, &format!("{at}.{field}"))
}

/// A new task.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// Title (required, not blank).
    #[schema(pattern = r"\S")]
    pub title: String,
    /// Id (1 to 256 bytes, no control characters); a UUIDv7 when absent.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Role (agent or team).
    #[serde(default)]
    pub role: Option<String>,
    /// Provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Tags (duplicates dropped).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    /// Priority, 0 to 10 (higher runs first). Default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    #[serde(deserialize_with = "int::opt_u64")]
    pub priority: Option<u64>,
    /// Idempotency key: a retried submit with the same key returns the task the first one
    /// created. The `Idempotency-Key` header does the same (this field wins when both are
    /// given).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub request_id: Option<String>,
    /// The runtime's task kind (stored as metadata `runtime.kind`, over any such entry of
    /// `metadata`), for workers.
    #[serde(default)]
    #[schema(pattern = r"\S")]
    pub kind: Option<String>,
    /// The runtime's input, any JSON (stored as metadata `runtime.input`, over any such entry
    /// of `metadata`).
    #[serde(default)]
    pub input: Option<Value>,
    /// Who submits (recorded in the history).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl SubmitBody {
    /// The store's `NewTask` and the actor; `header_key` is the `Idempotency-Key` header.
    pub fn into_new_task(
        self,
        at: &str,
        header_key: Option<String>,
    ) -> ApiResult<(NewTask, Option<String>)> {
        non_empty(at, "title", &self.title)?;
        let priority = ranged(at, "priority", self.priority.unwrap_or(0), 10)?;
        // The body's request id wins over the `Idempotency-Key` header.
        let request_id = key(self.request_id, at, "request_id")?.or(header_key);
        let mut metadata = self.metadata;
        if let Some(kind) = self.kind {
            non_empty(at, "kind", &kind)?;
            metadata.insert(META_KIND.to_string(), Value::String(kind));
        }
        if let Some(input) = self.input {
            metadata.insert(META_INPUT.to_string(), input);
        }
        let new = NewTask {
            id: self.id,
            title: self.title,
            description: self.description.unwrap_or_default(),
            role: self.role,
            provider: self.provider,
            model: self.model,
            tags: self.tags,
            metadata,
            priority,
            request_id,
        };
        Ok((new, key(self.actor, at, "actor")?))
    }

    /// As a submit change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        let (new, actor) = self.into_new_task(at, None)?;
        Ok((Change::Submit(new), actor))
    }
}

/// Changes to a task's descriptive fields. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// New title (not blank).
    #[serde(default)]
    #[schema(pattern = r"\S")]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New role.
    #[serde(default)]
    pub role: Option<String>,
    /// New provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// New model.
    #[serde(default)]
    pub model: Option<String>,
    /// New priority, 0 to 10.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    #[serde(deserialize_with = "int::opt_u64")]
    pub priority: Option<u64>,
    /// Tags to add.
    #[serde(default)]
    pub add_tags: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    pub remove_tags: Vec<String>,
    /// Metadata entries to set.
    #[serde(default)]
    pub set_metadata: BTreeMap<String, Value>,
    /// Metadata keys to remove.
    #[serde(default)]
    pub remove_metadata: Vec<String>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl UpdateBody {
    /// As an update change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        if let Some(t) = &self.title {
            non_empty(at, "title", t)?;
        }
        let priority = self
            .priority
            .map(|p| ranged(at, "priority", p, 10))
            .transpose()?;
        let update = TaskUpdate {
            title: self.title,
            description: self.description,
            role: self.role,
            provider: self.provider,
            model: self.model,
            priority,
            add_tags: self.add_tags,
            remove_tags: self.remove_tags,
            set_metadata: self.set_metadata,
            remove_metadata: self.remove_metadata,
        };
        Ok((Change::Update(update), key(self.actor, at, "actor")?))
    }
}

/// Start a pending task.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The worker taking the task; with `lease_ms`, it holds a lease.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub owner: Option<String>,
    /// Lease length in milliseconds, 1 to 86,400,000 (ignored without an `owner`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400_000)]
    #[serde(deserialize_with = "int::opt_u64")]
    pub lease_ms: Option<u64>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl StartBody {
    /// As a start change. Without an owner there is no lease (`lease_ms` is ignored).
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        let owner = key(self.owner, at, "owner")?;
        if let Some(ms) = self.lease_ms
            && (ms == 0 || ms > super::LEASE_MS_MAX)
        {
            let field = format!("{at}.lease_ms");
            return Err(Problem::bad_request(
                "invalid_input",
                format!("{field}: {ms} is out of range (1 to 86400000)"),
            )
            .at(field));
        }
        let lease_ms = owner.as_ref().and(self.lease_ms);
        let change = Change::Start { owner, lease_ms };
        Ok((change, key(self.actor, at, "actor")?))
    }
}

/// Progress of a running task.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    #[serde(deserialize_with = "int::u64")]
    pub percent: u64,
    /// The current step's name.
    #[serde(default)]
    pub step: Option<String>,
    /// The current step's text.
    #[serde(default)]
    pub message: Option<String>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl ProgressBody {
    /// As a progress change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        let change = Change::Progress {
            percent: ranged(at, "percent", self.percent, 100)?,
            step: self.step,
            message: self.message,
        };
        Ok((change, key(self.actor, at, "actor")?))
    }
}

/// A checkpoint of a running task.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    /// The checkpoint's name (e.g. the step reached).
    #[schema(pattern = r"\S")]
    pub name: String,
    /// Recoverable data, any JSON.
    pub data: Value,
    /// Progress at the checkpoint, 0 to 100 (default: the task's current progress).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    #[serde(deserialize_with = "int::opt_u64")]
    pub progress: Option<u64>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl CheckpointBody {
    /// As a checkpoint change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        non_empty(at, "name", &self.name)?;
        let change = Change::Checkpoint {
            name: self.name,
            data: self.data,
            progress: self
                .progress
                .map(|p| ranged(at, "progress", p, 100))
                .transpose()?,
        };
        Ok((change, key(self.actor, at, "actor")?))
    }
}

/// An output entry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputBody {
    /// What kind of output.
    pub kind: OutputKind,
    /// The content (text, or a reference for artifacts).
    pub content: String,
    /// A file path, for artifacts.
    #[serde(default)]
    pub path: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    #[serde(deserialize_with = "int::opt_u64")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub size_bytes: Option<u64>,
    /// MIME type.
    #[serde(default)]
    pub mime: Option<String>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl OutputBody {
    /// As an output change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        let change = Change::Output {
            kind: self.kind,
            content: self.content,
            path: self.path,
            size_bytes: self.size_bytes,
            mime: self.mime,
        };
        Ok((change, key(self.actor, at, "actor")?))
    }
}

/// Complete a running task.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The result, any JSON.
    #[serde(default)]
    pub result: Option<Value>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl CompleteBody {
    /// As a complete change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        let change = Change::Complete {
            result: self.result,
        };
        Ok((change, key(self.actor, at, "actor")?))
    }
}

/// Fail a running task.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    /// The error text.
    pub error: String,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl FailBody {
    /// As a fail change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        let change = Change::Fail { error: self.error };
        Ok((change, key(self.actor, at, "actor")?))
    }
}

/// A change with an optional reason (cancel, requeue, remove).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (recorded in the history).
    #[serde(default)]
    pub reason: Option<String>,
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl ReasonBody {
    /// As a change built from the reason.
    pub fn into_reason_change(
        self,
        at: &str,
        make: fn(Option<String>) -> Change,
    ) -> ApiResult<Changed> {
        Ok((make(self.reason), key(self.actor, at, "actor")?))
    }
}

/// Retry a failed, cancelled or discarded task.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Who makes the change.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub actor: Option<String>,
}

impl RetryBody {
    /// As a retry change.
    pub fn into_change(self, at: &str) -> ApiResult<Changed> {
        Ok((Change::Retry, key(self.actor, at, "actor")?))
    }
}

/// Cancel: `pending|running -> cancelled`.
pub fn cancel(reason: Option<String>) -> Change {
    Change::Cancel { reason }
}

/// Requeue: `running -> pending`.
pub fn requeue(reason: Option<String>) -> Change {
    Change::Requeue { reason }
}

/// Remove; the history stays.
pub fn remove(reason: Option<String>) -> Change {
    Change::Remove { reason }
}
