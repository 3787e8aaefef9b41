//! Seed 000, the JSON-file task scheduler: statistics, export and import through server-side
//! files, and cleanup, with that system's request and response fields.
//!
//! Its tasks' own fields (`operation_type`, `cost_center`, `schedule`, ...) land in tasklog's
//! metadata on import (unknown fields are kept as metadata), which is where these figures read
//! them from.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tasklog::export::{self, ExportOptions, ImportMode, ImportOptions, OnConflict};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::files;
use crate::admin::QueryParams;
use crate::extract::Json;

/// A body whose every field is optional: none (an empty body or `null`) reads as `{}`.
fn or_empty<T: serde::de::DeserializeOwned>(body: Option<Json<T>>) -> ApiResult<T> {
    match body {
        Some(Json(v)) => Ok(v),
        None => crate::extract::parse_json(b"{}"),
    }
}
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// Metadata key counted in `by_operation_type`.
pub const META_OPERATION_TYPE: &str = "operation_type";
/// Metadata key counted in `by_cost_center`.
pub const META_COST_CENTER: &str = "cost_center";
/// Metadata key of a cron schedule: a task with a non-null value is `scheduled`.
pub const META_SCHEDULE: &str = "schedule";

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(export_tasks))
        .routes(routes!(import_tasks))
        .routes(routes!(cleanup))
}

/// `GET /api/tasks/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerStats {
    /// The scheduler's worker pool size. Always null: tasklog's server runs no workers itself
    /// (workers claim tasks over `/v1/workers`).
    pub max_workers: Option<u32>,
    /// Tasks running now.
    pub running_tasks: usize,
    /// Live tasks.
    pub total: usize,
    /// State -> count (every state, zero included).
    pub by_status: BTreeMap<String, usize>,
    /// Metadata `operation_type` -> count (tasks without one are not counted).
    pub by_operation_type: BTreeMap<String, usize>,
    /// Metadata `cost_center` -> count (tasks without one are not counted).
    pub by_cost_center: BTreeMap<String, usize>,
    /// Schedules, plus tasks with a non-null metadata `schedule` (a cron expression) that
    /// are no schedule's.
    pub scheduled: usize,
    /// The other tasks (neither a schedule nor a schedule's run).
    pub one_time: usize,
    /// The schedules' runs plus the one-time tasks' successes and failures.
    pub total_runs: u64,
    /// The schedules' successful runs plus the completed one-time tasks.
    pub total_successes: u64,
    /// The schedules' failed runs plus the one-time tasks' failures (sum of error counts).
    pub total_failures: u64,
}

/// Counts without the "(none)" entry (tasks lacking the key) nor JSON nulls.
fn present(counts: Option<tasklog::store::KeyCounts>) -> BTreeMap<String, usize> {
    let mut c = counts.map(|k| k.counts).unwrap_or_default();
    c.remove("(none)");
    c.remove("null");
    c
}

