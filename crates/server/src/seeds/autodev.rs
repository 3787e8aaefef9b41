//! Seed 001, AutoDev's task persistence: history, recovery of one task, outputs, and
//! persistence statistics, with that system's field names (its filtered listing is in
//! [`super::persistent`]).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklog::store::{Change, HistoryEvent, Mutation, RecoveryReport};
use tasklog::task::{OutputKind, Timestamp};
use tasklog::{Task, TaskState};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{PathParam, QueryParams};
use crate::error::{ApiResult, Problem};
use crate::extract::Json;
use crate::state::AppState;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(super::persistent::routes())
        .routes(routes!(history))
        .routes(routes!(recover))
        .routes(routes!(list_outputs, add_output))
        .routes(routes!(persistence_stats))
}

/// The actor recorded on changes made through these routes.
pub const ACTOR: &str = "tasklog-api-compat";

// ----- history -------------------------------------------------------------------------------

/// One history record (`TaskHistoryRecord`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskHistoryRecord {
    /// The event's LSN (unique across the store, increasing).
    pub id: u64,
    /// The task.
    pub task_id: String,
    /// The state before, when the event changed it.
    pub state_from: Option<TaskState>,
    /// The state after (the task's state after the event; null only for events that do not
    /// concern the state, such as `removed`).
    pub state_to: Option<TaskState>,
    /// When.
    pub timestamp: Timestamp,
    /// The task's provider (tasklog keeps it on the task, not per event).
    pub provider: Option<String>,
    /// The task's model (idem).
    pub model: Option<String>,
    /// The error of a `failed` event, or the reason of an `interrupted` one.
    pub error_message: Option<String>,
    /// The event's own fields.
    pub details: Value,
    /// Who made the change (`default` when unrecorded).
    pub user_id: String,
    /// tasklog's event kind (`created`, `started`, `progress`, `failed`, ...).
    pub event: String,
}

/// `GET /api/tasks/history/{task_id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutodevHistory {
    /// The task.
    pub task_id: String,
    /// Every record, oldest first.
    pub history: Vec<TaskHistoryRecord>,
    /// How many.
    pub count: usize,
}

fn record(task_id: &str, task: Option<&Task>, e: HistoryEvent) -> TaskHistoryRecord {
    let text = |k: &str| e.details.get(k).and_then(Value::as_str).map(str::to_string);
    let error_message = match e.kind {
        "failed" => text("error"),
        "interrupted" => text("reason"),
        _ => None,
    };
    TaskHistoryRecord {
        id: e.lsn,
        task_id: task_id.to_string(),
        state_from: e.from,
        state_to: e.to,
        timestamp: e.at,
        provider: task.and_then(|t| t.provider.clone()),
        model: task.and_then(|t| t.model.clone()),
        error_message,
        user_id: e.actor.unwrap_or_else(|| "default".into()),
        event: e.kind.to_string(),
        details: e.details,
    }
}

/// The complete history of a task (also of a removed one).
#[utoipa::path(
    get,
    path = "/api/tasks/history/{task_id}",
    operation_id = "compat_task_history",
    tag = "compat",
    params(("task_id" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "The history", body = AutodevHistory),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    PathParam(task_id): PathParam,
) -> ApiResult<axum::Json<AutodevHistory>> {
    let id = task_id.clone();
    let (events, task) = super::read(&state, move |store| {
        let events = store.history(&id)?;
        let task = store.get(&id).ok();
        Ok((events, task))
    })
    .await?;
    let history: Vec<TaskHistoryRecord> = events
        .into_iter()
        .map(|e| record(&task_id, task.as_ref(), e))
        .collect();
    Ok(axum::Json(AutodevHistory {
        task_id,
        count: history.len(),
        history,
    }))
}

// ----- recover one task ----------------------------------------------------------------------

/// `POST /api/tasks/{task_id}/recover` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverTaskResponse {
    /// Always true (refusals are problems).
    pub success: bool,
    /// The task.
    pub task_id: String,
    /// True when the task was interrupted now.
    pub recovered: bool,
    /// `requeued` (back to pending, its checkpoint kept), `failed`, or `none`.
    pub action: String,
    /// In words.
    pub message: String,
    /// The task as it stands now.
    pub task: Task,
}

