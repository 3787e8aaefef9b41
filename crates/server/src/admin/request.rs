//! Request helpers shared by the admin and compat routes: every malformed query, path
//! parameter or body becomes a 400 problem naming the parameter or JSON path (axum's own
//! rejections are text/plain). Small and private to these modules until a shared extractor
//! module replaces them.

use std::str::FromStr;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// The query string as name/value pairs; every reading names the parameter in its 400.
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|e| {
                    Problem::bad_request("bad_request", format!("malformed query string: {e}"))
                })?;
        Ok(QueryParams { pairs })
    }
}

impl QueryParams {
    /// Every parameter, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// 400 naming the first parameter not in `known`.
    pub fn allow(&self, known: &[&str]) -> ApiResult<()> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(Problem::bad_request(
                "bad_request",
                if known.is_empty() {
                    format!("unknown query parameter {k:?} (this route takes none)")
                } else {
                    format!(
                        "unknown query parameter {k:?} (expected one of: {})",
                        known.join(", ")
                    )
                },
            )
            .at(k.clone())),
        }
    }

    /// The single value of `name` (400 when given twice).
    pub fn string(&self, name: &str) -> ApiResult<Option<String>> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.clone());
        if found.next().is_some() {
            return Err(Problem::bad_request(
                "bad_request",
                format!("query parameter {name:?} given more than once"),
            )
            .at(name));
        }
        Ok(first)
    }

    /// `name` parsed with `FromStr`.
    pub fn parse<T>(&self, name: &str) -> ApiResult<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| {
                Problem::bad_request(
                    "bad_request",
                    format!("query parameter {name:?}: {e} (got {v:?})"),
                )
                .at(name)
            }),
        }
    }

    /// `name` as a whole number from 0 to `int64`'s maximum (the documents' `integer`), as a
    /// `usize` (saturated on a narrower platform: a count or offset that large matches nothing).
    pub fn whole(&self, name: &str) -> ApiResult<Option<usize>> {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= crate::extract::int::INT64_MAX)
                .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
                .ok_or_else(|| {
                    Problem::bad_request(
                        "bad_request",
                        format!(
                            "query parameter {name:?}: not a whole number from 0 to {} (got {v:?})",
                            crate::extract::int::INT64_MAX
                        ),
                    )
                    .at(name)
                }),
        }
    }

    /// `name` as a boolean: `true` or `false`.
    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.string(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(Problem::bad_request(
                "bad_request",
                format!("query parameter {name:?} must be true or false (got {v:?})"),
            )
            .at(name)),
        }
    }
}

/// A route's single path parameter (a task id), with a malformed one (not UTF-8 once
/// percent-decoded) answered 400 problem+json rather than axum's text.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|e| {
                Problem::bad_request(
                    "bad_request",
                    format!("bad path parameter: {}", e.body_text()),
                )
            })
    }
}

/// Reads and drops the body of a route that takes none (at most 64 KiB), so that a client
/// that sent one (`{}`, an empty chunked body) keeps its connection: hyper closes a
/// connection whose request body was left unread.
pub async fn drain(body: Body) {
    let _ = axum::body::to_bytes(body, 64 << 10).await;
}

/// Reads the whole body, at most the server's `max_body_bytes` (413 beyond).
pub async fn read_body(state: &AppState, body: Body) -> ApiResult<Bytes> {
    let max = state.options().max_body_bytes;
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let too_large =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.to_string().contains("length limit"));
        if too_large {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {max} bytes"),
            )
        } else {
            Problem::bad_request(
                "bad_request",
                format!("could not read the request body: {e}"),
            )
        }
    })
}
