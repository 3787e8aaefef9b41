//! The token check, body limit, request timeout, metrics and access log around every route.

use axum::Router;

use crate::state::AppState;

/// Wraps `router` in the server's layers: bearer token (constant-time; every route but
/// `/livez`), body size limit (413), request timeout (503), request metrics and the access log.
pub fn layers(router: Router<AppState>, state: AppState) -> Router<AppState> {
    let _ = state; // TODO(server-core): the layers
    router
}
