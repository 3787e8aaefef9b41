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

mod bodies;
mod claim;
mod extract;
mod kinds;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use tasklog::Task;
use tasklog::store::{Change, Mutation};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::extract::Json;
use crate::state::AppState;
pub use bodies::{
    CheckpointRequest, ClaimRequest, ClaimResponse, CompleteRequest, FailRequest, HeartbeatRequest,
    OutputRequest, ProgressRequest,
};
use claim::{lease_ms, with_etag};
pub(crate) use extract::TaskId;
pub use kinds::{KindSettingsDoc, KindsResponse, PerKeyDoc, RateDoc};

/// Lease length when a claim or heartbeat names none, in milliseconds.
pub const LEASE_MS_DEFAULT: u64 = 30_000;
/// Longest lease a claim or heartbeat may ask for: one day, in milliseconds.
pub const LEASE_MS_MAX: u64 = 86_400_000;
/// Most kinds one claim may name.
pub const KINDS_MAX: usize = 64;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(claim::claim))
        .routes(routes!(heartbeat))
        .routes(routes!(progress))
        .routes(routes!(checkpoint))
        .routes(routes!(output))
        .routes(routes!(complete))
        .routes(routes!(fail))
        .routes(routes!(kinds::list))
        .routes(routes!(kinds::set))
        .routes(routes!(kinds::pause))
        .routes(routes!(kinds::resume))
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

    /// Applies `first` fenced by this holder's claim and `then` after it, all or nothing,
    /// answering with the task as the batch left it.
    async fn apply_then(
        self,
        state: &AppState,
        id: String,
        first: Change,
        then: Vec<Change>,
    ) -> ApiResult<Response> {
        let mut batch = vec![
            Mutation::new(id.clone(), first)
                .fenced_claim(self.owner, self.attempt, self.claim_lsn)
                .actor(self.actor.clone()),
        ];
        batch.extend(
            then.into_iter()
                .map(|c| Mutation::new(id.clone(), c).actor(self.actor.clone())),
        );
        let mut tasks = state.run(move |store| store.batch(batch)).await?;
        let task = tasks.pop().ok_or_else(|| {
            Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "a batch of changes to one task answered no task",
            )
        })?;
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

/// The actor header every worker call takes. The shared error answers (400, 401, 413, 415,
/// 500, 503) are added to every operation by `openapi::finish`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(
    dead_code,
    reason = "documents the header; it is read by `Holder::new`"
)]
struct ActorHeader {
    /// Who makes the change, when the body names no actor (1 to 256 characters, no control
    /// characters).
    #[param(
        rename = "X-Tasklog-Actor",
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    actor: Option<String>,
}

/// Extends the lease of a claimed task.
#[utoipa::path(
    post,
    path = "/v1/workers/tasks/{id}/heartbeat",
    tag = "workers",
    request_body = HeartbeatRequest,
    params(
        ("id" = String, Path, description = "The task id"),
        ActorHeader,
    ),
    responses(
        (status = 200, description = "The lease was extended; the task (ETag: its version)", body = Task),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn heartbeat(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Json(req): Json<HeartbeatRequest>,
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
        ActorHeader,
    ),
    responses(
        (status = 200, description = "Recorded; the task (ETag: its version)", body = Task),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn progress(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Json(req): Json<ProgressRequest>,
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
        ActorHeader,
    ),
    responses(
        (status = 200, description = "Recorded; the task (ETag: its version)", body = Task),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn checkpoint(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Json(req): Json<CheckpointRequest>,
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
        ActorHeader,
    ),
    responses(
        (status = 200, description = "Recorded; the task (ETag: its version)", body = Task),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn output(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Json(req): Json<OutputRequest>,
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
        ActorHeader,
    ),
    responses(
        (status = 200, description = "Completed; the task (ETag: its version)", body = Task),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn complete(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Json(req): Json<CompleteRequest>,
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
        ActorHeader,
    ),
    responses(
        (status = 200, description = "Failed (or requeued); the task (ETag: its version)", body = Task),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_lost`: the claim no longer holds the lease", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn fail(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    headers: HeaderMap,
    Json(req): Json<FailRequest>,
) -> ApiResult<Response> {
    let policy = retry_policy(&req)?;
    let holder = Holder::new(req.owner, &req.token, req.actor, &headers)?;
    if req.requeue {
        let change = Change::Requeue {
            reason: Some(req.error),
        };
        return holder.apply(&state, id, change).await;
    }
    let fail = Change::Fail { error: req.error };
    let Some((max_attempts, delay_ms)) = policy else {
        return holder.apply(&state, id, fail).await;
    };
    // The same rule as the Rust runtime's workers, and in one batch with the failure for the
    // same reason: a crash cannot leave a failure without its retry or its discard.
    let attempt = holder.attempt;
    let then = if attempt >= max_attempts {
        vec![Change::Discard {
            reason: Some(format!(
                "attempt {attempt} of {max_attempts} failed; no attempts left"
            )),
        }]
    } else {
        let mut update = tasklog::task::TaskUpdate::default();
        // `delay_ms` is at most a day (checked above): the cast cannot wrap.
        let not_before = tasklog::task::Timestamp::now()
            .as_millis()
            .saturating_add(delay_ms as i64);
        update.set_metadata.insert(
            tasklog::runtime::META_NOT_BEFORE.into(),
            serde_json::Value::from(not_before),
        );
        vec![Change::Retry, Change::Update(update)]
    };
    holder.apply_then(&state, id, fail, then).await
}

/// The most attempts a worker may declare for a task's kind.
const MAX_ATTEMPTS_MAX: u32 = 1000;
/// The longest retry delay a worker may ask for (a day, like the longest lease).
const RETRY_DELAY_MS_MAX: u64 = 86_400_000;

/// A fail call's retry policy, checked: `(max_attempts, retry_delay_ms)`, or none.
fn retry_policy(req: &FailRequest) -> ApiResult<Option<(u32, u64)>> {
    let bad = |msg: &str, at: &str| Problem::bad_request("invalid_input", msg).at(at.to_string());
    if req.max_attempts.is_none() {
        if req.retry_delay_ms.is_some() {
            return Err(bad(
                "retry_delay_ms needs max_attempts (without a policy nothing is retried)",
                "$.retry_delay_ms",
            ));
        }
        return Ok(None);
    }
    if req.requeue {
        return Err(bad(
            "max_attempts does not go with requeue (a requeue keeps the attempt)",
            "$.max_attempts",
        ));
    }
    let max = req.max_attempts.unwrap_or(1);
    if !(1..=MAX_ATTEMPTS_MAX).contains(&max) {
        return Err(bad("max_attempts is 1 to 1000", "$.max_attempts"));
    }
    let delay = req.retry_delay_ms.unwrap_or(0);
    if delay > RETRY_DELAY_MS_MAX {
        return Err(bad(
            "retry_delay_ms is 0 to 86400000 (a day)",
            "$.retry_delay_ms",
        ));
    }
    Ok(Some((max, delay)))
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
