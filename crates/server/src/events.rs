//! `GET /v1/events`: Server-Sent Events of committed events, and the hub that wakes
//! long-polling workers.
//!
//! Each SSE client follows its own store subscription on a thread of its own (the store's
//! subscription API blocks), which hands events to the response stream through a bounded
//! channel: every event once, in LSN order, caught up from the log and then live. The thread
//! ends when the client goes (the channel closes), at shutdown ([`Hub::close`]), when the
//! store closes, or when the client reads nothing for [`STALL_MAX`] (it then resumes with
//! `Last-Event-ID`, losing nothing).

mod hub;
mod narrate;
mod pump;
pub(crate) mod ready;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::state::AppState;
pub use hub::Hub;
pub use narrate::EventData;
use pump::Pump;

/// Interval of the keep-alive comments of an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A client that takes nothing from its stream for this long is disconnected.
pub const STALL_MAX: Duration = Duration::from_secs(60);
/// Events buffered between a subscriber's thread and its response.
const BUFFERED: usize = 256;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new().routes(routes!(events));
    // The `data` of each event (and what it refers to), documented beside the stream it
    // travels in: a text/event-stream body names no schema itself.
    let mut schemas = vec![(
        "EventData".to_string(),
        <EventData as utoipa::PartialSchema>::schema(),
    )];
    <EventData as utoipa::ToSchema>::schemas(&mut schemas);
    let components = router
        .get_openapi_mut()
        .components
        .get_or_insert_with(Default::default);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    router
}

/// Where a stream starts and whether it follows.
struct Start {
    /// The first LSN wanted (`None`: the next to commit).
    from: Option<u64>,
    /// Where `from` came from, for errors (`from` or `Last-Event-ID`).
    from_at: &'static str,
    follow: bool,
}

fn parse_start(query: Option<&str>, headers: &HeaderMap) -> ApiResult<Start> {
    let mut start = Start {
        from: None,
        from_at: "from",
        follow: true,
    };
    let mut from = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "from" => from = Some(lsn(value, "from")?),
            "follow" => {
                start.follow = match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Problem::bad_request(
                            "bad_request",
                            format!("follow must be true or false, not {value:?}"),
                        )
                        .at("follow"));
                    }
                }
            }
            other => {
                return Err(Problem::bad_request(
                    "bad_request",
                    format!("unknown query parameter {other:?} (expected from, follow)"),
                )
                .at(other.to_string()));
            }
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let text = last.to_str().unwrap_or("\u{0}");
        start.from = Some(lsn(text.trim(), "Last-Event-ID")?.saturating_add(1));
        start.from_at = "Last-Event-ID";
    } else {
        start.from = from;
    }
    Ok(start)
}

fn lsn(text: &str, at: &str) -> ApiResult<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n <= crate::extract::int::INT64_MAX)
        .ok_or_else(|| {
            Problem::bad_request(
                "bad_request",
                format!("{at} must be an LSN (a whole number from 0 to 2^63 - 1), not {text:?}"),
            )
            .at(at.to_string())
        })
}

/// Streams committed events as Server-Sent Events.
///
/// Every committed event from `from` (or after `Last-Event-ID`, which wins: what an
/// `EventSource` sends when it reconnects), caught up from the log and then live as events
/// commit, each once and in LSN order. Each SSE event has `id: <lsn>`, `event: <kind>` and
/// `data:` one `EventData` JSON object (see the schema of that name); comments keep an idle
/// stream alive. Without `from` nor `Last-Event-ID` the stream starts with the next event.
/// With `follow=false` it ends once caught up with what was committed when it started. A
/// stream that cannot go on (the log no longer holds what it must send) ends with an event
/// `problem` whose data is a problem object.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("from" = Option<u64>, Query, description = "The first LSN to send (0 or 1: from the beginning; default: the next one to commit)", minimum = 0, maximum = 9_223_372_036_854_775_807_u64),
        ("follow" = Option<bool>, Query, description = "false: end once caught up (default true: go on with live events)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this LSN (wins over `from`)", minimum = 0, maximum = 9_223_372_036_854_775_807_u64),
    ),
    responses(
        (status = 200, description = "The stream: `id: <lsn>`, `event: <kind>`, `data: <EventData JSON>` per event", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad `from`, `follow` or `Last-Event-ID`, or that LSN was compacted away (`at` names which)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many subscribers, or shutting down (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let start = parse_start(query.as_deref(), &headers)?;
    let hub = state.hub().clone();
    if hub.is_closed() || state.is_shutting_down() {
        return Err(Problem::unavailable(
            "shutting_down",
            "the server is shutting down",
            5,
        ));
    }
    let max = state.options().max_sse_subscribers;
    let Some(slot) = hub.take_subscriber_slot(max) else {
        return Err(Problem::unavailable(
            "too_many_subscribers",
            format!("the server already streams events to {max} subscribers"),
            5,
        ));
    };
    let store = state.store().clone();
    // LSNs start at 1: `from=0` is the beginning too.
    let from = start.from.map_or(store.last_lsn() + 1, |f| f.max(1));
    // Caught up to here when not following.
    let until = (!start.follow).then(|| store.last_lsn());
    let sub = store.subscribe(from).map_err(|e| match Problem::from(e) {
        p if p.code == "invalid_input" => p.at(start.from_at),
        p => p,
    })?;
    let (tx, rx) = mpsc::channel(BUFFERED);
    let pump = Pump {
        store,
        hub: hub.shared().clone(),
        sub,
        tx,
        until,
        _slot: slot,
    };
    std::thread::Builder::new()
        .name("tasklog-sse".into())
        .spawn(move || pump.run())
        .map_err(|e| {
            Problem::unavailable(
                "too_many_subscribers",
                format!("could not start a subscriber: {e}"),
                5,
            )
        })?;
    let closed = hub.closed_receiver();
    let stream = futures_util::stream::unfold((rx, closed), |(mut rx, mut closed)| async move {
        let event = tokio::select! {
            biased;
            () = until_closed(&mut closed) => None,
            event = rx.recv() => event,
        };
        event.map(|e| (Ok::<Event, Infallible>(e), (rx, closed)))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies must not hold the stream back.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// Returns once `closed` is true (or its sender is gone).
pub(crate) async fn until_closed(closed: &mut tokio::sync::watch::Receiver<bool>) {
    while !*closed.borrow_and_update() {
        if closed.changed().await.is_err() {
            return;
        }
    }
}
