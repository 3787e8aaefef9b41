//! The worker protocol: any language can run tasks over plain HTTP.
//!
//! `POST /v1/workers/claim` takes the best claimable task (pending, of one of the worker's
//! kinds, past its `runtime.not_before`; highest priority first, then in creation order) under
//! a lease, waiting up to `wait_ms` for one (a long poll woken by the event hub, holding no
//! thread while it waits). The answer carries a fencing token, `<attempt>.<claim_lsn>`: every
//! later call on the task (`heartbeat`, `progress`, `checkpoint`, `output`, `complete`, `fail`)
//! sends it with the owner, and is applied only while that exact claim holds the lease (409
//! `lease_lost` once it was lost: expired and recovered, requeued, cancelled, claimed again).
//!
//! A claim is a `Start` under the task's version read just before: two workers racing for
//! one task cannot both win; the loser moves on to the next candidate.

#![allow(
    clippy::result_large_err,
    reason = "`Problem` (error.rs) is large; boxing it is error.rs's call, shared by every module"
)]

mod extract;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklog::store::{Change, Mutation};
use tasklog::task::{Checkpoint, OutputKind, Timestamp};
use tasklog::{Store, Task, TaskState};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::events::Hub;
use crate::events::ready::{kind_of, not_before_ms};
use crate::state::AppState;
pub(crate) use extract::{Body, TaskId};

/// Lease length when a claim or heartbeat names none, in milliseconds.
pub const LEASE_MS_DEFAULT: u64 = 30_000;
/// Longest lease a claim or heartbeat may ask for: one day, in milliseconds.
pub const LEASE_MS_MAX: u64 = 86_400_000;
/// Most kinds one claim may name.
pub const KINDS_MAX: usize = 64;
/// Longest wait for the ready queue to reflect what was committed before a claim.
const CATCH_UP_MAX: Duration = Duration::from_secs(1);
/// A deadline beyond any wait (when adding the wait overflows the clock).
const FAR: Duration = Duration::from_secs(365 * 86_400);
/// How often a long poll looks again when the hub cannot wake it.
const FALLBACK_POLL: Duration = Duration::from_millis(100);

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
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub lease_ms: Option<u64>,
    /// How long to wait for a claimable task, in milliseconds (default 0: answer at once).
    /// Longer waits are cut to the server's limit (60,000 by default).
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
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
    /// Who makes the change (default: the owner).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub actor: Option<String>,
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(claim))
        .routes(routes!(heartbeat))
        .routes(routes!(progress))
        .routes(routes!(checkpoint))
        .routes(routes!(output))
        .routes(routes!(complete))
        .routes(routes!(fail))
}

// ----- claim -------------------------------------------------------------------------------

/// A validated claim.
struct Claim {
    owner: String,
    actor: String,
    kinds: Option<Vec<String>>,
    lease_ms: u64,
}

impl Claim {
    fn new(req: ClaimRequest, headers: &HeaderMap) -> ApiResult<(Claim, u64)> {
        extract::check_name(&req.owner, "$.owner")?;
        let actor = extract::actor(req.actor, headers, &req.owner)?;
        let lease_ms = lease_ms(req.lease_ms)?;
        if let Some(kinds) = &req.kinds
            && (kinds.is_empty() || kinds.len() > KINDS_MAX)
        {
            return Err(Problem::bad_request(
                "invalid_input",
                "kinds must name 1 to 64 kinds (omit it to claim a task of any kind)",
            )
            .at("$.kinds"));
        }
        let claim = Claim {
            owner: req.owner,
            actor,
            kinds: req.kinds,
            lease_ms,
        };
        Ok((claim, req.wait_ms.unwrap_or(0)))
    }

    fn accepts(&self, task: &Task, now_ms: i64) -> bool {
        task.state == TaskState::Pending
            && not_before_ms(task) <= now_ms
            && self.kinds.as_ref().is_none_or(|kinds| {
                kind_of(task).is_some_and(|k| kinds.iter().any(|want| want == k))
            })
    }
}

fn lease_ms(asked: Option<u64>) -> ApiResult<u64> {
    match asked {
        None => Ok(LEASE_MS_DEFAULT),
        Some(ms) if (1..=LEASE_MS_MAX).contains(&ms) => Ok(ms),
        Some(ms) => Err(Problem::bad_request(
            "invalid_input",
            format!("lease_ms {ms} is out of range (1 to {LEASE_MS_MAX})"),
        )
        .at("$.lease_ms")),
    }
}

/// What one pass over the ready queue found.
enum Attempt {
    Claimed(Box<Task>),
    /// Nothing claimable now; a held-back task becomes due at this time (ms), if any.
    Nothing {
        next_due_ms: Option<i64>,
    },
}

