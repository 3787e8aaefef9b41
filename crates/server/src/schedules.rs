//! Schedule routes under `/v1/schedules`: create, list, get, pause, resume, remove a schedule,
//! and list its runs. The shapes are the library's (`tasklog::runtime::schedule`) and what
//! `tasklog schedule ... --json` prints. Firing is done by [`fire_schedules`], which
//! [`crate::serve()`] runs beside the lease supervisor.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tasklog::runtime::schedule::{self, ScheduleSpec, ScheduleView, Scheduler, SystemClock};
use tasklog::task::{Task, Timestamp};
use tasklog::{Error, Store};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{PathParam, QueryParams, drain};
use crate::error::{ApiResult, Problem};
use crate::extract::Json;
use crate::state::AppState;

const TAG: &str = "schedules";
/// Runs listed when `limit` is not given.
const RUNS_LIMIT_DEFAULT: usize = 20;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add, list))
        .routes(routes!(get_one, remove))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(runs))
}

/// `GET /v1/schedules`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Every schedule, by name.
    pub schedules: Vec<ScheduleView>,
}

/// `GET /v1/schedules/{name}/runs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// The runs, newest fire time first.
    pub runs: Vec<Task>,
}

/// `GET /v1/schedules/{name}/runs` query parameters (documentation; read through `QueryParams`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// At most this many runs (default 20, at most the server's page limit).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
}

/// A library error about the body, its field named as a JSON path.
fn body_error(e: Error) -> Problem {
    match e {
        Error::InvalidInput {
            at: Some(at),
            reason,
        } => Problem::from(Error::InvalidInput {
            at: Some(format!("$.{at}")),
            reason,
        }),
        other => Problem::from(other),
    }
}

/// Create a schedule. Nothing before now fires.
#[utoipa::path(
    post, path = "/v1/schedules", tag = TAG, operation_id = "add_schedule",
    request_body(content = ScheduleSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "The schedule, with its next fire times", body = ScheduleView),
        (status = 400, description = "Invalid definition (the field is named in `at`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A schedule with this name exists", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add(
    State(state): State<AppState>,
    Json(spec): Json<ScheduleSpec>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    // Validated before the store is touched, so that a bad field is a 400 naming it.
    spec.compile(Timestamp::now().as_millis())
        .map_err(body_error)?;
    let view = state
        .run(move |s| schedule::add(s, &spec, Timestamp::now()))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// List the schedules with their next fire times and run counts.
#[utoipa::path(
    get, path = "/v1/schedules", tag = TAG, operation_id = "list_schedules",
    responses((status = 200, description = "Every schedule, by name", body = ScheduleList))
)]
async fn list(State(state): State<AppState>) -> ApiResult<Json<ScheduleList>> {
    let schedules = state.run(|s| schedule::list(s, Timestamp::now())).await?;
    Ok(Json(ScheduleList { schedules }))
}

/// Get a schedule.
#[utoipa::path(
    get, path = "/v1/schedules/{name}", tag = TAG, operation_id = "get_schedule",
    params(("name" = String, Path, description = "The schedule's name", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, description = "Not a valid schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_one(
    State(state): State<AppState>,
    PathParam(name): PathParam,
) -> ApiResult<Json<ScheduleView>> {
    let view = state
        .run(move |s| schedule::get(s, &name, Timestamp::now()))
        .await?;
    Ok(Json(view))
}

/// Remove a schedule: it fires no more. Its history and its runs stay.
#[utoipa::path(
    delete, path = "/v1/schedules/{name}", tag = TAG, operation_id = "remove_schedule",
    params(("name" = String, Path, description = "The schedule's name", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The schedule as it was", body = ScheduleView),
        (status = 400, description = "Not a valid schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove(
    State(state): State<AppState>,
    PathParam(name): PathParam,
) -> ApiResult<Json<ScheduleView>> {
    let view = state
        .run(move |s| {
            let view = schedule::get(s, &name, Timestamp::now())?;
            schedule::remove(s, &name)?;
            Ok(view)
        })
        .await?;
    Ok(Json(view))
}

/// Pause a schedule: it fires nothing until resumed.
#[utoipa::path(
    post, path = "/v1/schedules/{name}/pause", tag = TAG, operation_id = "pause_schedule",
    params(("name" = String, Path, description = "The schedule's name", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The schedule, paused", body = ScheduleView),
        (status = 400, description = "Not a valid schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn pause(
    State(state): State<AppState>,
    PathParam(name): PathParam,
    body: Body,
) -> ApiResult<Json<ScheduleView>> {
    drain(body).await;
    let view = state
        .run(move |s| schedule::pause(s, &name, Timestamp::now()))
        .await?;
    Ok(Json(view))
}

/// Resume a schedule. Fire times that passed while it was paused are not caught up.
#[utoipa::path(
    post, path = "/v1/schedules/{name}/resume", tag = TAG, operation_id = "resume_schedule",
    params(("name" = String, Path, description = "The schedule's name", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The schedule, active", body = ScheduleView),
        (status = 400, description = "Not a valid schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn resume(
    State(state): State<AppState>,
    PathParam(name): PathParam,
    body: Body,
) -> ApiResult<Json<ScheduleView>> {
    drain(body).await;
    let view = state
        .run(move |s| schedule::resume(s, &name, Timestamp::now()))
        .await?;
    Ok(Json(view))
}

/// A schedule's runs (live tasks), newest fire time first, with their outcomes. Also for a
/// removed schedule.
#[utoipa::path(
    get, path = "/v1/schedules/{name}/runs", tag = TAG, operation_id = "schedule_runs",
    params(("name" = String, Path, description = "The schedule's name", pattern = r"^[A-Za-z0-9._-]{1,64}$"), RunsParams),
    responses(
        (status = 200, description = "The runs", body = RunList),
        (status = 400, description = "Not a valid schedule name, or a bad `limit`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn runs(
    State(state): State<AppState>,
    PathParam(name): PathParam,
    q: QueryParams,
) -> ApiResult<Json<RunList>> {
    q.allow(&["limit"])?;
    let max = state.options().max_page_size;
    let limit = q.whole("limit")?.unwrap_or(RUNS_LIMIT_DEFAULT);
    if limit == 0 || limit > max {
        return Err(
            Problem::bad_request("bad_request", format!("limit must be 1 to {max}")).at("limit"),
        );
    }
    let runs = state.run(move |s| schedule::runs(s, &name, limit)).await?;
    Ok(Json(RunList { runs }))
}

/// Every `interval`, fires the store's due schedules (one `Scheduler::tick`), until `stop`
/// turns true or the store closes. Several servers or runtimes firing one store's schedules
/// still create each fire time's task once.
pub async fn fire_schedules(
    store: Store,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let scheduler = Scheduler::new(store, Arc::new(SystemClock)).actor("server");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let s = scheduler.clone();
        match tokio::task::spawn_blocking(move || s.tick()).await {
            Ok(Ok(report)) if !report.fired.is_empty() => {
                tracing::debug!(runs = ?report.fired, "schedules fired");
            }
            Ok(Ok(_)) => {}
            Ok(Err(Error::Closed)) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, "firing schedules failed"),
            Err(e) => tracing::warn!(error = %e, "the schedule tick did not finish"),
        }
    }
}
