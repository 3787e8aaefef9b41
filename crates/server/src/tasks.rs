//! `/v1/tasks...` and `/v1/batch`: submit, read, list, count, update, remove, history,
//! outputs, every transition, and atomic batches.
//!
//! Every task response carries `ETag: "<version>"`; a change with `If-Match: "<version>"` is
//! conditional (412 `version_mismatch`). The actor of a change is the body's `actor`, else the
//! `X-Tasklog-Actor` header. Request bodies reject unknown fields.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tasklog::Task;
use tasklog::store::{Change, HistoryEvent, Mutation};
use tasklog::task::Output;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

mod batch;
mod bodies;
pub(crate) mod listing;
mod transitions;

pub use batch::{BATCH_MUTATIONS_MAX, BatchBody, BatchMutation, BatchResponse};
pub use bodies::{
    CheckpointBody, CompleteBody, FailBody, OutputBody, ProgressBody, ReasonBody, RetryBody,
    StartBody, SubmitBody, UpdateBody,
};
pub use listing::{CountResponse, FilterParams, ListResponse, PageParams};

/// Header naming who makes a change (when the body has no `actor`).
pub const ACTOR_HEADER: &str = "x-tasklog-actor";
/// Header carrying a submit's idempotency key (when the body has no `request_id`).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest actor, owner, request id or idempotency key accepted, in characters.
pub const KEY_CHARS_MAX: usize = 256;
/// Longest lease a start may ask for (one day).
pub const LEASE_MS_MAX: u64 = 86_400_000;

const TAG: &str = "tasks";

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit, list))
        .routes(routes!(listing::count))
        .routes(routes!(get_task, update, remove))
        .routes(routes!(history))
        .routes(routes!(outputs, add_output))
        .routes(routes!(transitions::start))
        .routes(routes!(transitions::progress))
        .routes(routes!(transitions::checkpoint))
        .routes(routes!(transitions::complete))
        .routes(routes!(transitions::fail))
        .routes(routes!(transitions::cancel))
        .routes(routes!(transitions::retry))
        .routes(routes!(transitions::requeue))
        .routes(routes!(batch::batch))
}

// ----- responses ------------------------------------------------------------------------------

/// A task with its `ETag`.
pub struct TaskResponse {
    status: StatusCode,
    task: Task,
    location: bool,
}

impl TaskResponse {
    /// 200 with the task.
    pub fn ok(task: Task) -> Self {
        TaskResponse {
            status: StatusCode::OK,
            task,
            location: false,
        }
    }
}

/// The `ETag` of a task version.
pub fn etag(version: u64) -> HeaderValue {
    // Digits and quotes: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

impl IntoResponse for TaskResponse {
    fn into_response(self) -> Response {
        let tag = etag(self.task.version);
        let location = self
            .location
            .then(|| {
                HeaderValue::from_str(&format!("/v1/tasks/{}", encode_segment(&self.task.id))).ok()
            })
            .flatten();
        let mut resp = (self.status, axum::Json(&self.task)).into_response();
        resp.headers_mut().insert(header::ETAG, tag);
        if let Some(loc) = location {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        resp
    }
}

/// Percent-encodes a path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ----- request headers --------------------------------------------------------------------------

/// The headers of a change: `If-Match` and `X-Tasklog-Actor`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ChangeHeaders {
    /// Make the change conditional on the task's version: `"<version>"` as the task's `ETag`
    /// (412 `version_mismatch` otherwise), or `*`.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r#"^(\*|(W/)?"[0-9]+"|[0-9]+)$"#
    )]
    pub if_match: Option<String>,
    /// Who makes the change (recorded in the history), when the body has no `actor`.
    #[param(rename = "X-Tasklog-Actor", nullable = false, max_length = 256)]
    pub actor: Option<String>,
}

/// What a change's headers ask for.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    /// `If-Match`'s version.
    pub expected_version: Option<u64>,
    /// `X-Tasklog-Actor`.
    pub actor: Option<String>,
}