/// Claims the best claimable task, trying candidates in order until one claim holds.
fn try_claim(store: &Store, hub: &Hub, c: &Claim) -> tasklog::Result<Attempt> {
    let mut tried = HashSet::new();
    loop {
        let now = Timestamp::now().0;
        let Some(id) = hub.ready().best(c.kinds.as_deref(), now, &tried) else {
            let next_due_ms = hub.ready().next_due_ms();
            return Ok(Attempt::Nothing { next_due_ms });
        };
        tried.insert(id.clone());
        let task = match store.get(&id) {
            Ok(t) => t,
            Err(tasklog::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        if !c.accepts(&task, now) {
            continue;
        }
        let start = Change::Start {
            owner: Some(c.owner.clone()),
            lease_ms: Some(c.lease_ms),
        };
        let m = Mutation::new(id, start)
            .expect_version(task.version)
            .actor(c.actor.clone());
        match store.apply(m) {
            Ok(t) => return Ok(Attempt::Claimed(Box::new(t))),
            // Taken, changed, cancelled or removed since it was read: the next one.
            Err(
                tasklog::Error::Conflict { .. }
                | tasklog::Error::InvalidTransition { .. }
                | tasklog::Error::NotFound { .. },
            ) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn shutting_down() -> Problem {
    Problem::unavailable("shutting_down", "the server is shutting down", 5)
}

/// Claims a task for a worker.
///
/// Takes the best claimable task: pending, of one of `kinds` (any task when omitted), past
/// its `runtime.not_before`; highest priority first, then oldest first. Waits up to `wait_ms`
/// (cut to the server's limit) for one to become claimable, then answers 204.
#[utoipa::path(
    post,
    path = "/v1/workers/claim",
    tag = "workers",
    request_body = ClaimRequest,
    params(
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "A task was claimed", body = ClaimResponse),
        (status = 204, description = "Nothing was claimable within `wait_ms`"),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<ClaimRequest>,
) -> ApiResult<Response> {
    let (claim, wait_ms) = Claim::new(req, &headers)?;
    let claim = Arc::new(claim);
    let wait = Duration::from_millis(wait_ms).min(state.options().max_claim_wait);
    let start = tokio::time::Instant::now();
    // NOTE: checked: `max_claim_wait` is the operator's, and may be huge.
    let deadline = start.checked_add(wait).unwrap_or(start + FAR);
    let hub = state.hub().clone();
    let mut wake = hub.wake_receiver();
    let mut closed = hub.closed_receiver();
    // A claim sees every task committed before it (the hub follows the log on its own
    // thread, normally within microseconds).
    hub.caught_up(state.store().last_lsn(), CATCH_UP_MAX).await;
    loop {
        if hub.is_closed() {
            return Err(shutting_down());
        }
        // Marked seen before looking, so a task queued after the look wakes the wait below.
        wake.borrow_and_update();
        let (c, h) = (claim.clone(), hub.clone());
        let next_due_ms = match state.run(move |store| try_claim(store, &h, &c)).await? {
            Attempt::Claimed(task) => return claimed(*task),
            Attempt::Nothing { next_due_ms } => next_due_ms,
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let mut until = deadline;
        if let Some(due) = next_due_ms {
            // `not_before` is anyone's metadata: any i64.
            let in_ms = due.saturating_sub(Timestamp::now().0).max(1).unsigned_abs();
            if let Some(at) = now.checked_add(Duration::from_millis(in_ms)) {
                until = until.min(at);
            }
        }
        tokio::select! {
            woken = wake.changed() => {
                if woken.is_err() {
                    // The hub is gone: look again now and then.
                    tokio::time::sleep_until(until.min(now + FALLBACK_POLL)).await;
                }
            }
            () = tokio::time::sleep_until(until) => {}
            () = crate::events::until_closed(&mut closed) => {}
        }
    }
}

fn claimed(task: Task) -> ApiResult<Response> {
    let Some(lease) = task.lease.clone() else {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a claimed task has no lease",
        )
        .task(task.id));
    };
    let version = task.version;
    let body = ClaimResponse {
        token: format!("{}.{}", task.attempt, lease.claim_lsn),
        checkpoint: task.checkpoint.clone(),
        lease_expires_at: lease.expires_at,
        task,
    };
    Ok(with_etag(Json(body).into_response(), version))
}

fn with_etag(mut resp: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

// ----- fenced calls ------------------------------------------------------------------------

/// Parses a fencing token, `<attempt>.<claim_lsn>` (decimal, no sign, no leading zeros).
pub fn parse_token(token: &str) -> Option<(u32, u64)> {
    fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        canonical.then(|| s.parse().ok()).flatten()
    }
    let (attempt, claim) = token.split_once('.')?;
    Some((number(attempt)?, number(claim)?))
}

/// The owner and token of a call on a claimed task, checked.
struct Holder {
    owner: String,
    attempt: u32,
    claim_lsn: u64,
    actor: String,
}

impl Holder {
    fn new(
        owner: String,
        token: &str,
        actor: Option<String>,
        headers: &HeaderMap,
    ) -> ApiResult<Holder> {
        extract::check_name(&owner, "$.owner")?;
        let (attempt, claim_lsn) = parse_token(token).ok_or_else(|| {
            Problem::bad_request(
                "invalid_input",
                "token is not a fencing token from a claim (`<attempt>.<claim_lsn>`)",
            )
            .at("$.token")
        })?;
        let actor = extract::actor(actor, headers, &owner)?;
        Ok(Holder {
            owner,
            attempt,
            claim_lsn,
            actor,
        })
    }

    /// Applies `change` to task `id` if this holder's claim still holds the lease.
    async fn apply(self, state: &AppState, id: String, change: Change) -> ApiResult<Response> {
        let m = Mutation::new(id, change)
            .fenced_claim(self.owner, self.attempt, self.claim_lsn)
            .actor(self.actor);
        let task = state.run(move |store| store.apply(m)).await?;
        let version = task.version;
        Ok(with_etag(Json(task).into_response(), version))
    }
}

fn percent(p: u8, at: &str) -> ApiResult<u8> {
    if p > 100 {
        return Err(
            Problem::bad_request("invalid_input", format!("{p} is above 100")).at(at.to_string()),
        );
    }
    Ok(p)
}

/// Extends the lease of a claimed task.
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/heartbeat",
    tag = "workers",
    request_body = HeartbeatRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "The lease was extended; the task (ETag: its version)", body = Task),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn heartbeat(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Body(req): Body<HeartbeatRequest>,
) -> ApiResult<Response> {
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    let change = Change::Heartbeat {
        owner: holder.owner.clone(),
        lease_ms: lease_ms(req.lease_ms)?,
    };
    holder.apply(&state, id, change).await
}

/// Reports progress of a claimed task.
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/progress",
    tag = "workers",
    request_body = ProgressRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "Recorded; the task (ETag: its version)", body = Task),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn progress(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Body(req): Body<ProgressRequest>,
) -> ApiResult<Response> {
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    let change = Change::Progress {
        percent: percent(req.percent, "$.percent")?,
        step: req.step,
        message: req.message,
    };
    holder.apply(&state, id, change).await
}

/// Takes a checkpoint of a claimed task.
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/checkpoint",
    tag = "workers",
    request_body = CheckpointRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "Recorded; the task (ETag: its version)", body = Task),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn checkpoint(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Body(req): Body<CheckpointRequest>,
) -> ApiResult<Response> {
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    let progress = match req.progress {
        Some(p) => Some(percent(p, "$.progress")?),
        None => None,
    };
    let change = Change::Checkpoint {
        name: req.name,
        data: req.data,
        progress,
    };
    holder.apply(&state, id, change).await
}

