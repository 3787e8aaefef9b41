//! A server that does not write the store: it hands clients' requests to the one that does.
//!
//! When several servers share one replicated store (`tasklog serve --jetstream`, docs/jetstream.md
//! "Failover"), one holds the lease and writes; the others wait for the lease. While waiting,
//! a server hands every request it does not answer itself to the writer, as [`Handoff`] says:
//! forwarded, the writer's answer streamed back (the default; see [`crate::forward`]), or
//! redirected (307, same method and body, the path and query kept). While no writer is known
//! it answers 503 with `Retry-After: 1`. The clients shipped with tasklog (the CLI's, the
//! Python worker) follow redirects and retry 503s; a browser's page needs the forwarding (it
//! may not follow a redirect to another origin).
//!
//! A standby can also be a **warm replica**: given a read-only store that follows the writer
//! (`Store::follow`, in a [`ReplicaSlot`]), it answers reads (GET and HEAD, event streams and
//! the worker protocol excepted) itself, through the whole API. A read that carries
//! `Tasklog-Min-Lsn: N` (the `Tasklog-Lsn` of an earlier answer) is served only once the
//! replica has applied LSN `N`: it waits up to [`READ_WAIT_MAX`] for the replica's follower
//! (whoever calls [`ReplicaSlot::follow`], e.g. every 100 ms) and otherwise hands the read to
//! the writer. So a client reads its own writes from any server. A replica that has not
//! followed within [`REPLICA_STALE_MAX`] serves no reads until it does.
//!
//! This module knows nothing of how the writer is chosen: it is told through a
//! [`tokio::sync::watch`] channel of [`Writer`].

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tasklog::Store;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::auth::MIN_LSN_HEADER;
use crate::error::Problem;
use crate::forward::Forwarder;
use crate::health::ProbeStatus;
use crate::options::ServerOptions;

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

/// What a standby does with a request its replica does not answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handoff {
    /// Forwards it to the writer and streams the answer back: every client works unchanged,
    /// a browser's page included. A writer whose address is https is redirected to instead
    /// (forwarding speaks plain HTTP only).
    #[default]
    Forward,
    /// Answers 307 with the writer's URL: one hop less, for clients that follow redirects.
    Redirect,
}

/// Longest base URL redirected to; a longer one (from the lease, written by another server)
/// is treated as no writer known.
pub const WRITER_URL_BYTES_MAX: usize = 1024;

/// How long a replica follows the log for a read that needs a later LSN before it sends the
/// read to the writer instead.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(2);

/// The header a standby adds to its answers: `replica` for a read its replica answered,
/// `writer` for a request it forwarded.
pub const SERVED_BY_HEADER: &str = "tasklog-served-by";

/// Pause between two follows while a read waits for its LSN.
const READ_WAIT_STEP: Duration = Duration::from_millis(20);

/// A replica whose last successful follow is older than this serves no reads (they go to
/// the writer) until it follows again: its answers are never staler than this.
pub const REPLICA_STALE_MAX: Duration = Duration::from_secs(5);

/// The replica a standby serves reads from, if any: set when its store is open, serving
/// while it follows ([`ReplicaSlot::follow`]) within its staleness bound, cleared when it
/// cannot follow (every request then goes to the writer).
#[derive(Clone)]
pub struct ReplicaSlot {
    replica: Arc<RwLock<Option<Replica>>>,
    stale_max: Duration,
}

impl Default for ReplicaSlot {
    fn default() -> Self {
        ReplicaSlot {
            replica: Arc::default(),
            stale_max: REPLICA_STALE_MAX,
        }
    }
}

#[derive(Clone)]
struct Replica {
    store: Store,
    api: Router,
    /// When it last followed the log to its end (or was opened).
    followed_at: Arc<RwLock<Instant>>,
}

impl ReplicaSlot {
    /// An empty slot whose replica serves reads only within `stale_max` of its last follow
    /// (default [`REPLICA_STALE_MAX`]).
    pub fn with_stale_max(stale_max: Duration) -> ReplicaSlot {
        ReplicaSlot {
            stale_max,
            ..ReplicaSlot::default()
        }
    }

    /// Serves reads from `store` (read-only, following the writer's log, just opened) with
    /// the whole API under `options`; `None` stops serving reads.
    pub fn set(&self, store: Option<Store>, options: &ServerOptions) {
        let replica = store.map(|store| Replica {
            api: crate::router(store.clone(), options.clone()),
            store,
            followed_at: Arc::new(RwLock::new(Instant::now())),
        });
        *self.replica.write().unwrap_or_else(PoisonError::into_inner) = replica;
    }

