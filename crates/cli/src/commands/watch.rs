//! `watch`: committed events as they happen. Through a server it follows every writer
//! (`GET /v1/events`, Server-Sent Events, resumed with `Last-Event-ID` after a dropped
//! connection). Directly it holds the write lock (the live feed lives in the writer); when
//! another process has the store, it falls back to a read-only catch-up of what is already in
//! the log. It never creates a store and never applies the interrupted-work policy.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tasklog::store::{Committed, InterruptedPolicy, Subscription};
use tasklog::task::Event;
use tasklog::{Error, Store, StoreOptions};

use super::{Ctx, require_store};
use crate::client::Remote;
use crate::exit::{Exit, OPERATION};

/// One line of `watch --json`: the LSN, then the event's own fields.
#[derive(Serialize)]
struct Line<'a> {
    lsn: u64,
    #[serde(flatten)]
    event: &'a Event,
}

const POLL: Duration = Duration::from_millis(200);

/// `watch [--from LSN] [--json]`.
pub fn watch(ctx: &Ctx, out: &mut dyn Write, from: Option<u64>, json: bool) -> anyhow::Result<()> {
    if let Some(remote) = &ctx.remote {
        return watch_remote(remote, out, from, json);
    }
    require_store(&ctx.dir)?;
    let options = StoreOptions::new()
        .preallocate(false)
        .interrupted_policy(InterruptedPolicy::Leave);
    match Store::open_with(&ctx.dir, options) {
        Ok(store) => {
            let from = from.unwrap_or_else(|| store.last_lsn() + 1);
            let mut sub = store.subscribe(from)?;
            // NOTE: tests wait for this line before they try a second writer.
            eprintln!(
                "tasklog: watching {} from LSN {from} (holding the write lock; Ctrl-C to stop)",
                ctx.dir.display()
            );
            loop {
                if let Some(c) = sub.next_timeout(POLL)? {
                    print(out, &c, json)?;
                }
            }
        }
        Err(Error::Locked { .. }) => catch_up(ctx, out, from.unwrap_or(1), json),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("cannot open the store at {}", ctx.dir.display()))),
    }
}

/// Read-only: prints what is in the log from `from` on, then stops.
fn catch_up(ctx: &Ctx, out: &mut dyn Write, from: u64, json: bool) -> anyhow::Result<()> {
    require_store(&ctx.dir)?;
    eprintln!(
        "tasklog: the store at {} is locked by another process; printing the events already committed (from LSN {from}) read-only, without live updates",
        ctx.dir.display()
    );
    let store = Store::open_with(&ctx.dir, StoreOptions::new().read_only(true))?;
    let mut sub: Subscription = store.subscribe(from)?;
    let mut n = 0u64;
    while let Some(c) = sub.next_timeout(Duration::ZERO)? {
        print(out, &c, json)?;
        n += 1;
    }
    eprintln!("tasklog: {n} event(s) printed; the writer holds the live feed");
    Ok(())
}

fn print(out: &mut dyn Write, c: &Committed, json: bool) -> anyhow::Result<()> {
    print_event(out, c.lsn, &c.event, json)
}

fn print_event(out: &mut dyn Write, lsn: u64, event: &Event, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &Line { lsn, event })?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:>8}  {}  {}  {}  {}",
            lsn,
            event.at,
            event.task_id,
            event.kind.name(),
            summary(event)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// How often a dropped event stream is resumed before `watch` gives up.
const RECONNECTS_MAX: u32 = 10;

/// The `data` of an SSE event (docs/api.md).
#[derive(Deserialize)]
struct SseData {
    lsn: u64,
    task_id: String,
    kind: String,
    at: Value,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    details: Value,
}

