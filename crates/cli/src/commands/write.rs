//! Commands that change one task: submit, start, progress, checkpoint, output, complete, fail,
//! cancel, retry. Directly (the store opened as a one-shot writer) or through a server.

use std::io::Write;

use serde_json::{Map, Value, json};
use tasklog::store::Mutation;
use tasklog::task::OutputKind;
use tasklog::{NewTask, Store, Task};

use super::{Ctx, close};
use crate::args::SubmitArgs;
use crate::client::Remote;

/// `submit`: prints the new task's id alone on a line.
pub fn submit(ctx: &Ctx, out: &mut dyn Write, a: SubmitArgs) -> anyhow::Result<()> {
    let task = match &ctx.remote {
        Some(remote) => {
            let mut body = submit_body(&a);
            with_actor(&mut body, ctx);
            remote.post::<Task>("/v1/tasks", &Vec::new(), &body)?
        }
        None => {
            let store = ctx.open_write()?;
            let mut m = Mutation::submit(new_task(a));
            if let Some(actor) = &ctx.actor {
                m = m.actor(actor.clone());
            }
            let task = store.apply(m);
            close(store)?;
            task?
        }
    };
    writeln!(out, "{}", task.id)?;
    Ok(())
}

fn new_task(a: SubmitArgs) -> NewTask {
    let due = run_at(&a);
    let mut new = NewTask::new(a.title).description(a.description);
    if let Some(at) = due {
        new = new.run_at(at);
    }
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
    if let Some(p) = a.priority {
        new = new.priority(p);
    }
    new
}

/// Adds `--actor` to a request body (every change body takes `actor`).
fn with_actor(body: &mut Value, ctx: &Ctx) {
    if let (Some(actor), Value::Object(map)) = (&ctx.actor, body) {
        map.insert("actor".into(), json!(actor));
    }
}

/// The body of `POST /v1/tasks`.
fn submit_body(a: &SubmitArgs) -> Value {
    let mut body = Map::new();
    body.insert("title".into(), json!(a.title));
    body.insert("description".into(), json!(a.description));
    let optional = [
        ("id", &a.id),
        ("role", &a.role),
        ("provider", &a.provider),
        ("model", &a.model),
        ("request_id", &a.request_id),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    if !a.tags.is_empty() {
        body.insert("tags".into(), json!(a.tags));
    }
    if let Some(p) = a.priority {
        body.insert("priority".into(), json!(p));
    }
    let mut meta: Map<String, Value> = a.meta.iter().cloned().collect();
    if let Some(at) = run_at(a) {
        // The server takes a delay as this metadata entry, as the library stores it.
        meta.insert(
            tasklog::task::META_NOT_BEFORE.into(),
            Value::from(at.as_millis()),
        );
    }
    if !meta.is_empty() {
        body.insert("metadata".into(), Value::Object(meta));
    }
    Value::Object(body)
}

/// `--run-at`, or now plus `--delay`.
fn run_at(a: &SubmitArgs) -> Option<tasklog::task::Timestamp> {
    a.run_at.or_else(|| {
        a.delay.map(|d| {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            tasklog::task::Timestamp::now().plus_millis(ms)
        })
    })
}

/// A change of one task, as the CLI offers it.
pub enum Change {
    /// pending -> running.
    Start,
    /// Progress of a running task.
    Progress {
        /// 0..=100.
        percent: u8,
        /// The step's name.
        step: Option<String>,
        /// The step's text.
        message: Option<String>,
    },
    /// A checkpoint.
    Checkpoint {
        /// Its name.
        name: String,
        /// Its data.
        data: Value,
    },
    /// An output entry.
    Output {
        /// Its kind.
        kind: OutputKind,
        /// Its content.
        content: String,
    },
    /// running -> completed.
    Complete {
        /// The result.
        result: Option<Value>,
    },
    /// running -> failed.
    Fail {
        /// The error text.
        error: String,
    },
    /// pending or running -> cancelled.
    Cancel {
        /// Why.
        reason: Option<String>,
    },
    /// failed, cancelled or discarded -> pending.
    Retry,
}

impl Change {
    fn apply(self, store: &Store, id: &str, actor: Option<&str>) -> tasklog::Result<Task> {
        use tasklog::store::Change as C;
        let change = match self {
            Change::Start => C::Start {
                owner: None,
                lease_ms: None,
            },
            Change::Progress {
                percent,
                step,
                message,
            } => C::Progress {
                percent,
                step,
                message,
            },
            Change::Checkpoint { name, data } => C::Checkpoint {
                name,
                data,
                progress: None,
            },
            Change::Output { kind, content } => C::Output {
                kind,
                content,
                path: None,
                size_bytes: None,
                mime: None,
            },
            Change::Complete { result } => C::Complete { result },
            Change::Fail { error } => C::Fail { error },
            Change::Cancel { reason } => C::Cancel { reason },
            Change::Retry => C::Retry,
        };
        let mut m = Mutation::new(id, change);
        if let Some(a) = actor {
            m = m.actor(a);
        }
        store.apply(m)
    }

    /// The route (after `/v1/tasks/{id}`) and body of the change (docs/api.md).
    fn request(self) -> (&'static str, Value) {
        match self {
            Change::Start => ("start", json!({})),
            Change::Progress {
                percent,
                step,
                message,
            } => (
                "progress",
                json!({ "percent": percent, "step": step, "message": message }),
            ),
            Change::Checkpoint { name, data } => {
                ("checkpoint", json!({ "name": name, "data": data }))
            }
            Change::Output { kind, content } => (
                "outputs",
                json!({ "kind": kind.as_str(), "content": content }),
            ),
            Change::Complete { result } => ("complete", json!({ "result": result })),
            Change::Fail { error } => ("fail", json!({ "error": error })),
            Change::Cancel { reason } => ("cancel", json!({ "reason": reason })),
            Change::Retry => ("retry", json!({})),
        }
    }

    fn send(self, remote: &Remote, id: &str, ctx: &Ctx) -> anyhow::Result<Task> {
        let (route, mut body) = self.request();
        with_actor(&mut body, ctx);
        let base = format!("/v1/tasks/{}", crate::client::segment(id));
        let answer: Value = remote.post(&format!("{base}/{route}"), &Vec::new(), &body)?;
        // Transitions answer the task; adding an output may answer the output entry only.
        if answer.get("version").is_some() && answer.get("state").is_some() {
            Ok(serde_json::from_value(answer)?)
        } else {
            remote.get(&base, &Vec::new())
        }
    }
}

/// A command that changes one task and prints `<id>: <state> ...` on success.
pub fn change(ctx: &Ctx, out: &mut dyn Write, id: &str, change: Change) -> anyhow::Result<()> {
    let task = match &ctx.remote {
        Some(remote) => change.send(remote, id, ctx)?,
        None => {
            let store = ctx.open_write()?;
            let result = change.apply(&store, id, ctx.actor.as_deref());
            close(store)?;
            result?
        }
    };
    writeln!(
        out,
        "{}: {} ({}%, attempt {}, version {})",
        task.id, task.state, task.progress.percent, task.attempt, task.version
    )?;
    Ok(())
}
