//! Seed 003, Celery task recovery: the recovery system's health, its metrics, and a detailed
//! health document, with that system's field names, derived from the store.
//!
//! Rules (also in docs/api.md):
//! - **stuck**: running, with a lease that expired (its worker stopped heartbeating; the lease
//!   supervisor or `POST /v1/recover` will interrupt it);
//! - **orphaned**: running without a lease, started under an earlier session of the store
//!   (the process that ran it is gone; only an explicit recovery takes it back);
//! - **recovery queue depth**: pending tasks waiting to be run again: ones with a checkpoint or
//!   beyond their first attempt (requeued after an interruption, or retried);
//! - **recent failures**: tasks that failed in the last hour (`RECENT_FAILURE_WINDOW_SECS`);
//! - **recovery attempts (24 h)**: `interrupted` events of the last 24 hours; one is
//!   successful when its task completed after it with no later interruption; the recovery
//!   time is from that interruption to the completion;
//! - **overall health**: `unhealthy` when the server is not ready (poisoned, closed, shutting
//!   down), `degraded` when any task is stuck or orphaned, else `healthy`.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use tasklog::store::{Filter, Query, RecoveryReport};
use tasklog::task::Timestamp;
use tasklog::{Store, Task, TaskState};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::QueryParams;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// "Recent" failures are those of the last hour.
pub const RECENT_FAILURE_WINDOW_SECS: i64 = 3_600;
/// The window of the `_24h` figures.
pub const METRICS_WINDOW_SECS: i64 = 86_400;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recovery_health))
        .routes(routes!(recovery_metrics))
        .routes(routes!(detailed))
}

/// `healthy`, `degraded` or `unhealthy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Nothing stuck or orphaned, ready.
    Healthy,
    /// Ready, but tasks are stuck or orphaned.
    Degraded,
    /// Not ready (poisoned, closed, shutting down).
    Unhealthy,
}

/// `GET /health/recovery`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryHealth {
    /// By the rules of this module.
    pub overall_health: HealthStatus,
    /// Pending tasks waiting to run again (with a checkpoint, or beyond their first attempt).
    pub recovery_queue_depth: usize,
    /// Tasks that failed in the last hour.
    pub recent_failure_count: usize,
    /// Running tasks without a lease from an earlier session.
    pub orphaned_task_count: usize,
    /// Running tasks whose lease expired.
    pub stuck_task_count: usize,
    /// When these figures were taken.
    pub timestamp: Timestamp,
}

/// `GET /health/recovery/metrics`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryMetrics {
    /// Every tasklog state, plus `processing` (the seed's name for running: the same count),
    /// `orphaned` and `stuck` (subsets of running).
    pub task_state_distribution: BTreeMap<String, usize>,
    /// Percentage of the last 24 hours' recovery attempts that succeeded (null: none).
    pub recovery_success_rate_24h: Option<f64>,
    /// `interrupted` events in the last 24 hours.
    pub total_recovery_attempts_24h: u64,
    /// Those whose task completed afterwards without another interruption.
    pub successful_recoveries_24h: u64,
    /// Mean time from interruption to completion of the successful ones (null: none).
    pub average_recovery_time_seconds: Option<f64>,
}

/// Store figures for `/health/detailed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailedTaskCounts {
    /// Live tasks.
    pub total: usize,
    /// State -> count.
    pub by_state: BTreeMap<String, usize>,
}

/// `GET /health/detailed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailedHealth {
    /// The overall status (the recovery health's, by the same rules).
    pub status: HealthStatus,
    /// When these figures were taken.
    pub timestamp: Timestamp,
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Why not ready, when not.
    pub reason: Option<String>,
    /// The tasks.
    pub tasks: DetailedTaskCounts,
    /// The log and snapshots.
    pub store: tasklog::store::Health,
    /// The recovery system's health (`/health/recovery`).
    pub recovery: RecoveryHealth,
    /// What opening the store found and did.
    pub recovery_at_open: RecoveryReport,
}

/// Running, pending-again and recently failed tasks, counted by the module's rules.
struct Scan {
    queue: usize,
    recent_failures: usize,
    orphaned: usize,
    stuck: usize,
}

fn tasks_in(
    store: &Store,
    states: &[TaskState],
    updated_since: Option<Timestamp>,
) -> tasklog::Result<Vec<Task>> {
    let query = Query {
        filter: Filter {
            states: states.to_vec(),
            updated_since,
            ..Filter::default()
        },
        ..Query::default()
    };
    Ok(store.list(&query)?.tasks)
}

fn scan(store: &Store, now: Timestamp) -> tasklog::Result<Scan> {
    let mut s = Scan {
        queue: 0,
        recent_failures: 0,
        orphaned: 0,
        stuck: 0,
    };
    for t in tasks_in(store, &[TaskState::Running], None)? {
        match &t.lease {
            Some(l) if l.expires_at < now => s.stuck += 1,
            Some(_) => {}
            None if t.session != store.session() => s.orphaned += 1,
            None => {}
        }
    }
    s.queue = tasks_in(store, &[TaskState::Pending], None)?
        .iter()
        .filter(|t| t.checkpoint.is_some() || t.attempt > 1)
        .count();
    let since = now.plus_millis(-RECENT_FAILURE_WINDOW_SECS * 1000);
    s.recent_failures = tasks_in(store, &[TaskState::Failed], Some(since))?
        .iter()
        .filter(|t| t.completed_at.unwrap_or(t.updated_at) >= since)
        .count();
    Ok(s)
}