/// `watch` through a server: `GET /v1/events?from=LSN`, resumed with `Last-Event-ID`.
fn watch_remote(
    remote: &Remote,
    out: &mut dyn Write,
    from: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let start = from.map_or("the next event".to_string(), |f| format!("LSN {f}"));
    eprintln!(
        "tasklog: watching the server at {} from {start} (every writer; Ctrl-C to stop)",
        remote.url()
    );
    let mut last: Option<u64> = None;
    let mut failures = 0;
    let mut connected = false;
    loop {
        let headers: Vec<(&str, String)> = match last {
            Some(lsn) => vec![("Last-Event-ID", lsn.to_string())],
            None => Vec::new(),
        };
        // Without `from` the server starts with the next event; resuming, `Last-Event-ID`
        // (which wins over `from`) continues after the last event printed.
        let query = match from {
            Some(f) if last.is_none() => vec![("from", f.to_string())],
            _ => Vec::new(),
        };
        match remote.get_stream("/v1/events", &query, &headers) {
            Ok(mut resp) => {
                connected = true;
                let reader = BufReader::new(resp.body_mut().as_reader());
                let before = last;
                follow(reader, out, json, &mut last)?;
                if last != before {
                    failures = 0;
                }
            }
            // The first connection's error (a bad token, no such route) is the answer.
            Err(e) if !connected => return Err(e),
            Err(e) => tracing::debug!(error = %e, "event stream: reconnect failed"),
        }
        failures += 1;
        if failures > RECONNECTS_MAX {
            return Err(Exit::new(
                OPERATION,
                format!("lost the event stream of the server at {}", remote.url()),
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prints the events of one SSE connection until it ends; `last` follows the LSN printed.
fn follow(
    reader: impl BufRead,
    out: &mut dyn Write,
    json: bool,
    last: &mut Option<u64>,
) -> anyhow::Result<()> {
    let mut data = String::new();
    let mut kind = String::new();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            if kind == "problem" {
                // The server ended the stream with a problem object (e.g. the LSN asked for
                // was compacted away).
                let detail = serde_json::from_str::<Value>(&data)
                    .ok()
                    .and_then(|p| p["detail"].as_str().map(str::to_string))
                    .unwrap_or_else(|| data.clone());
                return Err(Exit::new(OPERATION, detail).into());
            }
            if !data.is_empty() {
                let lsn = print_sse(out, &data, json)?;
                if lsn.is_some() {
                    *last = lsn;
                }
            }
            data.clear();
            kind.clear();
            continue;
        }
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim().to_string();
        }
        if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
        // `id:`, `event:`, `retry:` and comments (`:`) carry nothing `data` does not.
    }
    Ok(())
}

/// Prints one SSE event as the direct path prints a committed event; returns its LSN.
fn print_sse(out: &mut dyn Write, data: &str, json: bool) -> anyhow::Result<Option<u64>> {
    let Ok(d) = serde_json::from_str::<SseData>(data) else {
        tracing::debug!(data, "event stream: unreadable event skipped");
        return Ok(None);
    };
    // The event as the store serializes it: task_id, at, actor, kind, then its fields.
    let mut m = Map::new();
    m.insert("task_id".into(), Value::String(d.task_id.clone()));
    m.insert("at".into(), d.at.clone());
    if let Some(a) = &d.actor {
        m.insert("actor".into(), Value::String(a.clone()));
    }
    m.insert("kind".into(), Value::String(d.kind.clone()));
    if let Value::Object(details) = &d.details {
        for (k, v) in details {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    match serde_json::from_value::<Event>(Value::Object(m.clone())) {
        Ok(event) => print_event(out, d.lsn, &event, json)?,
        Err(_) if json => {
            let mut line = Map::new();
            line.insert("lsn".into(), Value::from(d.lsn));
            line.extend(m);
            serde_json::to_writer(&mut *out, &Value::Object(line))?;
            writeln!(out)?;
            out.flush()?;
        }
        Err(_) => {
            writeln!(
                out,
                "{:>8}  {}  {}  {}  {}",
                d.lsn,
                d.at.as_str().unwrap_or_default(),
                d.task_id,
                d.kind,
                crate::output::clip(&d.details.to_string(), 100)
            )?;
            out.flush()?;
        }
    }
    Ok(Some(d.lsn))
}

/// The event's fields in one short line.
fn summary(e: &Event) -> String {
    match serde_json::to_value(&e.kind) {
        Ok(Value::Object(mut m)) => {
            m.remove("kind");
            m.retain(|_, v| !v.is_null());
            crate::output::clip(&Value::Object(m).to_string(), 100)
        }
        _ => String::new(),
    }
}
