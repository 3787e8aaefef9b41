//! The bodies of the worker routes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklog::Task;
use tasklog::task::{Checkpoint, OutputKind, Timestamp};
use utoipa::ToSchema;

/// `POST /v1/workers/claim`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker claiming (the lease owner): 1 to 256 characters.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// Only tasks whose `runtime.kind` is one of these (at least one; omit for any task).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 64)]
    pub kinds: Option<Vec<String>>,
    /// Lease length in milliseconds (default 30,000): the lease lapses unless a heartbeat
    /// extends it.
    #[serde(default, deserialize_with = "crate::extract::int::opt_u64")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub lease_ms: Option<u64>,
    /// How long to wait for a claimable task, in milliseconds (default 0: answer at once).
    /// Longer waits are cut to the server's limit (60,000 by default).
    #[serde(default, deserialize_with = "crate::extract::int::opt_u64")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub wait_ms: Option<u64>,
    /// Who makes the change, for the history (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// A claimed task.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResponse {
    /// The task, now running under the worker's lease.
    pub task: Task,
    /// Where a previous attempt got to (null when it left none): resume from it.
    #[schema(required = true)]
    pub checkpoint: Option<Checkpoint>,
    /// The fencing token (`<attempt>.<claim_lsn>`): send it with every later call.
    pub token: String,
    /// When the lease lapses unless extended.
    pub lease_expires_at: Timestamp,
}

/// `POST /v1/workers/tasks/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease owner.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// The token of the claim.
    #[schema(pattern = "^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// New lease length from now, in milliseconds (default 30,000).
    #[serde(default, deserialize_with = "crate::extract::int::opt_u64")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub lease_ms: Option<u64>,
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// `POST /v1/workers/tasks/{id}/progress`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// The lease owner.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// The token of the claim.
    #[schema(pattern = "^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// 0 to 100.
    #[serde(deserialize_with = "crate::extract::int::u8")]
    #[schema(minimum = 0, maximum = 100)]
    pub percent: u8,
    /// The current step's name.
    #[serde(default)]
    pub step: Option<String>,
    /// The current step's text.
    #[serde(default)]
    pub message: Option<String>,
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// `POST /v1/workers/tasks/{id}/checkpoint`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    /// The lease owner.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// The token of the claim.
    #[schema(pattern = "^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// The checkpoint's name.
    pub name: String,
    /// What a resumed attempt needs, any JSON.
    pub data: Value,
    /// Progress at the checkpoint, 0 to 100 (default: the current progress).
    #[serde(default, deserialize_with = "crate::extract::int::opt_u8")]
    #[schema(minimum = 0, maximum = 100)]
    pub progress: Option<u8>,
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// `POST /v1/workers/tasks/{id}/output`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputRequest {
    /// The lease owner.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// The token of the claim.
    #[schema(pattern = "^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// What kind of output.
    pub kind: OutputKind,
    /// The content (text, or a reference for artifacts).
    pub content: String,
    /// A file path, for artifacts.
    #[serde(default)]
    pub path: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, deserialize_with = "crate::extract::int::opt_u64")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub size_bytes: Option<u64>,
    /// MIME type, when known.
    #[serde(default)]
    pub mime: Option<String>,
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// `POST /v1/workers/tasks/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease owner.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// The token of the claim.
    #[schema(pattern = "^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// The result, any JSON.
    #[serde(default)]
    pub result: Option<Value>,
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// `POST /v1/workers/tasks/{id}/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease owner.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub owner: String,
    /// The token of the claim.
    #[schema(pattern = "^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// What went wrong.
    pub error: String,
    /// True: give the task back (pending again, same attempt, checkpoint kept) instead of
    /// failing it. Default false.
    #[serde(default)]
    pub requeue: bool,
    /// The retry policy of the task's kind, as the worker knows it: attempts allowed in all
    /// (1 to 1,000). With it, a failure of an earlier attempt is retried in the same batch
    /// (pending again, attempt + 1, not before `retry_delay_ms` from now) and a failure of the
    /// last one discards the task (`discarded`: no retry follows; a retry by hand still can).
    /// Without it the task stays `failed`. Not with `requeue`.
    #[serde(default, deserialize_with = "crate::extract::int::opt_u32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<u32>,
    /// With `max_attempts`: how long before the retry may be claimed, in ms (0 to
    /// 86,400,000; default 0).
    #[serde(default, deserialize_with = "crate::extract::int::opt_u64")]
    #[schema(minimum = 0, maximum = 86_400_000)]
    pub retry_delay_ms: Option<u64>,
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}
