//! `tasklog-server`: a tasklog store as an HTTP service.
//!
//! [`router`] returns an axum [`Router`] serving the whole API over one open [`Store`]: mount it
//! in your own axum app, or run it with [`serve()`] (what `tasklog serve` does). The routes:
//!
//! - `/v1/tasks...`: submit, get, list, history, outputs, every transition, batches
//!   (`ETag`/`If-Match` optimistic concurrency, `Idempotency-Key` retries);
//! - `/v1/workers/...`: the worker protocol (claim with long-poll, heartbeat, fenced writes);
//! - `/v1/events`: Server-Sent Events of committed events, resumable;
//! - `/v1/schedules...`: recurring tasks (fired by [`serve()`]) and their runs;
//! - `/v1/stats`, `/v1/export`, `/v1/import`, `/v1/cleanup`, `/v1/snapshot`, `/v1/compact`,
//!   `/v1/verify`: maintenance;
//! - `/api/...`, `/health/...`: the endpoints of the systems tasklog replaces;
//! - `/livez`, `/readyz`, `/metrics` (Prometheus text), `/openapi.json` (OpenAPI 3.1);
//! - `/` and `/assets/...`: the web [`dashboard`] (static, no data: served without the token).
//!
//! Errors are `application/problem+json` ([`Problem`]); handlers read their input through
//! [`extract`] (`Json`, `Query`, `Path`), whose rejections are problems naming the JSON path
//! or parameter at fault. [`auth::layers`] puts the token check, the limits, the metrics and
//! the access log around every route, and turns any other error answer into a problem.
// NOTE: a `Problem` is about 200 bytes and is built only on the error path; every handler
// returns it by value (axum turns it into the response), so boxing it would buy nothing.
pub mod admin;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod extract;
pub mod forward;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod schedules;
pub mod seeds;
pub mod serve;
pub mod standby;
pub mod state;
pub mod tasks;
pub mod worker;

use std::sync::OnceLock;

use axum::Router;
use tasklog::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiResult, Problem};
pub use options::{BackupSchedule, ServerOptions};
pub use serve::{ServerRecord, is_loopback, serve};
pub use standby::{Handoff, ReplicaSlot, Writer, serve_standby, standby_router};
pub use state::AppState;

/// Every route of the API with its OpenAPI description, before the state is attached.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(openapi_json))
        .merge(tasks::routes())
        .merge(worker::routes())
        .merge(events::routes())
        .merge(admin::routes())
        .merge(schedules::routes())
        .merge(seeds::routes())
        .merge(health::routes())
}

/// The OpenAPI document of the API, generated from the code.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api().split_for_parts();
    openapi::finish(&mut doc);
    doc
}

/// The OpenAPI 3.1 document of this API, as this server answers: without the bearer scheme
/// when it has no token, with its own page limit.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health", operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value))
)]
async fn openapi_json(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> extract::Json<serde_json::Value> {
    // The generic document is the same for every router of this build: made once.
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    let mut doc = DOC
        .get_or_init(|| serde_json::to_value(openapi_document()).unwrap_or_default())
        .clone();
    openapi::for_server(&mut doc, state.options());
    extract::Json(doc)
}

/// The whole service over `store`: the API, `/openapi.json`, the token check, the limits and
/// the access log. Starts the server's background work on the store (the event hub);
/// the lease supervisor runs in [`serve()`].
pub fn router(store: Store, options: ServerOptions) -> Router {
    router_with_state(AppState::new(store, options))
}

/// [`router`] over a state the caller keeps (to begin a shutdown, read metrics...).
pub fn router_with_state(state: AppState) -> Router {
    let (api, _) = api().split_for_parts();
    let api = api.fallback(auth::not_found);
    // The dashboard's page and assets carry no data: outside the token check.
    auth::layers(api, state.clone())
        .merge(dashboard::routes())
        .with_state(state)
}
