//! Request helpers of the worker and event routes: the `{id}` segment, owner and actor names.
//! JSON bodies go through the shared [`crate::extract::Json`].

use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::error::Problem;

/// Header naming who makes a change (recorded in the history).
pub const ACTOR_HEADER: &str = "x-tasklog-actor";

/// Longest owner or actor name, in characters.
pub const NAME_CHARS_MAX: usize = 256;

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
/// A header that is sent is checked even when the body names the actor: a malformed request is
/// refused whichever of its parts would have been used.
pub fn actor(body: Option<String>, headers: &HeaderMap, fallback: &str) -> Result<String, Problem> {
    let header = match headers.get(ACTOR_HEADER) {
        None => None,
        Some(v) => {
            let a = v.to_str().map_err(|_| {
                Problem::bad_request("invalid_input", "X-Tasklog-Actor is not visible ASCII")
                    .at("X-Tasklog-Actor")
            })?;
            check_name(a, "X-Tasklog-Actor")?;
            Some(a.to_string())
        }
    };
    if let Some(a) = body {
        check_name(&a, "$.actor")?;
        return Ok(a);
    }
    Ok(header.unwrap_or_else(|| fallback.to_string()))
}
