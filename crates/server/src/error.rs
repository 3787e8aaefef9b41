//! Errors as `application/problem+json` (RFC 9457): a stable machine-readable `code`, the HTTP
//! status, a human `detail`, and the task id or JSON path involved. Bad input is a 4xx, never a
//! 5xx; a 5xx means the store itself failed (I/O, poisoned, closed).

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, schema::Schema};

/// An error answered as `application/problem+json`: a [`ProblemBody`], boxed so that every
/// `Result<_, Problem>` stays one pointer wide. Its fields are read and written through
/// `Deref` (`p.status`, `p.at`); it serializes, and is documented, as the body itself.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemBody>);

impl Deref for Problem {
    type Target = ProblemBody;
    fn deref(&self) -> &ProblemBody {
        &self.0
    }
}

impl DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemBody {
        &mut self.0
    }
}

impl utoipa::PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        ProblemBody::schema()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        ProblemBody::schemas(schemas);
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemBody {
    /// A URI naming the problem type: `urn:tasklog:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened, in words.
    pub detail: String,
    /// A stable machine-readable code (`not_found`, `invalid_transition`, `lease_lost`, ...).
    pub code: String,
    /// The task involved, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Where in the request the problem is (a JSON path such as `$.tasks[3].state`, or a
    /// query parameter's name), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Every problem found, for documents validated as a whole (imports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub problems: Vec<String>,
    /// Seconds to wait before retrying (also sent as `Retry-After`), on 503.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    /// A problem with this status, code and detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Problem(Box::new(ProblemBody {
            type_uri: format!("urn:tasklog:problem:{code}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            task_id: None,
            at: None,
            problems: Vec::new(),
            retry_after_secs: None,
        }))
    }
    /// 400 with code `bad_request` (or the code given).
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }
    /// 404 for a task.
    pub fn task_not_found(id: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("task {id:?} not found"),
        )
        .task(id)
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(code: &str, detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, detail);
        p.retry_after_secs = Some(retry_after_secs);
        p
    }
    /// Names the task involved.
    #[must_use]
    pub fn task(mut self, id: impl Into<String>) -> Self {
        self.task_id = Some(id.into());
        self
    }
    /// Names where in the request.
    #[must_use]
    pub fn at(mut self, at: impl Into<String>) -> Self {
        self.at = Some(at.into());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after_secs;
        let mut resp = (status, axum::Json(&*self.0)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<tasklog::Error> for Problem {
    fn from(e: tasklog::Error) -> Self {
        use tasklog::Error as E;
        let detail = e.to_string();
        match e {
            E::NotFound { id } => Problem::new(StatusCode::NOT_FOUND, "not_found", detail).task(id),
            E::AlreadyExists { id } => {
                Problem::new(StatusCode::CONFLICT, "already_exists", detail).task(id)
            }
            E::InvalidTransition { id, .. } => {
                Problem::new(StatusCode::CONFLICT, "invalid_transition", detail).task(id)
            }
            E::Conflict { id, .. } => {
                Problem::new(StatusCode::PRECONDITION_FAILED, "version_mismatch", detail).task(id)
            }
            E::LeaseMismatch { id, .. } => {
                Problem::new(StatusCode::CONFLICT, "lease_lost", detail).task(id)
            }
            E::Throttled {
                id, retry_after_ms, ..
            } => {
                let mut p =
                    Problem::new(StatusCode::TOO_MANY_REQUESTS, "throttled", detail).task(id);
                // Whole seconds, rounded up: never sooner than the limit allows.
                p.retry_after_secs = retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
                p
            }
            E::InvalidInput { at, .. } => {
                let p = Problem::bad_request("invalid_input", detail);
                match at {
                    Some(at) => p.at(at),
                    None => p,
                }
            }
            E::InvalidDocument {
                problems, total, ..
            } => {
                let mut p = Problem::bad_request(
                    "invalid_document",
                    format!("{total} problem(s) in the document"),
                );
                p.problems = problems;
                p
            }
            E::TooLarge { .. } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail),
            E::Poisoned { .. } => Problem::unavailable("poisoned", detail, 30),
            E::Closed => Problem::unavailable("shutting_down", detail, 5),
            E::ReadOnly => Problem::new(StatusCode::METHOD_NOT_ALLOWED, "read_only", detail),
            E::Codec { .. } => Problem::bad_request("invalid_input", detail),
            _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", detail),
        }
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, Problem>;
