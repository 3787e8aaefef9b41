//! The token check, body limit, request timeout, metrics and access log around every route,
//! and the answers of unknown routes (404) and wrong methods (405), all `problem+json`.
//!
//! From the outside in: `observe` (metrics by matched route, access log) -> `problems` (any
//! non-JSON error answer, e.g. axum's own text rejections or an empty 405, becomes
//! `problem+json`) -> `check_token` -> `limit_time` -> `limit_body` -> a panic in a handler
//! becomes a 500 `internal` -> the handler.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use subtle::ConstantTimeEq;

use crate::error::Problem;
use crate::state::AppState;

/// Routes answered without a token.
pub const OPEN_ROUTES: [&str; 1] = ["/livez"];
/// Route prefixes that wait on purpose (long-polls, streams): no request timeout.
pub const UNTIMED_PREFIXES: [&str; 2] = ["/v1/events", "/v1/workers/claim"];
/// Largest refused body still read before the 413 is sent.
const DRAIN_BYTES_MAX: u64 = 16 << 20;
/// Largest error body rewritten as `problem+json`.
const REWRITE_BYTES_MAX: usize = 64 << 10;

/// Wraps `router` in the server's layers: bearer token (constant-time; every route but
/// `/livez`), body size limit (413), request timeout (503), request metrics and the access log.
pub fn layers(router: Router<AppState>, state: AppState) -> Router<AppState> {
    let limit = state.options().max_body_bytes;
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), limit_time))
        .layer(middleware::from_fn_with_state(state.clone(), check_token))
        .layer(middleware::from_fn(problems))
        .layer(middleware::from_fn_with_state(state.clone(), stamp_lsn))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// The response header naming the last LSN the store had applied when it answered: a client
/// that sends it back as [`MIN_LSN_HEADER`] to a replica reads its own writes.
pub const LSN_HEADER: &str = "tasklog-lsn";
/// The request header a replica waits for (`crate::standby`): serve this read only from a
/// state that has applied at least this LSN.
pub const MIN_LSN_HEADER: &str = "tasklog-min-lsn";

/// Stamps every answer with [`LSN_HEADER`].
async fn stamp_lsn(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let lsn = state.store().last_lsn();
    resp.headers_mut().insert(
        header::HeaderName::from_static(LSN_HEADER),
        HeaderValue::from(lsn),
    );
    resp
}

/// A handler that panicked answers 500 `internal` (and the panic is logged); the server
/// keeps serving.
fn panicked(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = what, "a request handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed while answering; see its log",
    )
    .into_response()
}

/// The answer of an unknown route.
pub async fn not_found(method: Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {}", uri.path()),
    )
}

/// Records the request's metrics (by matched route) and writes the access log line.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics()
        .record_request(method.as_str(), &route, status, elapsed);
    let ms = elapsed.as_secs_f64() * 1000.0;
    tracing::info!(target: "tasklog_server::access", %method, path, status, ms, "request");
    resp
}

/// Turns an error answer that is not JSON (axum's text rejections, an empty 405) into
/// `problem+json`, keeping its status and headers.
async fn problems(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::extract::is_json_content_type);
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, REWRITE_BYTES_MAX).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let detail = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("this route does not answer this method (allowed: {allow})")
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            "the request body is larger than the server accepts".to_string()
        }
        (_, false) => text,
        (_, true) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let body = Problem::new(status, code, detail).into_response();
    let (new_parts, new_body) = body.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (k, v) in &new_parts.headers {
        parts.headers.insert(k, v.clone());
    }
    Response::from_parts(parts, new_body)
}

/// 401 unless the request carries the server's bearer token (when it has one).
async fn check_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if OPEN_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match bearer_refusal(state.options().token.as_deref(), &req) {
        None => next.run(req).await,
        Some(refused) => refused,
    }
}

/// The 401 to answer, unless no token is set or the request carries it as
/// `Authorization: Bearer` (compared in constant time).
pub(crate) fn bearer_refusal(token: Option<&str>, req: &Request) -> Option<Response> {
    let token = token?;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    if given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes()))) {
        return None;
    }
    let (detail, challenge) = match given {
        None => (
            "this server needs `Authorization: Bearer <token>`",
            "Bearer realm=\"tasklog\"",
        ),
        Some(_) => (
            "the bearer token is not this server's",
            "Bearer realm=\"tasklog\", error=\"invalid_token\"",
        ),
    };
    let mut resp = Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    Some(resp)
}

/// 503 when a request takes longer than the server's request timeout (long-polls and streams
/// excepted: they bound themselves).
async fn limit_time(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if UNTIMED_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    let limit = state.options().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => timed_out(limit),
    }
}

fn timed_out(limit: Duration) -> Response {
    Problem::unavailable(
        "timeout",
        format!(
            "the request took longer than the server's limit of {} ms",
            limit.as_millis()
        ),
        1,
    )
    .into_response()
}

/// 413 for a body whose `Content-Length` is over the limit, before anything reads it (a
/// body without a length is cut at the limit by the extractors, also 413).
async fn limit_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.options().max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        // Read (and drop) a body of moderate size first, so that a client that sends the
        // whole body before reading gets the 413 instead of a reset connection.
        // A client waiting for `100 Continue` has not sent the body: nothing to read.
        let expects_continue = req.headers().contains_key(header::EXPECT);
        if n <= DRAIN_BYTES_MAX && !expects_continue {
            let mut stream = req.into_body().into_data_stream();
            while let Some(Ok(_)) = stream.next().await {}
        }
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}
