//! A server that does not write the store: it sends clients to the one that does.
//!
//! When several servers share one replicated store (`tasklog serve --jetstream`, docs/jetstream.md
//! "Failover"), one holds the lease and writes; the others wait for the lease. While waiting,
//! a server answers every request with a redirect to the writer (307, same method and body, the
//! path and query kept), or with 503 and `Retry-After: 1` while no writer is known. The clients
//! shipped with tasklog (the CLI's, the Python worker) follow both.
//!
//! This module knows nothing of how the writer is chosen: it is told through a
//! [`tokio::sync::watch`] channel of [`Writer`].

use std::future::Future;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::error::Problem;
use crate::health::ProbeStatus;

/// Who writes the store, as seen by a server that does not.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Writer {
    /// No writer is known: nobody holds the lease, or the lease cannot be read.
    Unknown,
    /// This server holds the lease and is opening the store.
    Opening,
    /// Another server, reached at this base URL (`http://host:port`, no trailing slash).
    At(String),
}

/// Longest base URL redirected to; a longer one (from the lease, written by another server)
/// is treated as no writer known.
pub const WRITER_URL_BYTES_MAX: usize = 1024;

#[derive(Clone)]
struct Standby {
    writer: watch::Receiver<Writer>,
    own_url: String,
    token: Option<String>,
}

/// The standby's routes: `/livez` (200), `/readyz` (503 `standby`), `/metrics`
/// (`tasklog_standby 1`), and everything else redirected to the writer.
///
/// `own_url` is this server's advertised base URL: a lease that still names it (left by an
/// earlier run of this server at the same address) is not redirected to, which would loop.
/// With a `token`, every route but `/livez` needs it, as on the writer.
pub fn standby_router(
    writer: watch::Receiver<Writer>,
    own_url: impl Into<String>,
    token: Option<String>,
) -> Router {
    let state = Standby {
        writer,
        own_url: own_url.into(),
        token,
    };
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(redirect)
        .with_state(state)
}

/// Serves [`standby_router`] on `listener` until `until` resolves (this server got the lease,
/// or it is told to stop), then lets the requests in flight finish.
pub async fn serve_standby(
    listener: tokio::net::TcpListener,
    router: Router,
    until: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(until)
        .await
}

async fn livez() -> axum::Json<ProbeStatus> {
    axum::Json(ProbeStatus {
        status: "ok".into(),
    })
}

async fn readyz(State(s): State<Standby>, req: Request) -> Response {
    if let Some(refused) = crate::auth::bearer_refusal(s.token.as_deref(), &req) {
        return refused;
    }
    let detail = match writer_url(&s) {
        Ok(url) => format!("this server is a standby; the writer is {url}"),
        Err(p) => return p.into_response(),
    };
    Problem::unavailable("standby", detail, 1).into_response()
}

async fn metrics(State(s): State<Standby>, req: Request) -> Response {
    if let Some(refused) = crate::auth::bearer_refusal(s.token.as_deref(), &req) {
        return refused;
    }
    let body = "# HELP tasklog_standby 1 while this server waits for the lease (it does not write the store).\n\
                # TYPE tasklog_standby gauge\n\
                tasklog_standby 1\n";
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn redirect(State(s): State<Standby>, req: Request) -> Response {
    if let Some(refused) = crate::auth::bearer_refusal(s.token.as_deref(), &req) {
        return refused;
    }
    let url = match writer_url(&s) {
        Ok(url) => url,
        Err(p) => return p.into_response(),
    };
    let target = match req.uri().path_and_query() {
        Some(pq) => format!("{url}{pq}"),
        None => url,
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => {
            let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => no_writer("the writer's address is not a valid URL").into_response(),
    }
}

/// The writer's base URL, or the 503 to answer instead.
fn writer_url(s: &Standby) -> Result<String, Problem> {
    match &*s.writer.borrow() {
        Writer::At(url) if url.trim_end_matches('/') == s.own_url.trim_end_matches('/') => {
            Err(no_writer(
                "the lease still names this server (an earlier run); waiting for it to run out",
            ))
        }
        Writer::At(url)
            if url.len() <= WRITER_URL_BYTES_MAX
                && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Ok(url.trim_end_matches('/').to_owned())
        }
        Writer::At(_) => Err(no_writer(
            "the lease names a writer whose address is not an http(s) URL of at most 1024 bytes",
        )),
        Writer::Opening => Err(Problem::unavailable(
            "opening",
            "this server just became the writer and is opening the store",
            1,
        )),
        Writer::Unknown => Err(no_writer("no server holds the writer's lease")),
    }
}

fn no_writer(detail: &str) -> Problem {
    Problem::unavailable("no_writer", detail, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    async fn call(router: &Router, uri: &str, auth: Option<&str>) -> Response {
        let mut req = Request::builder().method("POST").uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        router
            .clone()
            .oneshot(req.body(Body::from("{}")).expect("a request"))
            .await
            .expect("infallible")
    }

    async fn get(router: &Router, uri: &str) -> Response {
        router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("a request"))
            .await
            .expect("infallible")
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> Option<String> {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    }

    #[tokio::test]
    async fn requests_go_to_the_writer_or_wait_while_none_is_known() {
        let (tx, rx) = watch::channel(Writer::Unknown);
        let router = standby_router(rx, "http://b:2", None);
        let resp = call(&router, "/v1/tasks?x=1", None).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header_of(&resp, header::RETRY_AFTER).as_deref(), Some("1"));
        assert_eq!(
            header_of(&resp, header::CONTENT_TYPE).as_deref(),
            Some("application/problem+json")
        );

        tx.send_replace(Writer::At("http://a:1/".into()));
        let resp = call(&router, "/v1/tasks?x=1", None).await;
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            header_of(&resp, header::LOCATION).as_deref(),
            Some("http://a:1/v1/tasks?x=1")
        );

        // Never a redirect to itself, nor to something that is not an http(s) URL.
        for bad in ["http://b:2", "javascript:alert(1)", "http://a\n:1"] {
            tx.send_replace(Writer::At(bad.into()));
            let resp = call(&router, "/v1/tasks", None).await;
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{bad:?}");
        }
        tx.send_replace(Writer::Opening);
        let resp = call(&router, "/v1/tasks", None).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

        // Probes: live, not ready; metrics say standby.
        assert_eq!(get(&router, "/livez").await.status(), StatusCode::OK);
        assert_eq!(
            get(&router, "/readyz").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&router, "/metrics").await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn with_a_token_only_livez_answers_without_it() {
        let (_tx, rx) = watch::channel(Writer::At("http://a:1".into()));
        let router = standby_router(rx, "http://b:2", Some("s3cret".into()));
        assert_eq!(
            call(&router, "/v1/tasks", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&router, "/v1/tasks", Some("Bearer wrong"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&router, "/v1/tasks", Some("Bearer s3cret"))
                .await
                .status(),
            StatusCode::TEMPORARY_REDIRECT
        );
        assert_eq!(
            get(&router, "/metrics").await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(&router, "/livez").await.status(), StatusCode::OK);
    }
}
