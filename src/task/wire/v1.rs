//! Persisted events, version 1. FROZEN: never reorder, remove or change fields or variants;
//! add variants only at the end. Postcard encodes enum variants by index and structs by order.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::task::{self as d, Timestamp};

/// A JSON value stored as its text, because the binary codec cannot carry `serde_json::Value`.
type JsonText = String;

#[derive(Serialize, Deserialize)]
pub struct Event {
    pub task_id: String,
    pub at_ms: i64,
    pub actor: Option<String>,
    pub kind: EventKind,
}

#[derive(Serialize, Deserialize)]
pub enum EventKind {
    Created {
        title: String,
        description: String,
        role: Option<String>,
        provider: Option<String>,
        model: Option<String>,
        tags: Vec<String>,
        metadata: Vec<(String, JsonText)>,
        priority: u8,
        request_id: Option<String>,
    },
    Updated {
        title: Option<String>,
        description: Option<String>,
        role: Option<String>,
        provider: Option<String>,
        model: Option<String>,
        priority: Option<u8>,
        add_tags: Vec<String>,
        remove_tags: Vec<String>,
        set_metadata: Vec<(String, JsonText)>,
        remove_metadata: Vec<String>,
    },
    Started {
        owner: Option<String>,
        lease_expires_at_ms: Option<i64>,
        session: u64,
    },
    Heartbeat {
        owner: String,
        lease_expires_at_ms: i64,
    },
    Progress {
        percent: u8,
        step: Option<String>,
        message: Option<String>,
    },
    Checkpoint {
        name: String,
        progress: u8,
        data: JsonText,
    },
    Output {
        kind: u8,
        content: String,
        path: Option<String>,
        size_bytes: Option<u64>,
        mime: Option<String>,
    },
    Completed {
        result: Option<JsonText>,
    },
    Failed {
        error: String,
    },
    Cancelled {
        reason: Option<String>,
    },
    Requeued {
        reason: Option<String>,
    },
    Retried,
    Interrupted {
        reason: String,
        to: u8,
    },
    Removed {
        reason: Option<String>,
    },
    Imported {
        task: Box<Task>,
    },
}

#[derive(Serialize, Deserialize)]
pub struct Task {
    pub title: String,
    pub description: String,
    pub role: Option<String>,
    pub state: u8,
    pub progress_percent: u8,
    pub progress_step: Option<String>,
    pub progress_message: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Vec<(String, JsonText)>,
    pub result: Option<JsonText>,
    pub last_error: Option<String>,
    pub error_count: u32,
    pub attempt: u32,
    pub priority: u8,
    pub checkpoint: Option<Checkpoint>,
    pub outputs: Vec<Output>,
}

#[derive(Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub progress: u8,
    pub data: JsonText,
    pub at_ms: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Output {
    pub kind: u8,
    pub content: String,
    pub at_ms: i64,
    pub path: Option<String>,
    pub size_bytes: Option<u64>,
    pub mime: Option<String>,
}

// ----- codes: frozen numbering, independent of the domain enums' order ---------------------

pub fn state_code(s: d::TaskState) -> u8 {
    match s {
        d::TaskState::Pending => 0,
        d::TaskState::Running => 1,
        d::TaskState::Completed => 2,
        d::TaskState::Failed => 3,
        d::TaskState::Cancelled => 4,
    }
}

pub fn state_from_code(c: u8) -> Result<d::TaskState> {
    Ok(match c {
        0 => d::TaskState::Pending,
        1 => d::TaskState::Running,
        2 => d::TaskState::Completed,
        3 => d::TaskState::Failed,
        4 => d::TaskState::Cancelled,
        _ => return Err(codec(format!("unknown state code {c}"))),
    })
}

fn output_code(k: d::OutputKind) -> u8 {
    match k {
        d::OutputKind::Stdout => 0,
        d::OutputKind::Stderr => 1,
        d::OutputKind::Log => 2,
        d::OutputKind::Artifact => 3,
        d::OutputKind::Commit => 4,
    }
}

fn output_from_code(c: u8) -> Result<d::OutputKind> {
    Ok(match c {
        0 => d::OutputKind::Stdout,
        1 => d::OutputKind::Stderr,
        2 => d::OutputKind::Log,
        3 => d::OutputKind::Artifact,
        4 => d::OutputKind::Commit,
        _ => return Err(codec(format!("unknown output kind code {c}"))),
    })
}

fn codec(reason: String) -> Error {
    Error::Codec {
        what: "event (v1)".into(),
        reason,
    }
}

fn json_text(v: &serde_json::Value) -> JsonText {
    v.to_string()
}

fn json_value(t: &str) -> Result<serde_json::Value> {
    serde_json::from_str(t).map_err(|e| codec(format!("stored JSON value does not parse: {e}")))
}

