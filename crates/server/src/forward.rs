//! A standby's hand-off of a request to the writer: forwarded over HTTP, the writer's answer
//! streamed back as it comes (event streams included), so that any client, a browser's page
//! among them, works against any server of a deployment with the one address it was given.
//!
//! What is sent on: the method, the path and query, every end-to-end header (the token
//! included: the writer checks it again) and the body, streamed. Hop-by-hop headers
//! (RFC 9110 §7.6.1) are dropped both ways. The answer is marked `Tasklog-Served-By: writer`
//! (a replica's own answers say `replica`). The request is marked with
//! [`FORWARDED_BY_HEADER`]; a standby never forwards a request that carries it, so two
//! servers that each take the other for the writer (a takeover in progress) answer 503
//! instead of passing the request round.
//!
//! What the client is told when the writer cannot answer, chosen so that a retry is never
//! a duplicate:
//! - no connection to the writer (the request was never sent): 503 `writer_unreachable`
//!   with `Retry-After: 1`, which every shipped client retries;
//! - the request was sent but no answer came (the writer died, the lease moved while it was
//!   in flight, or no answer head within [`FORWARD_ANSWER_WAIT_MAX`]): for GET and HEAD the
//!   same 503 (a read is safe to repeat); for every other method 502 `writer_failed`, whose
//!   detail says the change may or may not have been made (repeat it with its
//!   `Idempotency-Key`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::error::Problem;
use crate::standby::{SERVED_BY_HEADER, Writer};

/// The header a standby adds to a request it forwards (its own advertised URL).
pub const FORWARDED_BY_HEADER: &str = "tasklog-forwarded-by";

/// Longest wait for the head of the writer's answer to a forwarded request (the writer's own
/// bound on a request is 30 s; a long poll of the worker protocol is shorter). Its body, an
/// event stream for instance, may take as long as it takes.
pub const FORWARD_ANSWER_WAIT_MAX: Duration = Duration::from_secs(60);

/// Longest wait for a connection to the writer.
const CONNECT_WAIT_MAX: Duration = Duration::from_secs(2);

/// Pooled plain-HTTP connections to the writer (an https writer is redirected to instead).
#[derive(Clone)]
pub(crate) struct Forwarder {
    client: Client<HttpConnector, Body>,
}

impl Forwarder {
    pub(crate) fn new() -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_WAIT_MAX));
        connector.set_nodelay(true);
        Forwarder {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `req` to the writer at `writer_url` (`http://host:port`) and answers with its
    /// answer; `writer` is watched so that a request in flight when the lease moves is
    /// answered at once rather than after the wait.
    pub(crate) async fn forward(
        &self,
        writer_url: &str,
        own_url: &str,
        mut writer: watch::Receiver<Writer>,
        req: Request,
    ) -> Response {
        if req.headers().contains_key(FORWARDED_BY_HEADER) {
            return Problem::unavailable(
                "no_writer",
                "another standby forwarded this request here, taking this server for the \
                 writer: the servers disagree about who writes (a takeover in progress)",
                1,
            )
            .into_response();
        }
        let safe_to_repeat = req.method() == Method::GET || req.method() == Method::HEAD;
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let Ok(uri) = format!("{writer_url}{path_and_query}").parse::<Uri>() else {
            return Problem::unavailable(
                "no_writer",
                "the writer's address does not form a valid URL with this path",
                1,
            )
            .into_response();
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        if let Ok(v) = HeaderValue::from_str(own_url) {
            parts
                .headers
                .insert(HeaderName::from_static(FORWARDED_BY_HEADER), v);
        }
        parts.uri = uri;
        let sent = self.client.request(Request::from_parts(parts, body));
        let lease_moved = async {
            let at = writer.borrow_and_update().clone();
            loop {
                if writer.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if *writer.borrow_and_update() != at {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            answer = sent => answer.map_err(|e| {
                if e.is_connect() {
                    Failure::NotSent(e.to_string())
                } else {
                    Failure::NoAnswer(e.to_string())
                }
            }),
            () = lease_moved => Err(Failure::NoAnswer(
                "the writer's lease moved while the request was in flight".into(),
            )),
            () = tokio::time::sleep(FORWARD_ANSWER_WAIT_MAX) => Err(Failure::NoAnswer(format!(
                "no answer within {} s",
                FORWARD_ANSWER_WAIT_MAX.as_secs()
            ))),
        };
        match outcome {
            Ok(answer) => {
                let mut resp = answer.map(Body::new);
                strip_hop_by_hop(resp.headers_mut());
                resp.headers_mut().insert(
                    HeaderName::from_static(SERVED_BY_HEADER),
                    HeaderValue::from_static("writer"),
                );
                resp
            }
            Err(Failure::NotSent(why)) => {
                tracing::debug!(writer = writer_url, %why, "writer unreachable");
                Problem::unavailable(
                    "writer_unreachable",
                    format!("cannot reach the writer at {writer_url}: {why}"),
                    1,
                )
                .into_response()
            }
            Err(Failure::NoAnswer(why)) if safe_to_repeat => {
                tracing::debug!(writer = writer_url, %why, "writer did not answer a read");
                Problem::unavailable(
                    "writer_unreachable",
                    format!("the writer at {writer_url} did not answer: {why}"),
                    1,
                )
                .into_response()
            }
            Err(Failure::NoAnswer(why)) => {
                tracing::warn!(writer = writer_url, %why, "writer did not answer a forwarded change");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "writer_failed",
                    format!(
                        "the writer at {writer_url} did not answer ({why}): the change may or \
                         may not have been made; repeat it with the same Idempotency-Key"
                    ),
                )
                .into_response()
            }
        }
    }
}

enum Failure {
    /// No connection: the request was never sent.
    NotSent(String),
    /// Sent, but no answer came.
    NoAnswer(String),
}

/// Removes the hop-by-hop headers: the fixed list and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_end_to_end_ones_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert("idempotency-key", HeaderValue::from_static("k"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["authorization", "idempotency-key"]);
    }
}