impl Conditions {
    /// Reads `If-Match` and `X-Tasklog-Actor`.
    pub fn from_headers(headers: &HeaderMap) -> ApiResult<Conditions> {
        let expected_version = match header_text(headers, header::IF_MATCH.as_str())? {
            None => None,
            Some(v) => parse_if_match(&v)?,
        };
        let actor = check_key(header_text(headers, ACTOR_HEADER)?, "X-Tasklog-Actor")?;
        Ok(Conditions {
            expected_version,
            actor,
        })
    }

    /// A mutation of task `id` under these conditions, with `actor` from the body first.
    pub fn mutation(&self, id: &str, change: Change, actor: Option<String>) -> ApiResult<Mutation> {
        let mut m = Mutation::new(id, change);
        m.expected_version = self.expected_version;
        m.actor = check_key(actor, "$.actor")?.or_else(|| self.actor.clone());
        Ok(m)
    }
}

/// A header's value as text (bytes that are not UTF-8 become U+FFFD), trimmed.
pub fn header_text(headers: &HeaderMap, name: &str) -> ApiResult<Option<String>> {
    Ok(headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string()))
}

/// `"5"` (also `W/"5"` and a bare `5`) -> Some(5); `*` -> None.
fn parse_if_match(v: &str) -> ApiResult<Option<u64>> {
    if v == "*" {
        return Ok(None);
    }
    let bare = v.strip_prefix("W/").unwrap_or(v);
    let bare = bare
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or(bare);
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit()) {
        // A version too large for u64 matches no task: saturate rather than refuse.
        return Ok(Some(bare.parse::<u64>().unwrap_or(u64::MAX)));
    }
    Err(Problem::bad_request(
        "invalid_input",
        format!("If-Match {v:?} is not one task version such as \"3\" (the task's ETag)"),
    )
    .at("If-Match"))
}

/// Checks an actor, request id, owner or key: empty is the same as absent; at most 256
/// characters.
pub fn check_key(v: Option<String>, at: &str) -> ApiResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > KEY_CHARS_MAX => Err(Problem::bad_request(
            "invalid_input",
            format!("{at} is longer than {KEY_CHARS_MAX} characters"),
        )
        .at(at.to_string())),
        Some(v) => Ok(Some(v)),
    }
}

/// Applies one mutation on the blocking pool.
async fn apply(state: &AppState, m: Mutation) -> ApiResult<TaskResponse> {
    let task = state
        .run(move |s| s.apply(m).map_err(absent_is_not_found))
        .await?;
    Ok(TaskResponse::ok(task))
}

/// A version check against a task that does not exist (version 0) is a 404, not a 412.
pub fn absent_is_not_found(e: tasklog::Error) -> tasklog::Error {
    match e {
        tasklog::Error::Conflict { id, actual: 0, .. } => tasklog::Error::NotFound { id },
        e => e,
    }
}

// ----- handlers ---------------------------------------------------------------------------------

/// Submit a task.
///
/// With a `request_id` (or an `Idempotency-Key` header) already seen, returns the task the
/// first submit created instead of creating another.
#[utoipa::path(
    post, path = "/v1/tasks", tag = TAG, operation_id = "submit_task",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 256, description = "Makes a retried submit return the task the first one created (same as the body's `request_id`)."),
        ("X-Tasklog-Actor" = Option<String>, Header, nullable = false, max_length = 256, description = "Who submits (when the body has no `actor`)."),
    ),
    request_body(content = SubmitBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The task (created now, or by the first submit with the same request id)", body = Task,
            headers(("ETag" = String, description = "The task's version, quoted"), ("Location" = String, description = "The task's URL"))),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The first submit with this request id created a task that was removed since", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A task with this id exists", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<SubmitBody>,
) -> ApiResult<TaskResponse> {
    let cond = Conditions::from_headers(&headers)?;
    let key = check_key(
        header_text(&headers, IDEMPOTENCY_HEADER)?,
        "Idempotency-Key",
    )?;
    let (new, actor) = body.into_new_task("$", key)?;
    let mut m = cond.mutation(
        &new.id.clone().unwrap_or_default(),
        Change::Submit(new),
        actor,
    )?;
    m.expected_version = None;
    let task = state.run(move |s| s.apply(m)).await?;
    Ok(TaskResponse {
        status: StatusCode::CREATED,
        task,
        location: true,
    })
}