/// Recovers one task whose worker is gone: a running task whose lease expired (stuck), or one
/// running without a lease under an earlier server session (orphaned), is interrupted now
/// under the store's policy (`Requeue`: back to pending keeping its checkpoint; `MarkFailed`:
/// failed; `Leave`: requeued, since an operator asked). A task that is not running needs
/// nothing (200, `recovered: false`). A running task still held (a live lease, or started in
/// this session without a lease) is refused with 409 `still_running`.
#[utoipa::path(
    post,
    path = "/api/tasks/{task_id}/recover",
    operation_id = "compat_recover_task",
    tag = "compat",
    params(("task_id" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "Recovered, or nothing to recover", body = RecoverTaskResponse),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is still held by a live worker, or changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn recover(
    State(state): State<AppState>,
    PathParam(task_id): PathParam,
    body: Body,
) -> ApiResult<axum::Json<RecoverTaskResponse>> {
    crate::admin::drain(body).await;
    let id = task_id.clone();
    let outcome = state
        .run(move |store| {
            let task = store.get(&id)?;
            if task.state != TaskState::Running {
                return Ok(Err(task));
            }
            let now = Timestamp::now();
            let stuck = task.lease.as_ref().is_some_and(|l| l.expires_at < now);
            let orphaned = task.lease.is_none() && task.session != store.session();
            if !stuck && !orphaned {
                return Ok(Ok(None));
            }
            let reason = if stuck {
                "recovered on request: lease expired"
            } else {
                "recovered on request: its owner's session ended"
            };
            // NOTE: the store checks again that the owner is gone (and the version), so this
            // endpoint cannot interrupt live work even if the checks above race a heartbeat.
            let task = store.recover_abandoned(&id, reason, Some(super::autodev::ACTOR))?;
            Ok(Ok(Some(task)))
        })
        .await?;
    let resp = match outcome {
        Err(task) => RecoverTaskResponse {
            success: true,
            task_id,
            recovered: false,
            action: "none".into(),
            message: format!("the task is {}; nothing to recover", task.state),
            task,
        },
        Ok(None) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "still_running",
                "the task is running under a live lease or in this server's session; use cancel or requeue to take it back",
            )
            .task(task_id));
        }
        Ok(Some(task)) => RecoverTaskResponse {
            success: true,
            task_id,
            recovered: true,
            action: if task.state == TaskState::Failed {
                "failed".into()
            } else {
                "requeued".into()
            },
            message: format!("the task was interrupted and is now {}", task.state),
            task,
        },
    };
    Ok(axum::Json(resp))
}

// ----- outputs -------------------------------------------------------------------------------

/// One output (`TaskOutput`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskOutputRecord {
    /// Its position among the task's outputs, from 1.
    pub id: usize,
    /// The task.
    pub task_id: String,
    /// stdout, stderr, log, artifact or commit.
    pub output_type: OutputKind,
    /// The text.
    pub content: String,
    /// When it was recorded.
    pub timestamp: Timestamp,
    /// The file, for artifacts.
    pub file_path: Option<String>,
    /// Its size in bytes.
    pub file_size: Option<u64>,
    /// Its MIME type.
    pub mime_type: Option<String>,
    /// The content of a `commit` output (its hash); null otherwise.
    pub commit_hash: Option<String>,
    /// The task's metadata `branch`, when it is a string.
    pub branch: Option<String>,
}

/// `GET /api/tasks/outputs/{task_id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutodevOutputs {
    /// The task.
    pub task_id: String,
    /// Every output, oldest first.
    pub outputs: Vec<TaskOutputRecord>,
    /// How many.
    pub count: usize,
}

fn outputs_of(task: &Task) -> Vec<TaskOutputRecord> {
    let branch = task
        .metadata
        .get("branch")
        .and_then(Value::as_str)
        .map(str::to_string);
    task.outputs
        .iter()
        .enumerate()
        .map(|(i, o)| TaskOutputRecord {
            id: i + 1,
            task_id: task.id.clone(),
            output_type: o.kind,
            content: o.content.clone(),
            timestamp: o.at,
            file_path: o.path.clone(),
            file_size: o.size_bytes,
            mime_type: o.mime.clone(),
            commit_hash: (o.kind == OutputKind::Commit).then(|| o.content.clone()),
            branch: branch.clone(),
        })
        .collect()
}

