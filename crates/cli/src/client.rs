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
/// Most redirects (307/308 from a JetStream server that is not the writer) followed for one
/// request: two servers pointing at each other during a takeover must not loop forever.
const REDIRECTS_MAX: u32 = 5;
/// Most 503 answers (a server that lost or has not yet won the write lease) retried for one
/// request, and the longest wait honoured from one `Retry-After`.
const UNAVAILABLE_RETRIES_MAX: u32 = 10;
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

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
                // Redirects are followed by `send` below: ureq's own would drop the token
                // on a move to another server and cannot replay a request body.
                .max_redirects(0)
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

    /// Sends a request built by `build` for a full URL, following a 307/308 to another server
    /// (JetStream deployments redirect writes to the lease holder) and retrying a 503 after
    /// its `Retry-After` (a takeover in progress), both bounded; then checks the answer.
    fn send(
        &self,
        path: &str,
        build: impl Fn(&str) -> Result<Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Response<ureq::Body>> {
        let mut url = format!("{}{path}", self.base);
        let (mut redirects, mut retries) = (0, 0);
        loop {
            let result = build(&url);
            match result.as_ref().map(next_step) {
                Ok(Some(Step::Redirect(origin))) if redirects < REDIRECTS_MAX => {
                    tracing::debug!(from = %url, to = %origin, "following the server's redirect");
                    redirects += 1;
                    url = format!("{origin}{path}");
                }
                Ok(Some(Step::Retry(wait))) if retries < UNAVAILABLE_RETRIES_MAX => {
                    tracing::debug!(url = %url, ?wait, "server unavailable; retrying");
                    retries += 1;
                    std::thread::sleep(wait);
                }
                _ => return self.check(path, result),
            }
        }
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
        self.send(path, |url| {
            let mut req = self.auth(agent.get(url));
            for (k, v) in query {
                req = req.query(*k, v);
            }
            req.call()
        })
    }

    /// `GET path` with extra headers, for streams.
    pub fn get_stream(
        &self,
        path: &str,
        query: &Query,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Response<ureq::Body>> {
        self.send(path, |url| {
            let mut req = self.auth(self.stream_agent.get(url));
            for (k, v) in query {
                req = req.query(*k, v);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            req.call()
        })
    }

    /// `POST path?query` with a JSON body, the answer parsed as JSON.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        body: &Value,
    ) -> anyhow::Result<T> {
        read_json(self.send(path, |url| {
            let mut req = self.auth(self.agent.post(url));
            for (k, v) in query {
                req = req.query(*k, v);
            }
            req.send_json(body)
        })?)
    }

    /// `DELETE path`, the answer parsed as JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        read_json(self.send(path, |url| self.auth(self.agent.delete(url)).call())?)
    }

    /// `POST path?query` with raw JSON bytes as the body.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        body: &[u8],
    ) -> anyhow::Result<T> {
        read_json(self.send(path, |url| {
            let mut req = self
                .auth(self.agent.post(url))
                .header("Content-Type", "application/json");
            for (k, v) in query {
                req = req.query(*k, v);
            }
            req.send(body)
        })?)
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

/// What to do about a 307/308 or 503 answer.
#[derive(Debug, PartialEq)]
enum Step {
    /// Send the request again to the server at this origin.
    Redirect(String),
    /// Send it again to the same URL after this wait.
    Retry(Duration),
}

/// The next step for an answer: for a redirect, the origin (`scheme://host:port`) of its
/// absolute `Location`, to which the same path and query are sent again (every server of a
/// deployment serves the same API); for a 503, its `Retry-After` in seconds, capped. `None`
/// when the answer says neither (a 503 without `Retry-After` is an outage: reported).
fn next_step(resp: &Response<ureq::Body>) -> Option<Step> {
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
    match resp.status().as_u16() {
        307 | 308 => origin_of(header("Location")?).map(Step::Redirect),
        503 => {
            let seconds: u64 = header("Retry-After")?.trim().parse().ok()?;
            Some(Step::Retry(
                Duration::from_secs(seconds).min(RETRY_AFTER_MAX),
            ))
        }
        _ => None,
    }
}

/// `scheme://authority` of an absolute http(s) URL; `None` for anything else.
fn origin_of(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return None;
    }
    let scheme_len = location.len() - rest.len();
    Some(format!("{}{authority}", &location[..scheme_len]))
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
    fn redirects_keep_only_the_origin_of_an_absolute_location() {
        assert_eq!(
            origin_of("http://10.0.0.2:7000/v1/tasks?x=1").as_deref(),
            Some("http://10.0.0.2:7000")
        );
        assert_eq!(origin_of("https://h").as_deref(), Some("https://h"));
        assert_eq!(origin_of("/v1/tasks"), None);
        assert_eq!(origin_of("http:///v1"), None);
        assert_eq!(origin_of("ftp://h/"), None);
    }

    /// A one-shot HTTP server answering each connection with the next of `answers`; returns
    /// its base URL and the request lines it saw.
    fn fake_server(answers: Vec<String>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let n = u32::try_from(answers.len()).unwrap();
        let mut answers = answers.into_iter();
        fake_server_at(n, move |_| answers.next().unwrap())
    }

    /// `fake_server` with `n` answers made by `answer` from the server's own base URL.
    fn fake_server_at(
        n: u32,
        mut answer: impl FnMut(&str) -> String,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let answers: Vec<String> = (0..n).map(|_| answer(&base)).collect();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = Vec::new();
                let mut content_length = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        content_length = v.trim().parse().unwrap();
                    }
                    head.push(line.trim().to_string());
                }
                let mut body = vec![0; content_length];
                reader.read_exact(&mut body).unwrap();
                let auth = head.iter().any(|h| {
                    h.to_ascii_lowercase()
                        .starts_with("authorization: bearer t")
                });
                seen.push(format!(
                    "{} auth={auth} body={}",
                    head[0],
                    // ureq pretty-prints JSON bodies: compare without whitespace.
                    String::from_utf8_lossy(&body)
                        .split_whitespace()
                        .collect::<String>()
                ));
                let mut stream = reader.into_inner();
                stream.write_all(answer.as_bytes()).unwrap();
                stream.flush().unwrap();
            }
            seen
        });
        (base, handle)
    }

    #[test]
    fn a_post_follows_the_redirect_to_the_writer_and_retries_while_it_takes_over() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}";
        let unavailable = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (writer, writer_seen) = fake_server(vec![unavailable.into(), ok.into()]);
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {writer}/v1/tasks\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (follower, follower_seen) = fake_server(vec![redirect]);
        let remote = Remote::new(&follower, Some("t".into()));
        let query: Query = vec![("wait", "1".into())];
        let answer: Value = remote
            .post("/v1/tasks", &query, &serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(answer, serde_json::json!({"ok": true}));
        let follower_seen = follower_seen.join().unwrap();
        let writer_seen = writer_seen.join().unwrap();
        let expected = r#"POST /v1/tasks?wait=1 HTTP/1.1 auth=true body={"a":1}"#;
        assert_eq!(follower_seen, vec![expected]);
        // The token and the body go to the writer too, and the query is not doubled.
        assert_eq!(writer_seen, vec![expected, expected]);
    }

    #[test]
    fn a_503_without_retry_after_is_reported() {
        let down = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nContent-Length: 44\r\nConnection: close\r\n\r\n{\"status\":503,\"detail\":\"no writer: waiting\"}";
        let (base, seen) = fake_server(vec![down.into()]);
        let e = Remote::new(&base, None)
            .delete::<Value>("/v1/tasks/x")
            .unwrap_err();
        assert!(e.to_string().contains("no writer"), "{e}");
        assert_eq!(seen.join().unwrap().len(), 1);
    }

    #[test]
    fn redirects_and_retries_are_bounded() {
        // A server redirecting to itself: followed REDIRECTS_MAX times, then reported.
        let (base, handle) = fake_server_at(REDIRECTS_MAX + 1, |base| {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}/v1/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        });
        let e = Remote::new(&base, None)
            .get::<Value>("/v1/x", &vec![])
            .unwrap_err();
        assert!(e.to_string().contains("307"), "{e}");
        assert_eq!(
            handle.join().unwrap().len(),
            usize::try_from(REDIRECTS_MAX + 1).unwrap()
        );
        let unavailable = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (base, handle) = fake_server_at(UNAVAILABLE_RETRIES_MAX + 1, |_| unavailable.into());
        let e = Remote::new(&base, None)
            .get::<Value>("/v1/x", &vec![])
            .unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
        assert_eq!(
            handle.join().unwrap().len(),
            usize::try_from(UNAVAILABLE_RETRIES_MAX + 1).unwrap()
        );
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(segment("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
