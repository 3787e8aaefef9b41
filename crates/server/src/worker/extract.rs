//! Extractors of the worker and event routes that reject with a [`Problem`] naming where the
//! input is wrong (axum's own rejections are `text/plain`).
//!
//! NOTE: private to these routes until the shared `extract` module lands.

#![allow(
    clippy::result_large_err,
    reason = "`Problem` (error.rs) is large; boxing it is error.rs's call, shared by every module"
)]

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::Problem;

/// Header naming who makes a change (recorded in the history).
pub const ACTOR_HEADER: &str = "x-tasklog-actor";

/// Longest owner or actor name, in characters.
pub const NAME_CHARS_MAX: usize = 256;

/// A JSON object body (`Content-Type: application/json`).
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        // NOTE: the body is read before anything is refused: a connection whose request body
        // was left unread is closed, and a client reusing it would see a reset.
        let json = is_json(req.headers());
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    e.body_text(),
                ));
            }
            Err(e) => return Err(Problem::bad_request("bad_request", e.body_text())),
        };
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        // serde reads a struct from an array too: say plainly what is expected instead.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(
                Problem::bad_request("invalid_input", "the body must be a JSON object").at("$"),
            );
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

/// True for `application/json` and `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

const DATA_ERROR_PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";

/// The problem of a refused JSON body, with the JSON path of the culprit when known.
fn json_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let text = text.strip_prefix(DATA_ERROR_PREFIX).unwrap_or(&text);
            let (at, detail) = json_path(text);
            Problem::bad_request("invalid_input", format!("{at}: {detail}")).at(at)
        }
        JsonRejection::JsonSyntaxError(e) => {
            Problem::bad_request("bad_request", e.body_text()).at("$")
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.body_text())
        }
        other => Problem::bad_request("bad_request", other.body_text()),
    }
}

/// Splits a deserialization error (`path: message`, or a bare message about the top level)
/// into a JSON path (`$.kinds[0]`) and the message.
fn json_path(text: &str) -> (String, &str) {
    if let Some((path, message)) = text.split_once(": ")
        && !path.is_empty()
        && !path.contains(char::is_whitespace)
    {
        let at = if path == "." {
            "$".to_string()
        } else if path.starts_with('[') {
            format!("${path}")
        } else {
            format!("$.{path}")
        };
        return (at, message);
    }
    // A missing or unknown field of the top level names itself in the message.
    for lead in ["missing field `", "unknown field `"] {
        if let Some(rest) = text.strip_prefix(lead)
            && let Some((field, _)) = rest.split_once('`')
        {
            return (format!("$.{field}"), text);
        }
    }
    ("$".to_string(), text)
}

/// The `{id}` segment of a task route.
pub struct TaskId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(TaskId(id)),
            Err(e) => Err(Problem::bad_request("bad_request", e.body_text()).at("id")),
        }
    }
}

/// Checks an owner or actor name: 1 to 256 characters, not all blank, no control characters.
pub fn check_name(name: &str, at: &str) -> Result<(), Problem> {
    let reason = if name.trim().is_empty() {
        "is empty"
    } else if name.chars().count() > NAME_CHARS_MAX {
        "is longer than 256 characters"
    } else if name.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(Problem::bad_request("invalid_input", format!("{at} {reason}")).at(at))
}

/// Who makes a change: the body's `actor`, else the `X-Tasklog-Actor` header, else `fallback`.
pub fn actor(body: Option<String>, headers: &HeaderMap, fallback: &str) -> Result<String, Problem> {
    if let Some(a) = body {
        check_name(&a, "$.actor")?;
        return Ok(a);
    }
    match headers.get(ACTOR_HEADER) {
        None => Ok(fallback.to_string()),
        Some(v) => {
            let a = v.to_str().map_err(|_| {
                Problem::bad_request("invalid_input", "X-Tasklog-Actor is not visible ASCII")
                    .at("X-Tasklog-Actor")
            })?;
            check_name(a, "X-Tasklog-Actor")?;
            Ok(a.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_path;

    #[test]
    fn paths_of_deserialization_errors() {
        assert_eq!(
            json_path("kinds[1]: invalid type: integer `3`, expected a string"),
            (
                "$.kinds[1]".into(),
                "invalid type: integer `3`, expected a string"
            )
        );
        assert_eq!(
            json_path("missing field `owner` at line 1 column 2").0,
            "$.owner"
        );
        assert_eq!(json_path("invalid type: null, expected struct X").0, "$");
        assert_eq!(json_path("[0]: invalid type").0, "$[0]");
    }
}
