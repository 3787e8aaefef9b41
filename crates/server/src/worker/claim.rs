//! `POST /v1/workers/claim`: the best claimable task under a lease, with a long poll.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tasklog::store::{Change, Mutation};
use tasklog::task::Timestamp;
use tasklog::{Store, Task, TaskState};

use super::bodies::{ClaimRequest, ClaimResponse};
use super::extract;
use super::{KINDS_MAX, LEASE_MS_DEFAULT, LEASE_MS_MAX};
use crate::error::{ApiResult, Problem};
use crate::events::Hub;
use crate::events::ready::{kind_of, not_before_ms};
use crate::extract::Json;
use crate::state::AppState;

/// Longest wait for the ready queue to reflect what was committed before a claim.
const CATCH_UP_MAX: Duration = Duration::from_secs(1);
/// A deadline beyond any wait (when adding the wait overflows the clock).
const FAR: Duration = Duration::from_secs(365 * 86_400);
/// How often a long poll looks again when the hub cannot wake it.
const FALLBACK_POLL: Duration = Duration::from_millis(100);

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

pub(super) fn lease_ms(asked: Option<u64>) -> ApiResult<u64> {
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
    // Kinds the store will not start now (paused, or at a concurrency or rate limit): their
    // tasks are passed over in this look, and a rate limit's wait bounds the long poll.
    let mut held: HashSet<String> = store
        .kind_settings()
        .into_iter()
        .filter(|(_, s)| s.paused)
        .map(|(k, _)| k)
        .collect();
    let mut held_until: Option<i64> = None;
    loop {
        let now = Timestamp::now().0;
        // The queue's lock is let go here, before any store call.
        let best = hub
            .ready()
            .best_except(c.kinds.as_deref(), now, &tried, &held);
        let Some(id) = best else {
            let due = hub.ready().next_due_ms();
            let next_due_ms = match (due, held_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
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
            Err(tasklog::Error::Throttled {
                kind,
                retry_after_ms,
                ..
            }) => {
                // A concurrency limit frees when a task of the kind ends, which wakes the
                // poll; a rate limit frees at a known time.
                if let Some(ms) = retry_after_ms {
                    let at = now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
                    held_until = Some(held_until.map_or(at, |h| h.min(at)));
                }
                held.insert(kind);
            }
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
pub(super) async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ClaimRequest>,
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
        checkpoint: task.checkpoint.as_deref().cloned(),
        lease_expires_at: lease.expires_at,
        task,
    };
    Ok(with_etag(Json(body).into_response(), version))
}

pub(super) fn with_etag(mut resp: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tasklog::runtime::{META_KIND, META_NOT_BEFORE};
    use tasklog::{NewTask, StoreOptions};

    use super::*;

    fn claim(kinds: Option<&[&str]>) -> Claim {
        Claim {
            owner: "w1".into(),
            actor: "w1".into(),
            kinds: kinds.map(|k| k.iter().map(|s| s.to_string()).collect()),
            lease_ms: 1_000,
        }
    }

    /// `Claim::accepts` re-checks the store's copy of a task the ready queue offered: the
    /// queue may lag the store by an update still on its way (a task delayed, given another
    /// kind, or started meanwhile), and a claim must then pass it over rather than start it.
    /// Only a pending task, due now, of a kind the worker asked for (or of any kind when it
    /// named none) is accepted. Kills `accepts` → `true` and its two `&&` → `||` (session 14's
    /// "race guards"): each case below fails one condition alone.
    #[test]
    fn a_claim_accepts_only_a_pending_due_task_of_a_kind_it_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new().open(dir.path()).unwrap();
        let now_ms = 1_000_000;
        let task = |id: &str, kind: &str, not_before_ms: i64| {
            store
                .submit(
                    NewTask::new("t")
                        .id(id)
                        .meta(META_KIND, json!(kind))
                        .meta(META_NOT_BEFORE, json!(not_before_ms)),
                )
                .unwrap()
        };
        let due = task("due", "mail", now_ms);
        let later = task("later", "mail", now_ms + 1);
        let other_kind = task("other", "sms", now_ms);
        task("running", "mail", now_ms);
        let running = store.start("running").unwrap();

        let mail = claim(Some(&["mail"]));
        assert!(mail.accepts(&due, now_ms));
        assert!(!mail.accepts(&later, now_ms), "not due yet");
        assert!(!mail.accepts(&other_kind, now_ms), "another kind");
        assert!(!mail.accepts(&running, now_ms), "not pending");
        let any = claim(None);
        assert!(any.accepts(&other_kind, now_ms));
        assert!(!any.accepts(&later, now_ms), "not due yet, any kind");
        store.close().unwrap();
    }
}
