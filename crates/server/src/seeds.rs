//! The endpoints of the systems tasklog replaces, with their field names, so that a user of
//! those systems points their client at tasklog and it works (`/work/shared/seeds`, described
//! in docs/api.md, "Endpoints of the systems tasklog replaces"):
//!
//! - seed 000, a JSON-file task scheduler ([`scheduler`]): `GET /api/tasks/stats`,
//!   `POST /api/tasks/export`, `POST /api/tasks/import`, `POST /api/tasks/cleanup`. Its
//!   server-side `path`s are confined to [`crate::ServerOptions::files_dir`] ([`files`]);
//! - seed 001, AutoDev's task persistence ([`autodev`], the listing in [`persistent`]): `GET /api/tasks/history/{task_id}`,
//!   `GET /api/tasks/persistent`, `POST /api/tasks/{task_id}/recover`,
//!   `GET|POST /api/tasks/outputs/{task_id}`, `GET /api/persistence/stats`;
//! - seed 003, Celery task recovery ([`recovery`]): `GET /health/recovery`,
//!   `/health/recovery/metrics`, `/health/detailed`, whose figures are derived from the store
//!   by the rules stated there.

pub mod autodev;
pub mod files;
pub mod persistent;
pub mod recovery;
pub mod scheduler;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(scheduler::routes())
        .merge(autodev::routes())
        .merge(recovery::routes())
}

/// Runs a read on the blocking pool even while the server drains (health and statistics stay
/// answerable then); store errors become problems.
pub(crate) async fn read<T, F>(state: &AppState, f: F) -> crate::ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&tasklog::Store) -> tasklog::Result<T> + Send + 'static,
{
    let store = state.store().clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(crate::Problem::from),
        Err(e) => Err(crate::Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the store call did not finish: {e}"),
        )),
    }
}
