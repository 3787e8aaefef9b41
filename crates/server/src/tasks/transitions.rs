//! `POST /v1/tasks/{id}/<transition>`: start, progress, checkpoint, complete, fail, cancel,
//! retry, requeue. One macro declares each route with its OpenAPI description; bodies that
//! are optional may be empty (or `null`).

use axum::extract::State;
use axum::http::HeaderMap;
use tasklog::Task;

use super::bodies::{
    self, CheckpointBody, CompleteBody, FailBody, ProgressBody, ReasonBody, RetryBody, StartBody,
};
use super::{ChangeHeaders, Conditions, TAG, TaskResponse, apply};
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Declares a transition route: `POST /v1/tasks/{id}/<name>` with an optional or required body.
macro_rules! transition {
    ($name:ident, $path:literal, $body:ty, optional, $summary:literal, $conv:expr) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = TAG, operation_id = concat!(stringify!($name), "_task"),
            params(("id" = String, Path, description = "The task id"), ChangeHeaders),
            request_body(content = Option<$body>, content_type = "application/json", description = "Optional: an empty body is the same as `{}`"),
            responses(
                (status = 200, description = "The task after the change", body = Task, headers(("ETag" = String, description = "The task's version, quoted"))),
                (status = 400, description = "Invalid body or header", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "The task's state does not allow this transition (`invalid_transition`), or its lease is held by a worker (`lease_lost`)", body = Problem, content_type = "application/problem+json"),
                (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json"),
                (status = 429, description = "start: the task's kind is paused or at a concurrency or rate limit (`throttled`; `Retry-After` when a rate limit says when)", body = Problem, content_type = "application/problem+json"),
            )
        )]
        pub async fn $name(
            State(state): State<AppState>,
            Path(id): Path<String>,
            headers: HeaderMap,
            body: Option<Json<$body>>,
        ) -> ApiResult<TaskResponse> {
            let cond = Conditions::from_headers(&headers)?;
            let body: $body = body.map(|Json(b)| b).unwrap_or_default();
            let conv = $conv;
            let (change, actor) = conv(body)?;
            apply(&state, cond.mutation(&id, change, actor)?).await
        }
    };
    ($name:ident, $path:literal, $body:ty, required, $summary:literal, $conv:expr) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = TAG, operation_id = concat!(stringify!($name), "_task"),
            params(("id" = String, Path, description = "The task id"), ChangeHeaders),
            request_body(content = $body, content_type = "application/json"),
            responses(
                (status = 200, description = "The task after the change", body = Task, headers(("ETag" = String, description = "The task's version, quoted"))),
                (status = 400, description = "Invalid body or header", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "The task's state does not allow this transition", body = Problem, content_type = "application/problem+json"),
                (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json"),
            )
        )]
        pub async fn $name(
            State(state): State<AppState>,
            Path(id): Path<String>,
            headers: HeaderMap,
            Json(body): Json<$body>,
        ) -> ApiResult<TaskResponse> {
            let cond = Conditions::from_headers(&headers)?;
            let conv = $conv;
            let (change, actor) = conv(body)?;
            apply(&state, cond.mutation(&id, change, actor)?).await
        }
    };
}

transition!(
    start,
    "/v1/tasks/{id}/start",
    StartBody,
    optional,
    "Start a pending task (pending -> running), optionally under a lease.",
    |b: StartBody| b.into_change("$")
);
transition!(
    progress,
    "/v1/tasks/{id}/progress",
    ProgressBody,
    required,
    "Report progress of a running task.",
    |b: ProgressBody| b.into_change("$")
);
transition!(
    checkpoint,
    "/v1/tasks/{id}/checkpoint",
    CheckpointBody,
    required,
    "Take a checkpoint of a running task.",
    |b: CheckpointBody| b.into_change("$")
);
transition!(
    complete,
    "/v1/tasks/{id}/complete",
    CompleteBody,
    optional,
    "Complete a running task (running -> completed).",
    |b: CompleteBody| b.into_change("$")
);
transition!(
    fail,
    "/v1/tasks/{id}/fail",
    FailBody,
    required,
    "Fail a running task (running -> failed).",
    |b: FailBody| b.into_change("$")
);
transition!(
    cancel,
    "/v1/tasks/{id}/cancel",
    ReasonBody,
    optional,
    "Cancel a pending or running task (-> cancelled).",
    |b: ReasonBody| b.into_reason_change("$", bodies::cancel)
);
transition!(
    retry,
    "/v1/tasks/{id}/retry",
    RetryBody,
    optional,
    "Retry a failed, cancelled or discarded task (-> pending, attempt + 1).",
    |b: RetryBody| b.into_change("$")
);
transition!(
    requeue,
    "/v1/tasks/{id}/requeue",
    ReasonBody,
    optional,
    "Put a running task back in the queue (running -> pending).",
    |b: ReasonBody| b.into_reason_change("$", bodies::requeue)
);
