//! Read commands: get, list, history, stats. They open the store read-only, so they work while
//! another process holds the write lock, and never create a store.

use std::io::Write;

use tasklog::store::{Filter, Query, SortKey};

use super::Ctx;
use crate::args::{FilterArgs, ListArgs, SortArg};
use crate::output;

/// `get ID [--json]`.
pub fn get(ctx: &Ctx, out: &mut dyn Write, id: &str, json: bool) -> anyhow::Result<()> {
    let store = ctx.open_read()?;
    let task = store.get(id)?;
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

/// `list [filters] [--sort] [--desc] [--limit] [--offset] [--json]`.
pub fn list(ctx: &Ctx, out: &mut dyn Write, a: &ListArgs) -> anyhow::Result<()> {
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
    let page = store.list(&query)?;
    if a.json {
        output::json(out, &page.tasks)
    } else if page.tasks.is_empty() {
        ctx.ui.note("no tasks match");
        Ok(())
    } else {
        Ok(output::task_table(out, &page.tasks)?)
    }
}

/// `history ID [--json]`.
pub fn history(ctx: &Ctx, out: &mut dyn Write, id: &str, json: bool) -> anyhow::Result<()> {
    let store = ctx.open_read()?;
    let events = store.history(id)?;
    if json {
        output::json(out, &events)
    } else {
        Ok(output::history_table(out, &events)?)
    }
}

/// `stats [--by KEY] [--json]`.
pub fn stats(ctx: &Ctx, out: &mut dyn Write, by: Option<&str>, json: bool) -> anyhow::Result<()> {
    let store = ctx.open_read()?;
    let stats = store.stats(by)?;
    // The worker runtime's figures, computed from the tasks it owns (none: no runtime in use).
    let runtime = tasklog::runtime::health_from_store(&store)?;
    let has_runtime = !runtime.queue_depth.is_empty()
        || runtime.running + (runtime.succeeded + runtime.failed + runtime.cancelled) as usize > 0;
    if json {
        // Extends the documented shape (`total`, `by_state`, ...) with a `runtime` object.
        let mut value = serde_json::to_value(&stats)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("runtime".into(), serde_json::to_value(&runtime)?);
        }
        output::json(out, &value)
    } else {
        output::stats_block(out, &stats)?;
        if has_runtime {
            writeln!(
                out,
                "runtime:\n  queued:     {}\n  running:    {} ({} stuck)\n  finished:   {} succeeded, {} failed, {} cancelled (success rate {:.0} %)\n  retries:    {}\n  run time:   p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms",
                runtime
                    .queue_depth
                    .values()
                    .flat_map(|m| m.values())
                    .sum::<usize>(),
                runtime.running,
                runtime.stuck,
                runtime.succeeded,
                runtime.failed,
                runtime.cancelled,
                runtime.success_rate * 100.0,
                runtime.retries,
                runtime.run_ms_p50,
                runtime.run_ms_p90,
                runtime.run_ms_p99
            )?;
        }
        Ok(())
    }
}