/// List tasks.
///
/// Sorted by creation (default) or update time; pages continue with `cursor` (the previous
/// page's `next_cursor`), which stays correct while tasks change.
#[utoipa::path(
    get, path = "/v1/tasks", tag = TAG, operation_id = "list_tasks",
    params(FilterParams, PageParams),
    responses(
        (status = 200, description = "One page of matching tasks", body = ListResponse),
        (status = 400, description = "Invalid query parameter (named in `at`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> ApiResult<Json<ListResponse>> {
    listing::list(state, uri).await
}

/// Get a task.
#[utoipa::path(
    get, path = "/v1/tasks/{id}", tag = TAG, operation_id = "get_task",
    params(
        ("id" = String, Path, description = "The task id"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "The task's ETag: answers 304 when the task is still at that version"),
    ),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "The task's version, quoted"))),
        (status = 304, description = "The task is still at the version named by If-None-Match"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let task = state.run(move |s| s.get(&id)).await?;
    if let Some(inm) = header_text(&headers, header::IF_NONE_MATCH.as_str())? {
        let tag = format!("\"{}\"", task.version);
        let hit = inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == tag);
        if hit {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            resp.headers_mut().insert(header::ETAG, etag(task.version));
            return Ok(resp);
        }
    }
    Ok(TaskResponse::ok(task).into_response())
}

/// Update a task's descriptive fields (any state).
#[utoipa::path(
    patch, path = "/v1/tasks/{id}", tag = TAG, operation_id = "update_task",
    params(("id" = String, Path, description = "The task id"), ChangeHeaders),
    request_body(content = UpdateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The task after the change", body = Task, headers(("ETag" = String, description = "The task's version, quoted"))),
        (status = 400, description = "Invalid body or header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<UpdateBody>,
) -> ApiResult<TaskResponse> {
    let cond = Conditions::from_headers(&headers)?;
    let (change, actor) = body.into_change("$")?;
    apply(&state, cond.mutation(&id, change, actor)?).await
}

/// Query of a removal.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveParams {
    /// Why (recorded in the history).
    pub reason: Option<String>,
}

/// Remove a task. Its history stays readable.
#[utoipa::path(
    delete, path = "/v1/tasks/{id}", tag = TAG, operation_id = "remove_task",
    params(("id" = String, Path, description = "The task id"), RemoveParams, ChangeHeaders),
    responses(
        (status = 200, description = "The task as it was when removed", body = Task, headers(("ETag" = String, description = "The removed task's last version, quoted"))),
        (status = 400, description = "Invalid query or header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RemoveParams>,
    headers: HeaderMap,
) -> ApiResult<TaskResponse> {
    let cond = Conditions::from_headers(&headers)?;
    apply(
        &state,
        cond.mutation(&id, Change::Remove { reason: q.reason }, None)?,
    )
    .await
}

/// A task's history: every event, oldest first. Also for removed tasks.
#[utoipa::path(
    get, path = "/v1/tasks/{id}/history", tag = TAG, operation_id = "task_history",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The events, oldest first", body = Vec<HistoryEvent>),
        (status = 404, description = "No task ever had this id", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<HistoryEvent>>> {
    state.run(move |s| s.history(&id)).await.map(Json)
}

/// A task's outputs, in order.
#[utoipa::path(
    get, path = "/v1/tasks/{id}/outputs", tag = TAG, operation_id = "list_task_outputs",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The outputs, in order", body = Vec<Output>),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn outputs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Output>>> {
    state
        .run(move |s| s.get(&id))
        .await
        .map(|t| Json(t.outputs))
}

/// Record an output of a task (any state).
#[utoipa::path(
    post, path = "/v1/tasks/{id}/outputs", tag = TAG, operation_id = "add_task_output",
    params(("id" = String, Path, description = "The task id"), ChangeHeaders),
    request_body(content = OutputBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The task after the change", body = Task, headers(("ETag" = String, description = "The task's version, quoted"))),
        (status = 400, description = "Invalid body or header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task's state does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<OutputBody>,
) -> ApiResult<TaskResponse> {
    let cond = Conditions::from_headers(&headers)?;
    let (change, actor) = body.into_change("$")?;
    apply(&state, cond.mutation(&id, change, actor)?).await
}
