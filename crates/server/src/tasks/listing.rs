//! `GET /v1/tasks` and `GET /v1/tasks/count`: the query string parsed by hand (repeatable
//! `tag` and `meta`, comma-separated lists), every problem named by its parameter.

use axum::extract::State;
use axum::http::Uri;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklog::TaskState;
use tasklog::store::{Cursor, Filter, Query, SortKey};
use tasklog::task::{Task, Timestamp};
use utoipa::{IntoParams, ToSchema};

use super::TAG;
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, query_pairs};
use crate::state::AppState;

/// A page's size when the request names none (or the server's page limit, when smaller).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The filters of a listing or a count. Every parameter given must match (AND).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the parameters; they are parsed by hand"
)]
pub struct FilterParams {
    /// Any of these states, comma-separated (`pending,running`).
    #[param(
        pattern = "^(pending|running|completed|failed|cancelled)(,(pending|running|completed|failed|cancelled))*$"
    )]
    states: Option<String>,
    /// Any of these roles, comma-separated.
    roles: Option<String>,
    /// Any of these providers, comma-separated.
    providers: Option<String>,
    /// Any of these models, comma-separated.
    models: Option<String>,
    /// A tag the task has; repeat for several (all must match).
    #[param(style = Form, explode)]
    tag: Option<Vec<String>>,
    /// `key=value`: a metadata entry (a value also matches a JSON value of the same text);
    /// repeat for several (all must match).
    #[param(style = Form, explode, schema_with = meta_schema)]
    meta: Option<Vec<String>>,
    /// Case-insensitive text in the title or description.
    q: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[param(format = DateTime)]
    created_since: Option<String>,
    /// Created before this time (RFC 3339).
    #[param(format = DateTime)]
    created_until: Option<String>,
    /// Updated at or after this time (RFC 3339).
    #[param(format = DateTime)]
    updated_since: Option<String>,
    /// Updated before this time (RFC 3339).
    #[param(format = DateTime)]
    updated_until: Option<String>,
}

/// The order and page of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the parameters; they are parsed by hand"
)]
pub struct PageParams {
    /// Sort by creation (default) or update time.
    #[param(inline)]
    sort: Option<SortParam>,
    /// Oldest first (`asc`, default) or newest first (`desc`).
    #[param(inline)]
    order: Option<OrderParam>,
    /// At most this many tasks (default 100, at most the server's page limit, 1,000 unless
    /// configured).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u64>,
    /// Skip this many matches first.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
    /// Continue after the previous page (its `next_cursor`), with the same filters and order.
    #[param(pattern = "^[+-]?[0-9]+:")]
    cursor: Option<String>,
}

/// `meta`'s schema: repeated `key=value` texts.
fn meta_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .pattern(Some("^[^=]+=")),
        )
        .build()
}

/// Sort key.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortParam {
    /// Creation time.
    Created,
    /// Last update time.
    Updated,
}

/// Order.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderParam {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse {
    /// The tasks, in order.
    pub tasks: Vec<Task>,
    /// Pass as `cursor` to get the next page; null when this page is the last.
    pub next_cursor: Option<String>,
}

/// A count.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountResponse {
    /// How many tasks match.
    pub count: u64,
}

fn bad(name: &str, detail: String) -> Problem {
    Problem::bad_request(
        "invalid_input",
        format!("query parameter `{name}`: {detail}"),
    )
    .at(name)
}

/// Appends a comma-separated list.
fn push_list(into: &mut Vec<String>, value: &str) {
    into.extend(
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string),
    );
}

/// Sets a parameter given at most once.
fn once<T>(slot: &mut Option<T>, name: &str, v: T) -> ApiResult<()> {
    if slot.is_some() {
        return Err(bad(name, "given more than once".into()));
    }
    *slot = Some(v);
    Ok(())
}