/// Task statistics, in the scheduler's fields.
#[utoipa::path(
    get,
    path = "/api/tasks/stats",
    operation_id = "compat_scheduler_stats",
    tag = "compat",
    responses(
        (status = 200, description = "The statistics", body = SchedulerStats),
        (status = 400, description = "A query parameter was given", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn stats(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<SchedulerStats>> {
    q.allow(&[])?;
    let (base, ops, costs, sched, schedules) = super::read(&state, |store| {
        Ok((
            store.stats(None)?,
            store.stats(Some(META_OPERATION_TYPE))?.by_key,
            store.stats(Some(META_COST_CENTER))?.by_key,
            store.stats(Some(META_SCHEDULE))?.by_key,
            tasklog::runtime::schedule::stats(store)?,
        ))
    })
    .await?;
    // In the scheduler's terms a scheduled task is one task that runs again and again: a
    // tasklog schedule (its record and its runs) counts as one scheduled task with the
    // schedule's run counters, and a task with a `schedule` that is no schedule's (submitted
    // with one, not imported) as a scheduled task too.
    let with_meta: usize = present(sched).values().sum();
    let unadopted = with_meta.saturating_sub(schedules.adopted_live);
    let scheduled = schedules.scheduled + unadopted;
    let one_time = schedules.one_time.saturating_sub(unadopted);
    let one_time_successes = (base.successes as u64).saturating_sub(schedules.run_tasks_completed);
    let one_time_failures = base
        .failures
        .saturating_sub(schedules.run_tasks_error_count);
    let mut by_status = base.by_state;
    if let Some(p) = by_status.get_mut("pending") {
        *p = p.saturating_sub(schedules.scheduled);
    }
    Ok(axum::Json(SchedulerStats {
        max_workers: None,
        running_tasks: by_status.get("running").copied().unwrap_or(0),
        total: scheduled + one_time,
        by_operation_type: present(ops),
        by_cost_center: present(costs),
        scheduled,
        one_time,
        total_runs: schedules
            .total_runs
            .saturating_add(one_time_successes)
            .saturating_add(one_time_failures),
        total_successes: schedules.total_successes.saturating_add(one_time_successes),
        total_failures: schedules.total_failures.saturating_add(one_time_failures),
        by_status,
    }))
}

/// `POST /api/tasks/export` body (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerExportRequest {
    /// Where to write, relative to the server's files directory: a file, or a directory to
    /// write `tasks_export_YYYYMMDD_HHMMSS.json` in. Default: that name in the files
    /// directory.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^(?!\.\.(/|$))(?!.*/\.\.(/|$))[^/\x00]{1,63}(/[^/\x00]{1,63})*$"
    )]
    pub path: Option<String>,
}

/// `POST /api/tasks/export` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerExportResponse {
    /// Always true (failures are problems).
    pub success: bool,
    /// In words.
    pub message: String,
    /// The file written, relative to the server's files directory.
    pub path: String,
    /// Tasks written.
    pub task_count: u64,
}

/// Exports every task with its history to a file in the server's files directory, atomically
/// (temporary file, fsync, rename, fsync of the directory).
#[utoipa::path(
    post,
    path = "/api/tasks/export",
    operation_id = "compat_scheduler_export",
    tag = "compat",
    request_body(content = Option<SchedulerExportRequest>, description = "Optional; an empty body writes the default file name"),
    responses(
        (status = 200, description = "Exported", body = SchedulerExportResponse),
        (status = 400, description = "Bad body or path (absolute, `..`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No files directory, or the path leads outside it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The path's directory does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn export_tasks(
    State(state): State<AppState>,
    body: Option<Json<SchedulerExportRequest>>,
) -> ApiResult<axum::Json<SchedulerExportResponse>> {
    let req = or_empty(body)?;
    let files_dir = state.options().files_dir.clone();
    let target = files::for_write(
        files_dir.as_deref(),
        req.path.as_deref(),
        &export::default_file_name(),
    )?;
    let (written, summary) = state
        .run(move |store| export::export_json_to_path(store, &ExportOptions::new(), Some(&target)))
        .await?;
    let path = files_dir.as_deref().map_or_else(
        || written.display().to_string(),
        |d| files::shown(d, &written),
    );
    Ok(axum::Json(SchedulerExportResponse {
        success: true,
        message: "Tasks exported successfully".into(),
        path,
        task_count: summary.tasks,
    }))
}

/// `POST /api/tasks/import` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerImportRequest {
    /// The file to import, relative to the server's files directory.
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^(?!\.\.(/|$))(?!.*/\.\.(/|$))[^/\x00]{1,63}(/[^/\x00]{1,63})*$"
    )]
    pub path: String,
    /// True: add the file's tasks, keeping existing ids as they are. False (the default, as
    /// in the scheduler): the store's tasks become exactly the file's (others are removed,
    /// their history kept).
    #[serde(default)]
    pub merge: bool,
}

/// `POST /api/tasks/import` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerImportResponse {
    /// Always true (failures are problems).
    pub success: bool,
    /// In words.
    pub message: String,
    /// Tasks created or overwritten.
    pub imported_count: u64,
    /// Live tasks after the import.
    pub total_tasks: usize,
    /// The mode used.
    pub merge: bool,
}