fn meta_to(m: &std::collections::BTreeMap<String, serde_json::Value>) -> Vec<(String, JsonText)> {
    m.iter().map(|(k, v)| (k.clone(), json_text(v))).collect()
}

fn meta_from(
    m: Vec<(String, JsonText)>,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    m.into_iter()
        .map(|(k, v)| Ok((k, json_value(&v)?)))
        .collect()
}

// ----- domain -> wire ----------------------------------------------------------------------

impl From<&d::Event> for Event {
    fn from(e: &d::Event) -> Self {
        Event {
            task_id: e.task_id.clone(),
            at_ms: e.at.0,
            actor: e.actor.clone(),
            kind: EventKind::from(&e.kind),
        }
    }
}

impl From<&d::EventKind> for EventKind {
    fn from(k: &d::EventKind) -> Self {
        use d::EventKind as K;
        match k {
            K::Created {
                title,
                description,
                role,
                provider,
                model,
                tags,
                metadata,
                priority,
                request_id,
            } => EventKind::Created {
                title: title.clone(),
                description: description.clone(),
                role: role.clone(),
                provider: provider.clone(),
                model: model.clone(),
                tags: tags.clone(),
                metadata: meta_to(metadata),
                priority: *priority,
                request_id: request_id.clone(),
            },
            K::Updated(u) => EventKind::Updated {
                title: u.title.clone(),
                description: u.description.clone(),
                role: u.role.clone(),
                provider: u.provider.clone(),
                model: u.model.clone(),
                priority: u.priority,
                add_tags: u.add_tags.clone(),
                remove_tags: u.remove_tags.clone(),
                set_metadata: meta_to(&u.set_metadata),
                remove_metadata: u.remove_metadata.clone(),
            },
            K::Started {
                owner,
                lease_expires_at,
                session,
            } => EventKind::Started {
                owner: owner.clone(),
                lease_expires_at_ms: lease_expires_at.map(|t| t.0),
                session: *session,
            },
            K::Heartbeat {
                owner,
                lease_expires_at,
            } => EventKind::Heartbeat {
                owner: owner.clone(),
                lease_expires_at_ms: lease_expires_at.0,
            },
            K::Progress {
                percent,
                step,
                message,
            } => EventKind::Progress {
                percent: *percent,
                step: step.clone(),
                message: message.clone(),
            },
            K::Checkpoint {
                name,
                progress,
                data,
            } => EventKind::Checkpoint {
                name: name.clone(),
                progress: *progress,
                data: json_text(data),
            },
            K::Output {
                output_kind,
                content,
                path,
                size_bytes,
                mime,
            } => EventKind::Output {
                kind: output_code(*output_kind),
                content: content.clone(),
                path: path.clone(),
                size_bytes: *size_bytes,
                mime: mime.clone(),
            },
            K::Completed { result } => EventKind::Completed {
                result: result.as_ref().map(json_text),
            },
            K::Failed { error } => EventKind::Failed {
                error: error.clone(),
            },
            K::Cancelled { reason } => EventKind::Cancelled {
                reason: reason.clone(),
            },
            K::Requeued { reason } => EventKind::Requeued {
                reason: reason.clone(),
            },
            K::Retried => EventKind::Retried,
            K::Interrupted { reason, to } => EventKind::Interrupted {
                reason: reason.clone(),
                to: state_code(*to),
            },
            K::Removed { reason } => EventKind::Removed {
                reason: reason.clone(),
            },
            K::Imported { task } => EventKind::Imported {
                task: Box::new(Task::from(&**task)),
            },
        }
    }
}

impl From<&d::Task> for Task {
    fn from(t: &d::Task) -> Self {
        Task {
            title: t.title.clone(),
            description: t.description.clone(),
            role: t.role.clone(),
            state: state_code(t.state),
            progress_percent: t.progress.percent,
            progress_step: t.progress.step.clone(),
            progress_message: t.progress.message.clone(),
            created_at_ms: t.created_at.0,
            updated_at_ms: t.updated_at.0,
            started_at_ms: t.started_at.map(|x| x.0),
            completed_at_ms: t.completed_at.map(|x| x.0),
            provider: t.provider.clone(),
            model: t.model.clone(),
            tags: t.tags.clone(),
            metadata: meta_to(&t.metadata),
            result: t.result.as_ref().map(json_text),
            last_error: t.last_error.clone(),
            error_count: t.error_count,
            attempt: t.attempt,
            priority: t.priority,
            checkpoint: t.checkpoint.as_ref().map(|c| Checkpoint {
                name: c.name.clone(),
                progress: c.progress,
                data: json_text(&c.data),
                at_ms: c.at.0,
            }),
            outputs: t
                .outputs
                .iter()
                .map(|o| Output {
                    kind: output_code(o.kind),
                    content: o.content.clone(),
                    at_ms: o.at.0,
                    path: o.path.clone(),
                    size_bytes: o.size_bytes,
                    mime: o.mime.clone(),
                })
                .collect(),
        }
    }
}

