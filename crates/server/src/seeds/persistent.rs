//! Seed 001's filtered listing, `GET /api/tasks/persistent`: states, roles and providers
//! (comma-separated, any of), text search, a creation-time range and a page.
use axum::extract::State;
use serde::Serialize;
use tasklog::store::{Filter, Query};
use tasklog::task::Timestamp;
use tasklog::{Task, TaskState};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::QueryParams;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(persistent))
}

/// `GET /api/tasks/persistent` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersistentTasks {
    /// The page of tasks, oldest first.
    pub tasks: Vec<Task>,
    /// Tasks matching the filters (all pages).
    pub total: usize,
    /// The page size used.
    pub limit: usize,
    /// The offset used.
    pub offset: usize,
}

/// Default page size of `/api/tasks/persistent`.
pub const PERSISTENT_LIMIT_DEFAULT: usize = 100;

fn csv_list(q: &QueryParams, name: &str) -> ApiResult<Vec<String>> {
    Ok(q.string(name)?
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// A time parameter: an RFC 3339 date-time, as the document says (the library's parser also
/// takes dates and epoch seconds, which these parameters do not).
fn time_param(q: &QueryParams, name: &str) -> ApiResult<Option<Timestamp>> {
    let Some(v) = q.string(name)? else {
        return Ok(None);
    };
    let bad = |why: String| {
        Problem::bad_request("bad_request", format!("query parameter {name:?}: {why}")).at(name)
    };
    if !is_rfc3339(&v) {
        return Err(bad(format!(
            "{v:?} is not an RFC 3339 date-time (e.g. 2024-01-31T12:00:00Z)"
        )));
    }
    Timestamp::parse(&v).map(Some).map_err(bad)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, the shape of an RFC 3339 date-time.
fn is_rfc3339(v: &str) -> bool {
    let b = v.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3) && at(i + 3, b":") && digits(i + 4..i + 6) && i + 6 == b.len()
        }
        _ => false,
    }
}

/// The state names `states` takes: tasklog's and the replaced systems' spellings (the
/// `states` parameter's pattern lists the same).
pub const STATE_SPELLINGS: [(&str, TaskState); 19] = [
    ("pending", TaskState::Pending),
    ("queued", TaskState::Pending),
    ("waiting", TaskState::Pending),
    ("running", TaskState::Running),
    ("processing", TaskState::Running),
    ("in_progress", TaskState::Running),
    ("started", TaskState::Running),
    ("completed", TaskState::Completed),
    ("complete", TaskState::Completed),
    ("done", TaskState::Completed),
    ("succeeded", TaskState::Completed),
    ("success", TaskState::Completed),
    ("failed", TaskState::Failed),
    ("error", TaskState::Failed),
    ("errored", TaskState::Failed),
    ("failure", TaskState::Failed),
    ("cancelled", TaskState::Cancelled),
    ("canceled", TaskState::Cancelled),
    ("aborted", TaskState::Cancelled),
];

/// The listing's filter, and the role and provider sets when more than one was asked for
/// (the store's filter takes one of each; several are matched here).
struct Wanted {
    filter: Filter,
    roles: Vec<String>,
    providers: Vec<String>,
}

fn wanted(q: &QueryParams) -> ApiResult<Wanted> {
    let mut states = Vec::new();
    for s in q
        .string("states")?
        .filter(|v| !v.is_empty())
        .iter()
        .flat_map(|v| v.split(','))
    {
        let state = STATE_SPELLINGS
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, state)| *state)
            .ok_or_else(|| {
                Problem::bad_request(
                    "bad_request",
                    format!("query parameter \"states\": unknown state {s:?} (expected a comma-separated list of: {})", STATE_SPELLINGS.map(|(n, _)| n).join(", ")),
                )
                .at("states")
            })?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    let roles = csv_list(q, "roles")?;
    let providers = csv_list(q, "providers")?;
    let mut filter = Filter {
        states,
        text: q.string("search")?.filter(|s| !s.is_empty()),
        created_since: time_param(q, "date_from")?,
        ..Filter::default()
    };
    // `date_to` is inclusive in the seed's example (`...T23:59:59Z`); the store's bound is
    // exclusive, so one millisecond is added.
    filter.created_until = time_param(q, "date_to")?.map(|t| t.plus_millis(1));
    if roles.len() == 1 {
        filter.role = roles.first().cloned();
    }
    if providers.len() == 1 {
        filter.provider = providers.first().cloned();
    }
    Ok(Wanted {
        filter,
        roles,
        providers,
    })
}

