//! `GET /v1/events`: Server-Sent Events of committed events, and the hub that feeds them and
//! wakes long-polling workers.

use std::sync::Arc;

use tasklog::Store;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// One store subscription shared by every SSE client and long-polling worker.
pub struct Hub {}

impl Hub {
    /// Starts the hub over `store`.
    pub fn start(store: &Store) -> Arc<Hub> {
        let _ = store;
        Arc::new(Hub {})
    }
    /// Ends every stream (at shutdown).
    pub fn close(&self) {}
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