/// Every output and artifact of a task.
#[utoipa::path(
    get,
    path = "/api/tasks/outputs/{task_id}",
    operation_id = "compat_list_outputs",
    tag = "compat",
    params(("task_id" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "The outputs", body = AutodevOutputs),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_outputs(
    State(state): State<AppState>,
    PathParam(task_id): PathParam,
) -> ApiResult<axum::Json<AutodevOutputs>> {
    let id = task_id.clone();
    let task = super::read(&state, move |store| store.get(&id)).await?;
    let outputs = outputs_of(&task);
    Ok(axum::Json(AutodevOutputs {
        task_id,
        count: outputs.len(),
        outputs,
    }))
}

/// `POST /api/tasks/outputs/{task_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutodevNewOutput {
    /// stdout, stderr, log, artifact or commit.
    pub output_type: OutputKind,
    /// The text (a commit's hash for `commit`).
    pub content: String,
    /// The file, for artifacts.
    #[serde(default)]
    pub file_path: Option<String>,
    /// Its size in bytes.
    #[serde(default, deserialize_with = "crate::extract::int::opt_u64")]
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub file_size: Option<u64>,
    /// Its MIME type.
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// Adds an output or artifact to a task.
#[utoipa::path(
    post,
    path = "/api/tasks/outputs/{task_id}",
    operation_id = "compat_add_output",
    tag = "compat",
    params(("task_id" = String, Path, description = "The task")),
    request_body = AutodevNewOutput,
    responses(
        (status = 201, description = "The output recorded", body = TaskOutputRecord),
        (status = 400, description = "Bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task's state does not take outputs", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_output(
    State(state): State<AppState>,
    PathParam(task_id): PathParam,
    Json(new): Json<AutodevNewOutput>,
) -> ApiResult<(StatusCode, axum::Json<TaskOutputRecord>)> {
    let task = state
        .run(move |store| {
            let change = Change::Output {
                kind: new.output_type,
                content: new.content,
                path: new.file_path,
                size_bytes: new.file_size,
                mime: new.mime_type,
            };
            store.apply(Mutation::new(task_id, change).actor(ACTOR))
        })
        .await?;
    let record = outputs_of(&task).pop().ok_or_else(|| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the output was recorded but the task shows none",
        )
    })?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

// ----- persistence statistics ----------------------------------------------------------------

/// `GET /api/persistence/stats` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersistenceStats {
    /// Live tasks.
    pub total_tasks: usize,
    /// State -> count (every state).
    pub by_state: BTreeMap<String, usize>,
    /// Role -> count.
    pub by_role: BTreeMap<String, usize>,
    /// Provider -> count.
    pub by_provider: BTreeMap<String, usize>,
    /// Events in the audit trail (live and removed tasks).
    pub history_events: u64,
    /// Removed tasks whose history is kept.
    pub removed_tasks: usize,
    /// The log and snapshots: sizes, LSNs, fsync latency.
    pub storage: tasklog::store::Health,
    /// What opening the store found and did.
    pub recovery_at_open: RecoveryReport,
    /// False while the store refuses writes (poisoned) or is closing.
    pub healthy: bool,
}

/// Database statistics and health: counts, the log and snapshots, the last recovery.
#[utoipa::path(
    get,
    path = "/api/persistence/stats",
    operation_id = "compat_persistence_stats",
    tag = "compat",
    responses(
        (status = 200, description = "The statistics", body = PersistenceStats),
        (status = 400, description = "A query parameter was given", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn persistence_stats(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<PersistenceStats>> {
    q.allow(&[])?;
    let stats = super::read(&state, |store| store.stats(None)).await?;
    Ok(axum::Json(PersistenceStats {
        total_tasks: stats.total,
        by_state: stats.by_state,
        by_role: stats.by_role,
        by_provider: stats.by_provider,
        history_events: stats.events,
        removed_tasks: stats.removed,
        storage: stats.health,
        recovery_at_open: state.store().recovery_report().clone(),
        healthy: crate::health::not_ready(&state).is_none(),
    }))
}
