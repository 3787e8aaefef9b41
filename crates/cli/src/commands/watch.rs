//! `watch`: committed events as they happen. Holds the write lock (the live feed lives in the
//! writer); when another process has the store, it falls back to a read-only catch-up of what
//! is already in the log.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tasklog::store::{Committed, Subscription};
use tasklog::task::Event;
use tasklog::{Error, Store, StoreOptions};

use super::{Ctx, require_store};

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
    match Store::open_with(&ctx.dir, StoreOptions::new().preallocate(false)) {
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
    if json {
        serde_json::to_writer(
            &mut *out,
            &Line {
                lsn: c.lsn,
                event: &c.event,
            },
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:>8}  {}  {}  {}  {}",
            c.lsn,
            c.event.at,
            c.event.task_id,
            c.event.kind.name(),
            summary(&c.event)
        )?;
    }
    out.flush()?;
    Ok(())
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