// ----- wire -> domain ----------------------------------------------------------------------

impl TryFrom<Event> for d::Event {
    type Error = Error;
    fn try_from(e: Event) -> Result<Self> {
        Ok(d::Event {
            task_id: e.task_id,
            at: Timestamp(e.at_ms),
            actor: e.actor,
            kind: e.kind.try_into()?,
        })
    }
}

impl TryFrom<EventKind> for d::EventKind {
    type Error = Error;
    fn try_from(k: EventKind) -> Result<Self> {
        use d::EventKind as K;
        Ok(match k {
            EventKind::Created {
                title,
                description,
                role,
                provider,
                model,
                tags,
                metadata,
                priority,
                request_id,
            } => K::Created {
                title,
                description,
                role,
                provider,
                model,
                tags,
                metadata: meta_from(metadata)?,
                priority,
                request_id,
            },
            EventKind::Updated {
                title,
                description,
                role,
                provider,
                model,
                priority,
                add_tags,
                remove_tags,
                set_metadata,
                remove_metadata,
            } => K::Updated(d::TaskUpdate {
                title,
                description,
                role,
                provider,
                model,
                priority,
                add_tags,
                remove_tags,
                set_metadata: meta_from(set_metadata)?,
                remove_metadata,
            }),
            EventKind::Started {
                owner,
                lease_expires_at_ms,
                session,
            } => K::Started {
                owner,
                lease_expires_at: lease_expires_at_ms.map(Timestamp),
                session,
            },
            EventKind::Heartbeat {
                owner,
                lease_expires_at_ms,
            } => K::Heartbeat {
                owner,
                lease_expires_at: Timestamp(lease_expires_at_ms),
            },
            EventKind::Progress {
                percent,
                step,
                message,
            } => K::Progress {
                percent,
                step,
                message,
            },
            EventKind::Checkpoint {
                name,
                progress,
                data,
            } => K::Checkpoint {
                name,
                progress,
                data: json_value(&data)?,
            },
            EventKind::Output {
                kind,
                content,
                path,
                size_bytes,
                mime,
            } => K::Output {
                output_kind: output_from_code(kind)?,
                content,
                path,
                size_bytes,
                mime,
            },
            EventKind::Completed { result } => K::Completed {
                result: result.as_deref().map(json_value).transpose()?,
            },
            EventKind::Failed { error } => K::Failed { error },
            EventKind::Cancelled { reason } => K::Cancelled { reason },
            EventKind::Requeued { reason } => K::Requeued { reason },
            EventKind::Retried => K::Retried,
            EventKind::Interrupted { reason, to } => K::Interrupted {
                reason,
                to: state_from_code(to)?,
            },
            EventKind::Removed { reason } => K::Removed { reason },
            EventKind::Imported { task } => K::Imported {
                task: Box::new(task_from(*task)?),
            },
        })
    }
}

fn task_from(t: Task) -> Result<d::Task> {
    Ok(d::Task {
        id: String::new(),
        title: t.title,
        description: t.description,
        role: t.role,
        state: state_from_code(t.state)?,
        progress: d::Progress {
            percent: t.progress_percent,
            step: t.progress_step,
            message: t.progress_message,
        },
        created_at: Timestamp(t.created_at_ms),
        updated_at: Timestamp(t.updated_at_ms),
        started_at: t.started_at_ms.map(Timestamp),
        completed_at: t.completed_at_ms.map(Timestamp),
        provider: t.provider,
        model: t.model,
        tags: t.tags,
        metadata: meta_from(t.metadata)?,
        result: t.result.as_deref().map(json_value).transpose()?,
        last_error: t.last_error,
        error_count: t.error_count,
        attempt: t.attempt,
        priority: t.priority,
        checkpoint: t
            .checkpoint
            .map(|c| -> Result<d::Checkpoint> {
                Ok(d::Checkpoint {
                    name: c.name,
                    progress: c.progress,
                    data: json_value(&c.data)?,
                    at: Timestamp(c.at_ms),
                })
            })
            .transpose()?,
        outputs: t
            .outputs
            .into_iter()
            .map(|o| -> Result<d::Output> {
                Ok(d::Output {
                    kind: output_from_code(o.kind)?,
                    content: o.content,
                    at: Timestamp(o.at_ms),
                    path: o.path,
                    size_bytes: o.size_bytes,
                    mime: o.mime,
                })
            })
            .collect::<Result<_>>()?,
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
    })
}

/// Converts a domain task to its persisted form (used by snapshots).
pub fn task_to_wire(t: &d::Task) -> Task {
    Task::from(t)
}

/// Converts a persisted task back (id, version, lsn, lease and session are set by the caller).
pub fn task_from_wire(t: Task) -> Result<d::Task> {
    task_from(t)
}
