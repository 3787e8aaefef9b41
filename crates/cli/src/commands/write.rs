//! Commands that change one task: submit, start, progress, checkpoint, output, complete, fail,
//! cancel, retry.

use std::io::Write;

use tasklog::{NewTask, Store, Task};

use super::{Ctx, close};
use crate::args::SubmitArgs;

/// `submit`: prints the new task's id alone on a line.
pub fn submit(ctx: &Ctx, out: &mut dyn Write, a: SubmitArgs) -> anyhow::Result<()> {
    let mut new = NewTask::new(a.title).description(a.description);
    if let Some(id) = a.id {
        new = new.id(id);
    }
    if let Some(r) = a.role {
        new = new.role(r);
    }
    if let Some(p) = a.provider {
        new = new.provider(p);
    }
    if let Some(m) = a.model {
        new = new.model(m);
    }
    for t in a.tags {
        new = new.tag(t);
    }
    for (k, v) in a.meta {
        new = new.meta(k, v);
    }
    if let Some(r) = a.request_id {
        new = new.request_id(r);
    }
    let store = ctx.open_write()?;
    let task = store.submit(new);
    close(store)?;
    writeln!(out, "{}", task?.id)?;
    Ok(())
}

/// A command that changes one task and prints `<id>: <state> ...` on success.
pub fn simple(
    ctx: &Ctx,
    out: &mut dyn Write,
    f: impl FnOnce(&Store) -> tasklog::Result<Task>,
) -> anyhow::Result<()> {
    let store = ctx.open_write()?;
    let result = f(&store);
    close(store)?;
    let task = result?;
    writeln!(
        out,
        "{}: {} ({}%, attempt {}, version {})",
        task.id, task.state, task.progress.percent, task.attempt, task.version
    )?;
    Ok(())
}
