//! Client mode: the commands' requests to a `tasklog serve` (routes in docs/api.md), and the
//! mapping of its problem+json answers to the CLI's exit codes and messages, so that a command
//! prints the same thing and exits with the same code through a server as directly.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ureq::Agent;
use ureq::http::Response;

use crate::exit::{CORRUPTION, Exit, OPERATION};

/// Longest wait for an ordinary request (the server's own request bound is 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest JSON answer read (a whole history, a big page of tasks).
const BODY_BYTES_MAX: u64 = 1 << 30;

/// A server the commands talk to.
pub struct Remote {
    base: String,
    token: Option<String>,
    agent: Agent,
    /// For streams (events, exports): no overall deadline.
    stream_agent: Agent,
}

/// A query string: (name, value) pairs; a name may repeat.
pub type Query = Vec<(&'static str, String)>;

/// The fields of a problem+json body the CLI uses.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    problems: Vec<String>,
}

impl Remote {
    /// A client of the server at `url` (`http://host:port`), sending `token` when given.
    pub fn new(url: &str, token: Option<String>) -> Remote {
        let agent = |timeout: Option<Duration>| -> Agent {
            Agent::config_builder()
                .timeout_global(timeout)
                .timeout_connect(Some(Duration::from_secs(5)))
                .http_status_as_error(false)
                .build()
                .into()
        };
        Remote {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent: agent(Some(REQUEST_TIMEOUT)),
            stream_agent: agent(None),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req
    }

    /// `GET path?query`, the answer parsed as JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &Query) -> anyhow::Result<T> {
        let resp = self.get_raw(path, query, false)?;
        read_json(resp)
    }

    /// `GET path?query`, the successful response itself (for streams when `stream`).
    pub fn get_raw(
        &self,
        path: &str,
        query: &Query,
        stream: bool,
    ) -> anyhow::Result<Response<ureq::Body>> {
        let agent = if stream {
            &self.stream_agent
        } else {
            &self.agent
        };
        let mut req = self.auth(agent.get(self.url_of(path)));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        self.check(path, req.call())
    }

    /// `GET path` with extra headers, for streams.
    pub fn get_stream(
        &self,
        path: &str,
        query: &Query,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Response<ureq::Body>> {
        let mut req = self.auth(self.stream_agent.get(self.url_of(path)));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.check(path, req.call())
    }

    /// `POST path?query` with a JSON body, the answer parsed as JSON.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        body: &Value,
    ) -> anyhow::Result<T> {
        let mut req = self.auth(self.agent.post(self.url_of(path)));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        read_json(self.check(path, req.send_json(body))?)
    }

    /// `DELETE path`, the answer parsed as JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = self.auth(self.agent.delete(self.url_of(path)));
        read_json(self.check(path, req.call())?)
    }

    /// `POST path?query` with raw JSON bytes as the body.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        body: &[u8],
    ) -> anyhow::Result<T> {
        let mut req = self
            .auth(self.agent.post(self.url_of(path)))
            .header("Content-Type", "application/json");
        for (k, v) in query {
            req = req.query(*k, v);
        }
        read_json(self.check(path, req.send(body))?)
    }

    /// A 2xx response, or the error its problem+json describes (with the CLI's exit code).
    fn check(
        &self,
        path: &str,
        result: Result<Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Response<ureq::Body>> {
        let mut resp = result.map_err(|e| {
            Exit::new(
                OPERATION,
                format!("cannot reach the server at {}: {e}", self.base),
            )
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        let mut problem: Problem = serde_json::from_str(&text).unwrap_or_default();
        if problem.status == 0 {
            problem.status = status.as_u16();
        }
        tracing::debug!(path, status = problem.status, code = %problem.code, "server refused");
        Err(problem_error(&self.base, path, problem, &text).into())
    }
}

/// The error a command returns for a problem: the server's `detail` is the library error's
/// own message, so it reads as the direct path's.
fn problem_error(base: &str, path: &str, p: Problem, raw: &str) -> Exit {
    let code = match p.code.as_str() {
        "corrupt" | "corruption" => CORRUPTION,
        _ => OPERATION,
    };
    let message = match (p.status, p.code.as_str()) {
        (401, _) => format!(
            "the server at {base} needs a token: pass --token-file FILE or set TASKLOG_TOKEN"
        ),
        (404, "") => format!(
            "the server at {base} does not offer {path} (404); is it an older tasklog serve?"
        ),
        (_, "invalid_document") => format!(
            "{} problem(s) in the document:\n{}",
            p.problems.len(),
            p.problems.join("\n")
        ),
        _ if !p.detail.is_empty() => p.detail,
        _ => format!(
            "the server at {base} answered {} to {path}: {}",
            p.status,
            crate::output::clip(raw.trim(), 200)
        ),
    };
    Exit::new(code, message)
}

/// Reads a JSON answer.
pub fn read_json<T: DeserializeOwned>(mut resp: Response<ureq::Body>) -> anyhow::Result<T> {
    let value = resp
        .body_mut()
        .with_config()
        .limit(BODY_BYTES_MAX)
        .read_json::<T>()
        .map_err(|e| {
            Exit::new(
                OPERATION,
                format!("the server's answer is not what this tasklog expects: {e}"),
            )
        })?;
    Ok(value)
}

/// A path segment, percent-encoded (task ids may hold any character).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_map_to_exit_codes_and_messages() {
        let p = Problem {
            status: 404,
            code: "not_found".into(),
            detail: "task not found: x".into(),
            problems: vec![],
        };
        let e = problem_error("http://h", "/v1/tasks/x", p, "");
        assert_eq!(e.code, OPERATION);
        assert_eq!(e.message.as_deref(), Some("task not found: x"));
        let unauthorized = Problem {
            status: 401,
            ..Problem::default()
        };
        let e = problem_error("http://h", "/v1/tasks", unauthorized, "");
        assert!(e.message.unwrap().contains("TASKLOG_TOKEN"));
        let corrupt = Problem {
            status: 500,
            code: "corrupt".into(),
            ..Problem::default()
        };
        assert_eq!(problem_error("h", "/", corrupt, "").code, CORRUPTION);
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(segment("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