/// Records an output of a claimed task.
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/output",
    tag = "workers",
    request_body = OutputRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "Recorded; the task (ETag: its version)", body = Task),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn output(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Body(req): Body<OutputRequest>,
) -> ApiResult<Response> {
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    let change = Change::Output {
        kind: req.kind,
        content: req.content,
        path: req.path,
        size_bytes: req.size_bytes,
        mime: req.mime,
    };
    holder.apply(&state, id, change).await
}

/// Completes a claimed task.
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/complete",
    tag = "workers",
    request_body = CompleteRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "Completed; the task (ETag: its version)", body = Task),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn complete(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Body(req): Body<CompleteRequest>,
) -> ApiResult<Response> {
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    holder
        .apply(&state, id, Change::Complete { result: req.result })
        .await
}

/// Fails a claimed task, or gives it back (`requeue: true`).
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/fail",
    tag = "workers",
    request_body = FailRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ("X-Tasklog-Actor" = Option<String>, Header, description = "Who makes the change, when the body names no actor (1 to 256 characters, no control characters)", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "Failed (or requeued); the task (ETag: its version)", body = Task),
        (status = 400, description = "Bad input (`at` names the field)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, or the store cannot write (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn fail(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Body(req): Body<FailRequest>,
) -> ApiResult<Response> {
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    let change = if req.requeue {
        Change::Requeue {
            reason: Some(req.error),
        }
    } else {
        Change::Fail { error: req.error }
    };
    holder.apply(&state, id, change).await
}

#[cfg(test)]
mod tests {
    use super::parse_token;

    #[test]
    fn tokens_parse_strictly() {
        assert_eq!(parse_token("1.42"), Some((1, 42)));
        assert_eq!(parse_token("0.0"), Some((0, 0)));
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "+1.2",
            "01.2",
            "1.02",
            "a.b",
            "1 .2",
            "4294967296.1",
            "1.18446744073709551616",
            "-1.2",
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }
}