/// Every task, filtered: `states`, `roles`, `providers` (comma-separated; any of), `search`
/// (in the title or description, case-insensitive), `date_from`/`date_to` (creation time,
/// inclusive), `limit` (default 100, at most the server's page limit) and `offset`.
#[utoipa::path(
    get,
    path = "/api/tasks/persistent",
    operation_id = "compat_persistent_tasks",
    tag = "compat",
    params(
        ("states" = Option<String>, Query, pattern = r"^((pending|queued|waiting|running|processing|in_progress|started|completed|complete|done|succeeded|success|failed|error|errored|failure|cancelled|canceled|aborted)(,(pending|queued|waiting|running|processing|in_progress|started|completed|complete|done|succeeded|success|failed|error|errored|failure|cancelled|canceled|aborted))*)?$", description = "Comma-separated states, any of (the seed's spellings such as queued and processing accepted; empty: any state)"),
        ("roles" = Option<String>, Query, description = "Comma-separated roles"),
        ("providers" = Option<String>, Query, description = "Comma-separated providers"),
        ("search" = Option<String>, Query, description = "Text in the title or description"),
        ("date_from" = inline(Option<Timestamp>), Query, description = "Created at or after (RFC 3339)"),
        ("date_to" = inline(Option<Timestamp>), Query, description = "Created at or before (RFC 3339)"),
        ("limit" = Option<u64>, Query, minimum = 0, maximum = 1000, description = "Page size (default 100, at most the server's page limit: 1,000 unless configured)"),
        ("offset" = Option<u64>, Query, minimum = 0, maximum = 9_223_372_036_854_775_807_u64, description = "Matches to skip"),
    ),
    responses(
        (status = 200, description = "The page", body = PersistentTasks),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn persistent(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<PersistentTasks>> {
    q.allow(&[
        "states",
        "roles",
        "providers",
        "search",
        "date_from",
        "date_to",
        "limit",
        "offset",
    ])?;
    let max = state.options().max_page_size;
    let limit = q
        .whole("limit")?
        .unwrap_or(PERSISTENT_LIMIT_DEFAULT.min(max));
    if limit > max {
        return Err(Problem::bad_request(
            "bad_request",
            format!("query parameter \"limit\": at most {max} (got {limit})"),
        )
        .at("limit"));
    }
    let offset = q.whole("offset")?.unwrap_or(0);
    let w = wanted(&q)?;
    let (tasks, total) = super::read(&state, move |store| {
        if w.roles.len() <= 1 && w.providers.len() <= 1 {
            let total = store.count(&w.filter)?;
            let query = Query {
                filter: w.filter,
                limit: Some(limit),
                offset,
                ..Query::default()
            };
            return Ok((store.list(&query)?.tasks, total));
        }
        let query = Query {
            filter: w.filter,
            ..Query::default()
        };
        let matching: Vec<Task> = store
            .list(&query)?
            .tasks
            .into_iter()
            .filter(|t| w.roles.is_empty() || t.role.as_ref().is_some_and(|r| w.roles.contains(r)))
            .filter(|t| {
                w.providers.is_empty()
                    || t.provider.as_ref().is_some_and(|p| w.providers.contains(p))
            })
            .collect();
        let total = matching.len();
        Ok((
            matching.into_iter().skip(offset).take(limit).collect(),
            total,
        ))
    })
    .await?;
    Ok(axum::Json(PersistentTasks {
        tasks,
        total,
        limit,
        offset,
    }))
}