/// Reads one filter parameter into `f`; false when `name` is not a filter parameter.
pub(crate) fn filter_param(f: &mut Filter, name: &str, value: &str) -> ApiResult<bool> {
    match name {
        "states" => {
            for s in value.split(',') {
                let st = TaskState::ALL
                    .into_iter()
                    .find(|st| st.as_str() == s)
                    .ok_or_else(|| {
                        bad(
                            name,
                            format!("{s:?} is not a state (pending, running, completed, failed, cancelled or discarded)"),
                        )
                    })?;
                f.states.push(st);
            }
        }
        "roles" => push_list(&mut f.roles, value),
        "providers" => push_list(&mut f.providers, value),
        "models" => push_list(&mut f.models, value),
        "tag" => f.tags.push(value.to_string()),
        "meta" => {
            let (k, v) = value
                .split_once('=')
                .ok_or_else(|| bad(name, format!("{value:?} is not key=value")))?;
            if k.is_empty() {
                return Err(bad(name, format!("{value:?} has an empty key")));
            }
            f.metadata
                .push((k.to_string(), Value::String(v.to_string())));
        }
        "q" => once(&mut f.text, name, value.to_string())?,
        "created_since" => once(&mut f.created_since, name, rfc3339(value, name)?)?,
        "created_until" => once(&mut f.created_until, name, rfc3339(value, name)?)?,
        "updated_since" => once(&mut f.updated_since, name, rfc3339(value, name)?)?,
        "updated_until" => once(&mut f.updated_until, name, rfc3339(value, name)?)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// An RFC 3339 time (`2026-01-31T12:00:00Z`, any offset).
fn rfc3339(value: &str, name: &str) -> ApiResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| Timestamp(t.timestamp_millis()))
        .map_err(|e| bad(name, format!("{value:?} is not an RFC 3339 time ({e})")))
}

fn unknown(name: &str) -> Problem {
    bad(name, "unknown parameter".into())
}

/// The filter of a count's query string.
pub fn parse_filter(uri: &Uri) -> ApiResult<Filter> {
    let mut f = Filter::default();
    for (name, value) in query_pairs(uri) {
        if !filter_param(&mut f, &name, &value)? {
            return Err(unknown(&name));
        }
    }
    Ok(f)
}

/// Reads a cursor (`<ms>:<id>`, the store's text form); a time out of range saturates.
fn decode_cursor(text: &str) -> Option<Cursor> {
    let (ms, id) = text.split_once(':')?;
    let digits = ms.strip_prefix(['+', '-']).unwrap_or(ms);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let at_ms = ms.parse::<i64>().unwrap_or(if ms.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    });
    Some(Cursor {
        at_ms,
        id: id.to_string(),
    })
}

/// The query of a listing's query string, under a page limit of `max_page`.
pub fn parse_query(uri: &Uri, max_page: usize) -> ApiResult<Query> {
    let mut q = Query::default();
    let (mut sort, mut order, mut limit, mut offset, mut cursor) = (None, None, None, None, None);
    for (name, value) in query_pairs(uri) {
        if filter_param(&mut q.filter, &name, &value)? {
            continue;
        }
        match name.as_str() {
            "sort" => {
                let key = match value.as_str() {
                    "created" => SortKey::Created,
                    "updated" => SortKey::Updated,
                    _ => return Err(bad(&name, format!("{value:?} is not created or updated"))),
                };
                once(&mut sort, &name, key)?;
            }
            "order" => {
                let desc = match value.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(bad(&name, format!("{value:?} is not asc or desc"))),
                };
                once(&mut order, &name, desc)?;
            }
            "limit" | "offset" => {
                // An int64 of the document, 0 or more.
                let n = value
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(
                            &name,
                            format!("{value:?} is not a whole number from 0 to 2^63 - 1"),
                        )
                    })?;
                once(
                    if name == "limit" {
                        &mut limit
                    } else {
                        &mut offset
                    },
                    &name,
                    n,
                )?;
            }
            "cursor" => once(&mut cursor, &name, value)?,
            _ => return Err(unknown(&name)),
        }
    }
    q.sort = sort.unwrap_or_default();
    q.descending = order.unwrap_or(false);
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE.min(max_page));
    if limit > max_page {
        return Err(bad(
            "limit",
            format!("{limit} is over the server's page limit of {max_page}"),
        ));
    }
    q.limit = Some(limit);
    q.offset = offset.unwrap_or(0);
    if let Some(text) = cursor {
        let decoded = decode_cursor(&text).ok_or_else(|| {
            bad(
                "cursor",
                "not a cursor (pass the previous page's next_cursor)".into(),
            )
        })?;
        q.after = Some(decoded);
    }
    Ok(q)
}

/// Runs a listing.
pub async fn list(state: AppState, uri: Uri) -> ApiResult<Json<ListResponse>> {
    let q = parse_query(&uri, state.options().max_page_size)?;
    let page = state.run(move |s| s.list(&q)).await?;
    Ok(Json(ListResponse {
        tasks: page.tasks,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// Count tasks.
#[utoipa::path(
    get, path = "/v1/tasks/count", tag = TAG, operation_id = "count_tasks",
    params(FilterParams),
    responses(
        (status = 200, description = "How many tasks match", body = CountResponse),
        (status = 400, description = "Invalid query parameter (named in `at`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn count(State(state): State<AppState>, uri: Uri) -> ApiResult<Json<CountResponse>> {
    let f = parse_filter(&uri)?;
    let n = state.run(move |s| s.count(&f)).await?;
    Ok(Json(CountResponse { count: n as u64 }))
}
