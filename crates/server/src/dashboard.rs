//! The web dashboard: a single-page app served at `/`, its assets under `/assets/...`.
//!
//! Every asset is compiled into the binary (`include_str!`/`include_bytes!`): no CDN, no
//! network, no build step. The page reads and changes the store only through the JSON API
//! (`/v1/...`), sending the bearer token the operator typed (kept in `sessionStorage`) in an
//! `Authorization` header: no cookie is involved, so another site cannot make a browser act
//! on the store.
//!
//! The page and its assets carry no data, so they are served without the token (a browser
//! cannot attach a header to a navigation); mount [`routes`] outside the token check. Each
//! response has a strict Content-Security-Policy (no inline script or style, nothing from
//! another origin, no framing), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

/// The Content-Security-Policy of the page and its assets.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// The dashboard's routes: `/` (the page) and `/assets/{app.js,app.css,favicon.svg}`.
/// Mount them outside the token check: they carry no data.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async { asset(FAVICON_SVG, "image/svg+xml") }),
        )
}

/// One asset with the security headers. Assets are revalidated on each load (`no-cache`), so
/// a new server version's page never runs with an old script.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}