    /// The replica's store, if one is set (serving or stale).
    pub fn store(&self) -> Option<Store> {
        self.get().map(|r| r.store)
    }

    /// Follows the log with the replica's store ([`Store::follow`]: blocks while it reads);
    /// a success restarts its staleness clock. `None` without a replica.
    pub fn follow(&self) -> Option<tasklog::Result<u64>> {
        let replica = self.get()?;
        let started = Instant::now();
        let followed = replica.store.follow();
        if followed.is_ok() {
            // What it applied was in the log when the follow started.
            *replica
                .followed_at
                .write()
                .unwrap_or_else(PoisonError::into_inner) = started;
        }
        Some(followed)
    }

    /// True when a replica is set and followed within the staleness bound.
    pub fn is_serving(&self) -> bool {
        self.serving().is_some()
    }

    fn serving(&self) -> Option<Replica> {
        self.get().filter(|r| {
            r.followed_at
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
                <= self.stale_max
        })
    }

    fn get(&self) -> Option<Replica> {
        self.replica
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Clone)]
struct Standby {
    writer: watch::Receiver<Writer>,
    own_url: String,
    token: Option<String>,
    replica: ReplicaSlot,
    handoff: Handoff,
    forwarder: Forwarder,
}

/// The standby's routes: `/livez` (200), `/readyz` (503 `standby`), `/metrics`
/// (`tasklog_standby 1`), and everything else handed to the writer as `handoff` says.
///
/// `own_url` is this server's advertised base URL: a lease that still names it (left by an
/// earlier run of this server at the same address) is not redirected to, which would loop.
/// With a `token`, every route but `/livez` needs it, as on the writer.
///
/// With a store in `replica`, reads are served from it (see the module docs).
pub fn standby_router(
    writer: watch::Receiver<Writer>,
    own_url: impl Into<String>,
    token: Option<String>,
    replica: ReplicaSlot,
    handoff: Handoff,
) -> Router {
    let state = Standby {
        writer,
        own_url: own_url.into(),
        token,
        replica,
        handoff,
        forwarder: Forwarder::new(),
    };
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(hand_off)
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

async fn hand_off(State(s): State<Standby>, req: Request) -> Response {
    if let Some(refused) = crate::auth::bearer_refusal(s.token.as_deref(), &req) {
        return refused;
    }
    if let Some(replica) = s.replica.serving().filter(|_| is_replica_read(&req)) {
        let min_lsn = match min_lsn(&req) {
            Ok(lsn) => lsn,
            Err(p) => return p.into_response(),
        };
        if caught_up(&replica.store, min_lsn).await {
            let mut resp = match replica.api.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            resp.headers_mut().insert(
                header::HeaderName::from_static(SERVED_BY_HEADER),
                HeaderValue::from_static("replica"),
            );
            return resp;
        }
        // Behind the client's own writes after the wait: the writer has them.
    }
    let url = match writer_url(&s) {
        Ok(url) => url,
        Err(p) => return p.into_response(),
    };
    if s.handoff == Handoff::Forward && url.starts_with("http://") {
        return s
            .forwarder
            .forward(&url, &s.own_url, s.writer.clone(), req)
            .await;
    }
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

/// A read a replica answers itself: GET or HEAD, but not an event stream (it follows the
/// writer's commits live) nor the worker protocol (claims write).
fn is_replica_read(req: &Request) -> bool {
    let path = req.uri().path();
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && !path.starts_with("/v1/events")
        && !path.starts_with("/v1/workers/")
}

/// The request's `Tasklog-Min-Lsn` (0 without one); a value that is not a whole number is a
/// 400 naming the header.
fn min_lsn(req: &Request) -> Result<u64, Problem> {
    let Some(value) = req.headers().get(MIN_LSN_HEADER) else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Problem::bad_request(
                "bad_request",
                format!("header {MIN_LSN_HEADER}: expected a whole number (an LSN)"),
            )
            .at(MIN_LSN_HEADER)
        })
}

