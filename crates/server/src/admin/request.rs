//! Request helpers shared by the admin and compat routes: every malformed query, path
//! parameter or body becomes a 400 problem naming the parameter or JSON path (axum's own
//! rejections are text/plain). Small and private to these modules until a shared extractor
//! module replaces them.
#![allow(
    clippy::result_large_err,
    reason = "Problem (error.rs) is the crate-wide error body; boxing it is the owner's call"
)]

use std::str::FromStr;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

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

/// Parses a JSON body into `T`; a problem names the JSON path (`$.older_than_secs`).
/// Every body these routes take is a JSON object (serde would also read a struct from an
/// array, which is refused here).
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(Problem::bad_request(
                "invalid_input",
                "the body is empty; a JSON object is expected",
            )
            .at("$"));
        }
        Some(_) => {
            return Err(
                Problem::bad_request("invalid_input", "the body must be a JSON object").at("$"),
            );
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "$".to_string()
        } else {
            format!("$.{path}")
        };
        Problem::bad_request("invalid_input", format!("{at}: {}", e.inner())).at(at)
    })?;
    de.end().map_err(|e| {
        Problem::bad_request(
            "invalid_input",
            format!("trailing characters after the JSON value: {e}"),
        )
        .at("$")
    })?;
    Ok(value)
}

/// The largest integer the documents allow (`format: int64`).
pub const INT64_MAX: u64 = i64::MAX as u64;

/// A whole number from 0 to [`INT64_MAX`], also written with a zero fraction (`5.0`: JSON
/// Schema's integers include it).
pub fn integral_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error as _;
    let n = serde_json::Number::deserialize(d)?;
    let v = if let Some(u) = n.as_u64() {
        Some(u)
    } else {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9.007_199_254_740_992e15)
            .map(|f| f as u64)
    };
    match v {
        Some(u) if u <= INT64_MAX => Ok(u),
        _ => Err(D::Error::custom(format!(
            "expected a whole number from 0 to {INT64_MAX}, got {n}"
        ))),
    }
}

/// [`integral_u64`] for an optional field (null: none).
pub fn integral_u64_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "integral_u64")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

/// [`json_body`], with an empty body or a JSON `null` read as `{}` (bodies whose every field is
/// optional, documented as `oneOf: [null, {...}]`).
pub fn json_body_or_empty<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
        json_body(b"{}")
    } else {
        json_body(bytes)
    }
}
