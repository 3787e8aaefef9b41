//! Read commands: get, list, history, stats. Directly they open the store read-only, so they
//! work while another process holds the write lock, and never create a store; through a server
//! they ask it. Both paths print through the same renderers.

use std::io::Write;

use serde::Deserialize;
use serde_json::Value;
use tasklog::Task;
use tasklog::store::{Filter, Query, SortKey};

use super::Ctx;
use crate::args::{FilterArgs, ListArgs, SortArg};
use crate::client::{self, Remote};
use crate::output::{self, HistoryRow, StatsView};

/// The largest page asked of a server (its default page limit); longer listings follow the
/// cursor.
const PAGE_MAX: usize = 1_000;

/// `get ID [--json]`.
pub fn get(ctx: &Ctx, out: &mut dyn Write, id: &str, json: bool) -> anyhow::Result<()> {
    let task: Task = match &ctx.remote {
        Some(remote) => remote.get(&format!("/v1/tasks/{}", client::segment(id)), &Vec::new())?,
        None => ctx.open_read()?.get(id)?,
    };
    if json {
        output::json(out, &task)
    } else {
        Ok(output::task_block(out, &task)?)
    }
}

/// The library filter for the CLI's filter flags.
pub fn filter_of(a: &FilterArgs) -> Filter {
    Filter {
        states: a.states.clone(),
        role: a.role.clone(),
        provider: a.provider.clone(),
        model: a.model.clone(),
        tags: a.tags.clone(),
        metadata: a.meta.clone(),
        text: a.search.clone(),
        created_since: a.since,
        created_until: a.until,
        ..Filter::default()
    }
}

/// The query parameters of `GET /v1/tasks` (and `/v1/tasks/count`, `/v1/export`) for the
/// CLI's filter flags (docs/api.md).
pub fn filter_query(a: &FilterArgs) -> client::Query {
    let mut q = client::Query::new();
    if !a.states.is_empty() {
        let states: Vec<&str> = a.states.iter().map(|s| s.as_str()).collect();
        q.push(("states", states.join(",")));
    }
    let single = [
        ("roles", &a.role),
        ("providers", &a.provider),
        ("models", &a.model),
        ("q", &a.search),
    ];
    for (k, v) in single {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    for t in &a.tags {
        q.push(("tag", t.clone()));
    }
    for (k, v) in &a.meta {
        // The CLI's rule: a value is JSON when it parses, else a string; a string goes as
        // its text, anything else as its JSON.
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        q.push(("meta", format!("{k}={text}")));
    }
    if let Some(t) = a.since {
        q.push(("created_since", t.to_rfc3339()));
    }
    if let Some(t) = a.until {
        q.push(("created_until", t.to_rfc3339()));
    }
    q
}

/// `GET /v1/tasks`'s answer.
#[derive(Deserialize)]
struct Page {
    tasks: Vec<Task>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Every task of a listing from a server, following the cursor page by page.
fn list_remote(remote: &Remote, a: &ListArgs) -> anyhow::Result<Vec<Task>> {
    let mut base = filter_query(&a.filter);
    base.push((
        "sort",
        match a.sort {
            SortArg::Created => "created",
            SortArg::Updated => "updated",
        }
        .to_string(),
    ));
    base.push(("order", if a.desc { "desc" } else { "asc" }.to_string()));
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = a.limit.map_or(PAGE_MAX, |l| l.saturating_sub(tasks.len()));
        if wanted == 0 {
            break;
        }
        let mut q = base.clone();
        q.push(("limit", wanted.min(PAGE_MAX).to_string()));
        match &cursor {
            Some(c) => q.push(("cursor", c.clone())),
            None if a.offset > 0 => q.push(("offset", a.offset.to_string())),
            None => {}
        }
        let page: Page = remote.get("/v1/tasks", &q)?;
        let got = page.tasks.len();
        tasks.extend(page.tasks);
        match page.next_cursor {
            Some(c) if got > 0 => cursor = Some(c),
            _ => break,
        }
    }
    Ok(tasks)
}

/// `list [filters] [--sort] [--desc] [--limit] [--offset] [--json]`.
pub fn list(ctx: &Ctx, out: &mut dyn Write, a: &ListArgs) -> anyhow::Result<()> {
    let tasks = match &ctx.remote {
        Some(remote) => list_remote(remote, a)?,
        None => {
            let store = ctx.open_read()?;
            let query = Query {
                filter: filter_of(&a.filter),
                sort: match a.sort {
                    SortArg::Created => SortKey::Created,
                    SortArg::Updated => SortKey::Updated,
                },
                descending: a.desc,
                limit: a.limit,
                offset: a.offset,
                ..Query::default()
            };
            store.list(&query)?.tasks
        }
    };
    if a.json {
        output::json(out, &tasks)
    } else if tasks.is_empty() {
        ctx.ui.note("no tasks match");
        Ok(())
    } else {
        Ok(output::task_table(out, &tasks)?)
    }
}

/// `history ID [--json]`.
pub fn history(ctx: &Ctx, out: &mut dyn Write, id: &str, json: bool) -> anyhow::Result<()> {
    let events: Value = match &ctx.remote {
        Some(remote) => {
            let answer: Value = remote.get(
                &format!("/v1/tasks/{}/history", client::segment(id)),
                &Vec::new(),
            )?;
            // An array of events, or an object holding one under `events`.
            match answer {
                Value::Object(mut m) if m.contains_key("events") => {
                    m.remove("events").unwrap_or_default()
                }
                other => other,
            }
        }
        None => serde_json::to_value(ctx.open_read()?.history(id)?)?,
    };
    if json {
        output::json(out, &events)
    } else {
        let rows: Vec<HistoryRow> = serde_json::from_value(events)?;
        output::history_table(out, &rows)?;
        if rows.windows(2).any(|w| w[1].lsn > w[0].lsn + 1) {
            // On stderr, like every note: the table on stdout stays the same for scripts.
            ctx.ui.note(
                "LSNs skip numbers: they count every record of the log, including other tasks' events and the \"session closed\" record each clean close writes; no event is missing",
            );
        }
        Ok(())
    }
}

/// `stats [--by KEY] [--json]`.
pub fn stats(ctx: &Ctx, out: &mut dyn Write, by: &[String], json: bool) -> anyhow::Result<()> {
    let value: Value = match &ctx.remote {
        Some(remote) => {
            let mut q = client::Query::new();
            for key in by {
                q.push(("by", key.clone()));
            }
            remote.get("/v1/stats", &q)?
        }
        None => {
            let store = ctx.open_read()?;
            let keys: Vec<&str> = by.iter().map(String::as_str).collect();
            let stats = store.stats_by(&keys)?;
            // The worker runtime's figures, computed from the tasks it owns.
            let runtime = tasklog::runtime::health_from_store(&store)?;
            // Extends the documented shape (`total`, `by_state`, ...) with a `runtime` object.
            let mut value = serde_json::to_value(&stats)?;
            // And with the schedule figures (`scheduled`, `one_time`, `total_runs`, ...).
            let schedules = tasklog::runtime::schedule::stats(&store)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("runtime".into(), serde_json::to_value(&runtime)?);
                if let Value::Object(extra) = serde_json::to_value(&schedules)? {
                    obj.extend(extra);
                }
            }
            value
        }
    };
    if json {
        output::json(out, &value)
    } else {
        let view: StatsView = serde_json::from_value(value)?;
        Ok(output::stats_block(out, &view)?)
    }
}