/// Whether the replica has applied `lsn`, waiting up to [`READ_WAIT_MAX`] for whoever
/// follows the log (the server's follower task) to get there. Reads never follow themselves:
/// many at once would each read the log.
async fn caught_up(store: &Store, lsn: u64) -> bool {
    if store.last_lsn() >= lsn {
        return true;
    }
    let deadline = Instant::now() + READ_WAIT_MAX;
    loop {
        if store.last_lsn() >= lsn {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(READ_WAIT_STEP).await;
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
        let router = standby_router(
            rx,
            "http://b:2",
            None,
            ReplicaSlot::default(),
            Handoff::Redirect,
        );
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

    fn get_with(uri: &str, min_lsn: Option<&str>) -> Request {
        let mut req = Request::get(uri);
        if let Some(lsn) = min_lsn {
            req = req.header(MIN_LSN_HEADER, lsn);
        }
        req.body(Body::empty()).expect("a request")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_answers_reads_it_has_and_sends_the_rest_to_the_writer() {
        let dir = tempfile::tempdir().expect("a directory");
        let writer = Store::open(dir.path()).expect("a store");
        let task = writer
            .submit(tasklog::NewTask::new("read me"))
            .expect("a submit");
        // A read-only store beside the writer stands in for a replica here.
        let replica = tasklog::StoreOptions::new()
            .read_only(true)
            .open(dir.path())
            .expect("a read-only store");
        let (_tx, rx) = watch::channel(Writer::At("http://a:1".into()));
        let slot = ReplicaSlot::default();
        slot.set(Some(replica.clone()), &ServerOptions::default());
        let router = standby_router(rx, "http://b:2", None, slot.clone(), Handoff::Redirect);
        let path = format!("/v1/tasks/{}", task.id);

        let resp = router
            .clone()
            .oneshot(get_with(&path, None))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header_of(&resp, header::HeaderName::from_static(SERVED_BY_HEADER)).as_deref(),
            Some("replica")
        );
        let lsn = header_of(
            &resp,
            header::HeaderName::from_static(crate::auth::LSN_HEADER),
        );
        assert_eq!(lsn, Some(replica.last_lsn().to_string()));
        let at = replica.last_lsn().to_string();
        let resp = router
            .clone()
            .oneshot(get_with(&path, Some(&at)))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "caught up: served");

        // Ahead of the replica (a local replica cannot follow): after the wait, the writer.
        let started = Instant::now();
        let resp = router
            .clone()
            .oneshot(get_with(&path, Some("999999")))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        assert!(started.elapsed() >= READ_WAIT_MAX);
        let resp = router
            .clone()
            .oneshot(get_with(&path, Some("soon")))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

        // Writes, event streams and the worker protocol go to the writer.
        for (method, uri) in [
            ("POST", "/v1/tasks"),
            ("GET", "/v1/events"),
            ("POST", "/v1/workers/claim"),
            ("DELETE", path.as_str()),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .expect("a request");
            let resp = router.clone().oneshot(req).await.expect("infallible");
            assert_eq!(
                resp.status(),
                StatusCode::TEMPORARY_REDIRECT,
                "{method} {uri}"
            );
        }

        // No replica: reads are redirected too.
        slot.set(None, &ServerOptions::default());
        let resp = router
            .clone()
            .oneshot(get_with(&path, None))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        drop(replica);
        writer.close().expect("a clean close");
    }

    #[tokio::test]
    async fn with_a_token_only_livez_answers_without_it() {
        let (_tx, rx) = watch::channel(Writer::At("http://a:1".into()));
        let router = standby_router(
            rx,
            "http://b:2",
            Some("s3cret".into()),
            ReplicaSlot::default(),
            Handoff::Redirect,
        );
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

    /// Serves `router` on a loopback port; its base URL.
    async fn listen(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    async fn body_text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("a body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_requests_reach_the_writer_and_its_answers_stream_back() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = Store::open(dir.path()).expect("a store");
        let options = ServerOptions::default().token("s3cret");
        let writer_url = listen(crate::router(store.clone(), options)).await;
        let (_tx, rx) = watch::channel(Writer::At(writer_url.clone()));
        let standby = standby_router(
            rx,
            "http://b:2",
            Some("s3cret".into()),
            ReplicaSlot::default(),
            Handoff::Forward,
        );

        // A change, its token and headers passed on; the writer's answer as it gave it.
        let req = Request::post("/v1/tasks")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "k1")
            .body(Body::from(r#"{"title":"through a standby"}"#))
            .expect("a request");
        let resp = standby.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            header_of(&resp, header::HeaderName::from_static(SERVED_BY_HEADER)).as_deref(),
            Some("writer")
        );
        assert!(
            resp.headers().contains_key(crate::auth::LSN_HEADER),
            "the writer's LSN header comes back"
        );
        let created: serde_json::Value =
            serde_json::from_str(&body_text(resp).await).expect("json");
        let id = created["id"].as_str().expect("an id").to_owned();
        assert_eq!(store.get(&id).expect("stored").title, "through a standby");

        // A request another standby forwarded here is not passed on again: no loop.
        let req = Request::get(format!("/v1/tasks/{id}"))
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .header(crate::forward::FORWARDED_BY_HEADER, "http://c:3")
            .body(Body::empty())
            .expect("a request");
        let resp = standby.clone().oneshot(req).await.expect("infallible");
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "never forwarded twice"
        );

        // An event stream flows through as the writer writes it.
        let req = Request::get("/v1/events")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .header(header::ACCEPT, "text/event-stream")
            .body(Body::empty())
            .expect("a request");
        let resp = standby.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body().into_data_stream();
        store
            .submit(tasklog::NewTask::new("live"))
            .expect("a submit");
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains("live") {
            use futures_util::StreamExt as _;
            let chunk = tokio::time::timeout_at(deadline.into(), body.next())
                .await
                .expect("the event within 10 s")
                .expect("more of the stream")
                .expect("a chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(body);
        store.close().expect("a clean close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_cannot_answer_gets_503_unless_a_change_may_have_been_made() {
        // Nobody listens: nothing was sent, so even a change is safe to retry.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let closed_url = format!("http://{}", closed.local_addr().expect("an address"));
        drop(closed);
        let (tx, rx) = watch::channel(Writer::At(closed_url));
        let standby = standby_router(
            rx,
            "http://b:2",
            None,
            ReplicaSlot::default(),
            Handoff::Forward,
        );
        let resp = call(&standby, "/v1/tasks", None).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header_of(&resp, header::RETRY_AFTER).as_deref(), Some("1"));
        assert!(body_text(resp).await.contains("writer_unreachable"));

        // A writer that takes the request and never answers (paused): when the lease moves,
        // a change is answered 502 (it may have been made), a read 503 (safe to repeat).
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let silent_url = format!("http://{}", silent.local_addr().expect("an address"));
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                let (conn, _) = silent.accept().await.expect("a connection");
                conns.push(conn);
            }
        });
        tx.send_replace(Writer::At(silent_url.clone()));
        for (method, expected) in [
            ("POST", StatusCode::BAD_GATEWAY),
            ("GET", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let req = Request::builder()
                .method(method)
                .uri("/v1/tasks")
                .body(Body::empty())
                .expect("a request");
            let pending = tokio::spawn(standby.clone().oneshot(req));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!pending.is_finished(), "{method}: waits for the writer");
            tx.send_replace(Writer::Unknown);
            let resp = tokio::time::timeout(Duration::from_secs(5), pending)
                .await
                .expect("answered once the lease moved")
                .expect("no panic")
                .expect("infallible");
            assert_eq!(resp.status(), expected, "{method}");
            tx.send_replace(Writer::At(silent_url.clone()));
        }
        held.abort();
    }

    /// A replica that has not followed within its staleness bound serves no reads: they go to
    /// the writer until it follows (or is opened) again. Broken on purpose (reads served from
    /// any replica set, fresh or not): the second read was answered by the replica.
    #[tokio::test]
    async fn a_replica_that_stopped_following_serves_no_reads() {
        let dir = tempfile::tempdir().expect("a directory");
        let writer = Store::open(dir.path()).expect("a store");
        writer
            .submit(tasklog::NewTask::new("read me"))
            .expect("a submit");
        let replica = tasklog::StoreOptions::new()
            .read_only(true)
            .open(dir.path())
            .expect("a read-only store");
        let (_tx, rx) = watch::channel(Writer::At("http://a:1".into()));
        let slot = ReplicaSlot::with_stale_max(Duration::from_millis(300));
        slot.set(Some(replica.clone()), &ServerOptions::default());
        let router = standby_router(rx, "http://b:2", None, slot.clone(), Handoff::Redirect);
        let served_by =
            |resp: &Response| header_of(resp, header::HeaderName::from_static(SERVED_BY_HEADER));

        let resp = get(&router, "/v1/tasks").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(served_by(&resp).as_deref(), Some("replica"));
        assert!(slot.is_serving());

        tokio::time::sleep(Duration::from_millis(400)).await;
        // A local read-only store cannot follow: the follow fails and the clock is not reset.
        assert!(matches!(slot.follow(), Some(Err(_))));
        assert!(!slot.is_serving());
        let resp = get(&router, "/v1/tasks").await;
        assert_eq!(
            resp.status(),
            StatusCode::TEMPORARY_REDIRECT,
            "stale: the writer"
        );
        assert!(slot.store().is_some(), "still there to follow");

        slot.set(Some(replica.clone()), &ServerOptions::default());
        let resp = get(&router, "/v1/tasks").await;
        assert_eq!(served_by(&resp).as_deref(), Some("replica"), "reopened");
        drop(replica);
        writer.close().expect("a clean close");
    }
}