/// Imports a file from the server's files directory (tasklog's export or the scheduler's own
/// formats), validated whole first and applied as one atomic batch.
#[utoipa::path(
    post,
    path = "/api/tasks/import",
    operation_id = "compat_scheduler_import",
    tag = "compat",
    request_body = SchedulerImportRequest,
    responses(
        (status = 200, description = "Imported", body = SchedulerImportResponse),
        (status = 400, description = "Bad body or path, or an invalid document (`problems` lists every problem)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No files directory, or the path leads outside it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The file is too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn import_tasks(
    State(state): State<AppState>,
    Json(req): Json<SchedulerImportRequest>,
) -> ApiResult<axum::Json<SchedulerImportResponse>> {
    let source = files::for_read(state.options().files_dir.as_deref(), &req.path)?;
    let options = ImportOptions::new()
        .mode(if req.merge {
            ImportMode::Merge
        } else {
            ImportMode::Replace
        })
        .on_conflict(OnConflict::Skip);
    let name = req.path.clone();
    let (report, total) = state
        .run(move |store| {
            let file =
                std::fs::File::open(&source).map_err(|e| tasklog::Error::io("open", &source, e))?;
            let report = export::import_json(store, file, &name, &options, |_, _| {})?;
            // Its tasks with a cron `schedule` become schedules, their run counters kept.
            tasklog::runtime::schedule::adopt_imported(store, tasklog::task::Timestamp::now())?;
            Ok((report, store.len()))
        })
        .await?;
    let imported = report.imported + report.overwritten;
    Ok(axum::Json(SchedulerImportResponse {
        success: true,
        message: format!("Successfully imported {imported} tasks"),
        imported_count: imported,
        total_tasks: total,
        merge: req.merge,
    }))
}

/// `POST /api/tasks/cleanup` body (may be empty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerCleanupRequest {
    /// Age threshold in days (default 30; fractions allowed, at least 0).
    #[serde(default = "default_days")]
    #[schema(default = 30, minimum = 0, maximum = 10_000_000)]
    pub days: f64,
}

fn default_days() -> f64 {
    30.0
}

/// `POST /api/tasks/cleanup` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerCleanupResponse {
    /// Always true (failures are problems).
    pub success: bool,
    /// In words.
    pub message: String,
    /// Tasks removed.
    pub removed_count: usize,
    /// Live tasks left.
    pub remaining_tasks: usize,
}

/// Removes finished tasks (completed, failed and, unlike the scheduler, cancelled) that
/// finished more than `days` ago. Pending and running tasks are never touched; removed tasks'
/// histories stay readable.
#[utoipa::path(
    post,
    path = "/api/tasks/cleanup",
    operation_id = "compat_scheduler_cleanup",
    tag = "compat",
    request_body(content = Option<SchedulerCleanupRequest>, description = "Optional; an empty body means 30 days"),
    responses(
        (status = 200, description = "Cleaned up", body = SchedulerCleanupResponse),
        (status = 400, description = "Bad body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cleanup(
    State(state): State<AppState>,
    body: Option<Json<SchedulerCleanupRequest>>,
) -> ApiResult<axum::Json<SchedulerCleanupResponse>> {
    let req = or_empty(body)?;
    // NOTE: 1e7 days (27,000 years) bounds the Duration conversion.
    if !req.days.is_finite() || !(0.0..=1e7).contains(&req.days) {
        return Err(Problem::bad_request(
            "invalid_input",
            format!(
                "days must be a number from 0 to 10000000 (got {})",
                req.days
            ),
        )
        .at("$.days"));
    }
    let age = Duration::from_secs_f64(req.days * 86_400.0);
    let (removed, remaining) = state
        .run(move |store| {
            let n = store.cleanup(age)?;
            Ok((n, store.len()))
        })
        .await?;
    Ok(axum::Json(SchedulerCleanupResponse {
        success: true,
        message: format!("Cleaned up {removed} old tasks"),
        removed_count: removed,
        remaining_tasks: remaining,
    }))
}
