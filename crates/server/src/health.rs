//! Liveness, readiness and metrics: `/livez`, `/readyz`, `/metrics`.
//!
//! - `/livez` answers 200 while the process serves requests (it reads nothing).
//! - `/readyz` answers 200 when the store is open (opening ran recovery, so an open store is
//!   a recovered one), not poisoned by a failed write, not closed, and the server is not
//!   shutting down; otherwise 503 problem+json (`poisoned` or `shutting_down`) with
//!   `Retry-After`.
//! - `/metrics` is the Prometheus text exposition format 0.0.4 (see [`crate::metrics`]).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::QueryParams;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The body of `/livez` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeStatus {
    /// `ok` (live) or `ready`.
    pub status: String,
}

/// 200 while the process answers.
#[utoipa::path(
    get,
    path = "/livez",
    operation_id = "livez",
    tag = "health",
    responses((status = 200, description = "The process answers", body = ProbeStatus))
)]
async fn livez() -> axum::Json<ProbeStatus> {
    axum::Json(ProbeStatus {
        status: "ok".into(),
    })
}

/// Why the server is not ready, if it is not.
pub fn not_ready(state: &AppState) -> Option<Problem> {
    let store = state.store();
    if state.is_shutting_down() {
        return Some(Problem::unavailable(
            "shutting_down",
            "the server is shutting down",
            5,
        ));
    }
    if store.is_closed() {
        return Some(Problem::unavailable(
            "shutting_down",
            "the store is closed",
            5,
        ));
    }
    if let Some(cause) = store.poisoned() {
        return Some(Problem::unavailable(
            "poisoned",
            format!(
                "the store refuses writes after a failed log write ({cause}); restart the server to reopen it"
            ),
            30,
        ));
    }
    None
}

/// 200 when the store is open and recovered, not poisoned, and the server is not shutting
/// down; else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = ProbeStatus),
        (status = 503, description = "Poisoned, closed or shutting down (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> ApiResult<axum::Json<ProbeStatus>> {
    match not_ready(&state) {
        Some(p) => Err(p),
        None => Ok(axum::Json(ProbeStatus {
            status: "ready".into(),
        })),
    }
}

/// Prometheus metrics (text exposition format 0.0.4): requests, latency, tasks by state, the
/// log, fsync latency, snapshots, runtime runs.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 400, description = "A query parameter was given", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn metrics(State(state): State<AppState>, q: QueryParams) -> ApiResult<Response> {
    q.allow(&[])?;
    // NOTE: not `AppState::run`, which refuses work while shutting down: a scrape during a
    // drain is still useful. Reads wait on durability, so they go to the blocking pool too.
    let store = state.store().clone();
    let figures = tokio::task::spawn_blocking(move || crate::metrics::store_figures(&store))
        .await
        .map_err(|e| {
            Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("gathering the metrics did not finish: {e}"),
            )
        })?;
    let text = crate::metrics::render(state.metrics(), &figures);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
    );
    Ok(resp)
}