fn status(ready: bool, s: &Scan) -> HealthStatus {
    if !ready {
        HealthStatus::Unhealthy
    } else if s.stuck > 0 || s.orphaned > 0 {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    }
}

fn health_of(ready: bool, s: &Scan, now: Timestamp) -> RecoveryHealth {
    RecoveryHealth {
        overall_health: status(ready, s),
        recovery_queue_depth: s.queue,
        recent_failure_count: s.recent_failures,
        orphaned_task_count: s.orphaned,
        stuck_task_count: s.stuck,
        timestamp: now,
    }
}

/// The recovery system's health.
#[utoipa::path(
    get,
    path = "/health/recovery",
    operation_id = "compat_recovery_health",
    tag = "compat",
    responses(
        (status = 200, description = "The recovery health", body = RecoveryHealth),
        (status = 400, description = "A query parameter was given", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn recovery_health(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<RecoveryHealth>> {
    q.allow(&[])?;
    let now = Timestamp::now();
    let s = super::read(&state, move |store| scan(store, now)).await?;
    let ready = crate::health::not_ready(&state).is_none();
    Ok(axum::Json(health_of(ready, &s, now)))
}

/// Recovery attempts of the window: (attempts, successes, total recovery seconds).
fn recoveries(store: &Store, now: Timestamp) -> tasklog::Result<(u64, u64, f64)> {
    let since = now.plus_millis(-METRICS_WINDOW_SECS * 1000);
    let (mut attempts, mut successes, mut secs) = (0u64, 0u64, 0.0f64);
    // An interruption in the window changed its task then, so the task was updated since.
    for t in tasks_in(store, &[], Some(since))? {
        let history = match store.history(&t.id) {
            Ok(h) => h,
            Err(tasklog::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mut last: Option<Timestamp> = None;
        for e in history
            .iter()
            .filter(|e| e.kind == "interrupted" && e.at >= since)
        {
            attempts += 1;
            last = Some(e.at);
        }
        let Some(last) = last else { continue };
        // The last interruption of the task (in or before the window) must be `last`.
        let later = history
            .iter()
            .any(|e| e.kind == "interrupted" && e.at > last);
        if let (TaskState::Completed, Some(done), false) = (t.state, t.completed_at, later)
            && done >= last
        {
            successes += 1;
            secs += done.as_millis().saturating_sub(last.as_millis()) as f64 / 1000.0;
        }
    }
    Ok((attempts, successes, secs))
}

/// Detailed recovery metrics: the state distribution and the last 24 hours' recoveries.
#[utoipa::path(
    get,
    path = "/health/recovery/metrics",
    operation_id = "compat_recovery_metrics",
    tag = "compat",
    responses(
        (status = 200, description = "The recovery metrics", body = RecoveryMetrics),
        (status = 400, description = "A query parameter was given", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn recovery_metrics(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<RecoveryMetrics>> {
    q.allow(&[])?;
    let now = Timestamp::now();
    let (stats, s, (attempts, successes, secs)) = super::read(&state, move |store| {
        Ok((
            store.stats(None)?,
            scan(store, now)?,
            recoveries(store, now)?,
        ))
    })
    .await?;
    let mut dist = stats.by_state;
    let running = dist.get("running").copied().unwrap_or(0);
    dist.insert("processing".into(), running);
    dist.insert("orphaned".into(), s.orphaned);
    dist.insert("stuck".into(), s.stuck);
    Ok(axum::Json(RecoveryMetrics {
        task_state_distribution: dist,
        recovery_success_rate_24h: (attempts > 0)
            .then(|| successes as f64 * 100.0 / attempts as f64),
        total_recovery_attempts_24h: attempts,
        successful_recoveries_24h: successes,
        average_recovery_time_seconds: (successes > 0).then(|| secs / successes as f64),
    }))
}

/// Overall health with the recovery status, the tasks, the log and the last open's recovery.
#[utoipa::path(
    get,
    path = "/health/detailed",
    operation_id = "compat_health_detailed",
    tag = "compat",
    responses(
        (status = 200, description = "The detailed health", body = DetailedHealth),
        (status = 400, description = "A query parameter was given", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn detailed(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<DetailedHealth>> {
    q.allow(&[])?;
    let now = Timestamp::now();
    let (stats, s) = super::read(&state, move |store| {
        Ok((store.stats(None)?, scan(store, now)?))
    })
    .await?;
    let not_ready = crate::health::not_ready(&state);
    let ready = not_ready.is_none();
    let recovery = health_of(ready, &s, now);
    Ok(axum::Json(DetailedHealth {
        status: recovery.overall_health,
        timestamp: now,
        ready,
        reason: not_ready.map(|p| p.detail.clone()),
        tasks: DetailedTaskCounts {
            total: stats.total,
            by_state: stats.by_state,
        },
        store: stats.health,
        recovery,
        recovery_at_open: state.store().recovery_report().clone(),
    }))
}
