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
//! - **recovery attempts (24 h)**: a runtime's recovery record (`runtime.recovery`) or an
//!   `interrupted` event without one, in the last 24 hours; one is successful when its task
//!   completed after it with no later attempt; the recovery time is from that attempt to the
//!   completion (computed by the library: `tasklog::runtime::recovery_figures`);
//! - **overall health**: `unhealthy` when the server is not ready (poisoned, closed, shutting
//!   down), `degraded` when any task is stuck or orphaned, else `healthy`.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use tasklog::Store;
use tasklog::runtime::{HealthLevel, RecoveryFigures};
use tasklog::store::RecoveryReport;
use tasklog::task::Timestamp;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::QueryParams;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

pub use tasklog::runtime::{METRICS_WINDOW_SECS, RECENT_FAILURE_WINDOW_SECS};

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
    /// Every recovery attempt ever recorded, by strategy (`resume`, `restart`, `validated`,
    /// `requeue`, `mark_failed` from a runtime's record; `interrupted_to_pending`,
    /// `interrupted_to_failed` from the store's policy).
    pub recovered_by_strategy: BTreeMap<String, u64>,
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

/// The library's figures (`tasklog::runtime::recovery_figures`), so these routes, the library
/// and `tasklog stats` agree.
fn figures(store: &Store, now: Timestamp) -> tasklog::Result<RecoveryFigures> {
    tasklog::runtime::recovery_figures(store, now)
}

fn health_of(ready: bool, f: &RecoveryFigures) -> RecoveryHealth {
    // Not ready (shutting down, closed, poisoned) is unhealthy; otherwise the library's rule.
    let overall_health = match (ready, f.overall_health) {
        (false, _) | (true, HealthLevel::Unhealthy) => HealthStatus::Unhealthy,
        (true, HealthLevel::Degraded) => HealthStatus::Degraded,
        (true, _) => HealthStatus::Healthy,
    };
    RecoveryHealth {
        overall_health,
        recovery_queue_depth: f.recovery_queue_depth,
        recent_failure_count: f.recent_failure_count,
        orphaned_task_count: f.orphaned_task_count,
        stuck_task_count: f.stuck_task_count,
        timestamp: f.timestamp,
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
    let f = super::read(&state, move |store| figures(store, now)).await?;
    let ready = crate::health::not_ready(&state).is_none();
    Ok(axum::Json(health_of(ready, &f)))
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
    let f = super::read(&state, move |store| figures(store, now)).await?;
    Ok(axum::Json(RecoveryMetrics {
        task_state_distribution: f.task_state_distribution,
        recovery_success_rate_24h: f.recovery_success_rate_24h,
        total_recovery_attempts_24h: f.total_recovery_attempts_24h,
        successful_recoveries_24h: f.successful_recoveries_24h,
        average_recovery_time_seconds: f.average_recovery_time_seconds,
        recovered_by_strategy: f.recovered_by_strategy,
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
    let (stats, f) = super::read(&state, move |store| {
        Ok((store.stats(None)?, figures(store, now)?))
    })
    .await?;
    let not_ready = crate::health::not_ready(&state);
    let ready = not_ready.is_none();
    let recovery = health_of(ready, &f);
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
