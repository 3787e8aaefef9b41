//! Persisted events, version 1. FROZEN: never reorder, remove or change fields or variants;
//! add variants only at the end. Postcard encodes enum variants by index and structs by order.
//!
//! The DTOs are generic over their string type: `String` to decode, `&str` to encode without
//! copying the domain's strings (both serialize the same bytes).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::task::{self as d, Timestamp};

/// A JSON value stored as its text, because the binary codec cannot carry `serde_json::Value`.
type JsonText = String;

#[derive(Serialize, Deserialize)]
pub struct Event<S = String> {
    pub task_id: S,
    pub at_ms: i64,
    pub actor: Option<S>,
    pub kind: EventKind<S>,
}

#[derive(Serialize, Deserialize)]
pub enum EventKind<S = String> {
    Created {
        title: S,
        description: S,
        role: Option<S>,
        provider: Option<S>,
        model: Option<S>,
        tags: Vec<S>,
        metadata: Vec<(S, JsonText)>,
        priority: u8,
        request_id: Option<S>,
    },
    Updated {
        title: Option<S>,
        description: Option<S>,
        role: Option<S>,
        provider: Option<S>,
        model: Option<S>,
        priority: Option<u8>,
        add_tags: Vec<S>,
        remove_tags: Vec<S>,
        set_metadata: Vec<(S, JsonText)>,
        remove_metadata: Vec<S>,
    },
    Started {
        owner: Option<S>,
        lease_expires_at_ms: Option<i64>,
        session: u64,
    },
    Heartbeat {
        owner: S,
        lease_expires_at_ms: i64,
    },
    Progress {
        percent: u8,
        step: Option<S>,
        message: Option<S>,
    },
    Checkpoint {
        name: S,
        progress: u8,
        data: JsonText,
    },
    Output {
        kind: u8,
        content: S,
        path: Option<S>,
        size_bytes: Option<u64>,
        mime: Option<S>,
    },
    Completed {
        result: Option<JsonText>,
    },
    Failed {
        error: S,
    },
    Cancelled {
        reason: Option<S>,
    },
    Requeued {
        reason: Option<S>,
    },
    Retried,
    Interrupted {
        reason: S,
        to: u8,
    },
    Removed {
        reason: Option<S>,
    },
    Imported {
        task: Box<Task<S>>,
    },
    Discarded {
        reason: Option<S>,
    },
}

#[derive(Serialize, Deserialize)]
pub struct Task<S = String> {
    pub title: S,
    pub description: S,
    pub role: Option<S>,
    pub state: u8,
    pub progress_percent: u8,
    pub progress_step: Option<S>,
    pub progress_message: Option<S>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub provider: Option<S>,
    pub model: Option<S>,
    pub tags: Vec<S>,
    pub metadata: Vec<(S, JsonText)>,
    pub result: Option<JsonText>,
    pub last_error: Option<S>,
    pub error_count: u32,
    pub attempt: u32,
    pub priority: u8,
    pub checkpoint: Option<Checkpoint<S>>,
    pub outputs: Vec<Output<S>>,
}

#[derive(Serialize, Deserialize)]
pub struct Checkpoint<S = String> {
    pub name: S,
    pub progress: u8,
    pub data: JsonText,
    pub at_ms: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Output<S = String> {
    pub kind: u8,
    pub content: S,
    pub at_ms: i64,
    pub path: Option<S>,
    pub size_bytes: Option<u64>,
    pub mime: Option<S>,
}

// ----- codes: frozen numbering, independent of the domain enums' order ---------------------

pub fn state_code(s: d::TaskState) -> u8 {
    match s {
        d::TaskState::Pending => 0,
        d::TaskState::Running => 1,
        d::TaskState::Completed => 2,
        d::TaskState::Failed => 3,
        d::TaskState::Cancelled => 4,
        d::TaskState::Discarded => 5,
    }
}

pub fn state_from_code(c: u8) -> Result<d::TaskState> {
    Ok(match c {
        0 => d::TaskState::Pending,
        1 => d::TaskState::Running,
        2 => d::TaskState::Completed,
        3 => d::TaskState::Failed,
        4 => d::TaskState::Cancelled,
        5 => d::TaskState::Discarded,
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
        source: None,
    }
}

fn json_text(v: &serde_json::Value) -> JsonText {
    v.to_string()
}

fn json_value(t: &str) -> Result<serde_json::Value> {
    serde_json::from_str(t).map_err(|e| codec(format!("stored JSON value does not parse: {e}")))
}

fn meta_to<'a, S: From<&'a str>>(
    m: &'a std::collections::BTreeMap<String, serde_json::Value>,
) -> Vec<(S, JsonText)> {
    m.iter()
        .map(|(k, v)| (S::from(k.as_str()), json_text(v)))
        .collect()
}

fn meta_from(
    m: Vec<(String, JsonText)>,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    m.into_iter()
        .map(|(k, v)| Ok((k, json_value(&v)?)))
        .collect()
}

// ----- domain -> wire ----------------------------------------------------------------------

impl<'a, S: From<&'a str>> From<&'a d::Event> for Event<S> {
    fn from(e: &'a d::Event) -> Self {
        Event {
            task_id: S::from(e.task_id.as_str()),
            at_ms: e.at.0,
            actor: e.actor.as_deref().map(S::from),
            kind: EventKind::from(&e.kind),
        }
    }
}

impl<'a, S: From<&'a str>> From<&'a d::EventKind> for EventKind<S> {
    fn from(k: &'a d::EventKind) -> Self {
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
                title: S::from(title.as_str()),
                description: S::from(description.as_str()),
                role: role.as_deref().map(S::from),
                provider: provider.as_deref().map(S::from),
                model: model.as_deref().map(S::from),
                tags: tags.iter().map(|x| S::from(x)).collect(),
                metadata: meta_to(metadata),
                priority: *priority,
                request_id: request_id.as_deref().map(S::from),
            },
            K::Updated(u) => EventKind::Updated {
                title: u.title.as_deref().map(S::from),
                description: u.description.as_deref().map(S::from),
                role: u.role.as_deref().map(S::from),
                provider: u.provider.as_deref().map(S::from),
                model: u.model.as_deref().map(S::from),
                priority: u.priority,
                add_tags: u.add_tags.iter().map(|x| S::from(x)).collect(),
                remove_tags: u.remove_tags.iter().map(|x| S::from(x)).collect(),
                set_metadata: meta_to(&u.set_metadata),
                remove_metadata: u.remove_metadata.iter().map(|x| S::from(x)).collect(),
            },
            K::Started {
                owner,
                lease_expires_at,
                session,
            } => EventKind::Started {
                owner: owner.as_deref().map(S::from),
                lease_expires_at_ms: lease_expires_at.map(|t| t.0),
                session: *session,
            },
            K::Heartbeat {
                owner,
                lease_expires_at,
            } => EventKind::Heartbeat {
                owner: S::from(owner.as_str()),
                lease_expires_at_ms: lease_expires_at.0,
            },
            K::Progress {
                percent,
                step,
                message,
            } => EventKind::Progress {
                percent: *percent,
                step: step.as_deref().map(S::from),
                message: message.as_deref().map(S::from),
            },
            K::Checkpoint {
                name,
                progress,
                data,
            } => EventKind::Checkpoint {
                name: S::from(name.as_str()),
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
                content: S::from(content.as_str()),
                path: path.as_deref().map(S::from),
                size_bytes: *size_bytes,
                mime: mime.as_deref().map(S::from),
            },
            K::Completed { result } => EventKind::Completed {
                result: result.as_ref().map(json_text),
            },
            K::Failed { error } => EventKind::Failed {
                error: S::from(error.as_str()),
            },
            K::Cancelled { reason } => EventKind::Cancelled {
                reason: reason.as_deref().map(S::from),
            },
            K::Requeued { reason } => EventKind::Requeued {
                reason: reason.as_deref().map(S::from),
            },
            K::Retried => EventKind::Retried,
            K::Interrupted { reason, to } => EventKind::Interrupted {
                reason: S::from(reason.as_str()),
                to: state_code(*to),
            },
            K::Removed { reason } => EventKind::Removed {
                reason: reason.as_deref().map(S::from),
            },
            K::Imported { task } => EventKind::Imported {
                task: Box::new(Task::from(&**task)),
            },
            K::Discarded { reason } => EventKind::Discarded {
                reason: reason.as_deref().map(S::from),
            },
        }
    }
}

impl<'a, S: From<&'a str>> From<&'a d::Task> for Task<S> {
    fn from(t: &'a d::Task) -> Self {
        Task {
            title: S::from(t.title.as_str()),
            description: S::from(t.description.as_str()),
            role: t.role.as_deref().map(S::from),
            state: state_code(t.state),
            progress_percent: t.progress.percent,
            progress_step: t.progress.step.as_deref().map(S::from),
            progress_message: t.progress.message.as_deref().map(S::from),
            created_at_ms: t.created_at.0,
            updated_at_ms: t.updated_at.0,
            started_at_ms: t.started_at.map(|x| x.0),
            completed_at_ms: t.completed_at.map(|x| x.0),
            provider: t.provider.as_deref().map(S::from),
            model: t.model.as_deref().map(S::from),
            tags: t.tags.iter().map(|x| S::from(x)).collect(),
            metadata: meta_to(&t.metadata),
            result: t.result.as_deref().map(json_text),
            last_error: t.last_error.as_deref().map(S::from),
            error_count: t.error_count,
            attempt: t.attempt,
            priority: t.priority,
            checkpoint: t.checkpoint.as_ref().map(|c| Checkpoint {
                name: S::from(c.name.as_str()),
                progress: c.progress,
                data: json_text(&c.data),
                at_ms: c.at.0,
            }),
            outputs: t
                .outputs
                .iter()
                .map(|o| Output {
                    kind: output_code(o.kind),
                    content: S::from(o.content.as_str()),
                    at_ms: o.at.0,
                    path: o.path.as_deref().map(S::from),
                    size_bytes: o.size_bytes,
                    mime: o.mime.as_deref().map(S::from),
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
            EventKind::Discarded { reason } => K::Discarded { reason },
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
        result: t
            .result
            .as_deref()
            .map(json_value)
            .transpose()?
            .map(Box::new),
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
            .transpose()?
            .map(Box::new),
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

/// Checks that `t` converts back ([`task_from_wire`] would succeed) without building the task:
/// the same checks over borrowed strings. A snapshot open runs it on the finished tasks it keeps
/// as their encoded bytes, which are decoded whole only when read.
///
/// IMPORTANT: it must refuse whatever `task_from` refuses; `tests/snapshot_v2.rs` flips every
/// byte of a tasks section and reads every task the open accepted.
pub fn check_task_wire(t: &Task<&str>) -> Result<()> {
    state_from_code(t.state)?;
    for (_, v) in &t.metadata {
        json_value(v)?;
    }
    if let Some(r) = &t.result {
        json_value(r)?;
    }
    if let Some(c) = &t.checkpoint {
        json_value(&c.data)?;
    }
    for o in &t.outputs {
        output_from_code(o.kind)?;
    }
    Ok(())
}

/// Converts a persisted task back (id, version, lsn, lease and session are set by the caller).
pub fn task_from_wire(t: Task) -> Result<d::Task> {
    task_from(t)
}

#[cfg(test)]
mod state_code_tests {
    use super::*;

    /// State codes are on disk (snapshots, `state_changed` events): they never change, and a
    /// new state takes the next free code.
    #[test]
    fn state_codes_are_pinned() {
        let states = [
            d::TaskState::Pending,
            d::TaskState::Running,
            d::TaskState::Completed,
            d::TaskState::Failed,
            d::TaskState::Cancelled,
            d::TaskState::Discarded,
        ];
        for (code, state) in states.into_iter().enumerate() {
            assert_eq!(state_code(state), code as u8, "{state:?}");
            assert_eq!(state_from_code(code as u8).unwrap(), state);
        }
        assert!(state_from_code(6).is_err(), "6 is no state");
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    fn sample() -> Task {
        Task {
            title: "title".into(),
            description: "d".into(),
            role: Some("writer".into()),
            state: state_code(d::TaskState::Completed),
            progress_percent: 100,
            progress_step: None,
            progress_message: None,
            created_at_ms: 1,
            updated_at_ms: 2,
            started_at_ms: Some(1),
            completed_at_ms: Some(2),
            provider: None,
            model: None,
            tags: vec!["a".into()],
            metadata: vec![("k".into(), "[1,2]".into())],
            result: Some("{\"ok\":true}".into()),
            last_error: None,
            error_count: 0,
            attempt: 1,
            priority: 0,
            checkpoint: Some(Checkpoint {
                name: "c".into(),
                progress: 50,
                data: "{}".into(),
                at_ms: 1,
            }),
            outputs: vec![Output {
                kind: 0,
                content: "x".into(),
                at_ms: 1,
                path: None,
                size_bytes: None,
                mime: None,
            }],
        }
    }

    /// The borrowed check refuses exactly what the conversion refuses: each fallible field
    /// made bad in turn, and the good task.
    #[test]
    fn the_borrowed_check_agrees_with_the_conversion() {
        let breaks: [fn(&mut Task); 6] = [
            |_| {},
            |t| t.state = 200,
            |t| t.metadata[0].1 = "[1,".into(),
            |t| t.result = Some("nope".into()),
            |t| t.checkpoint.as_mut().unwrap().data = "{".into(),
            |t| t.outputs[0].kind = 200,
        ];
        for (i, break_it) in breaks.iter().enumerate() {
            let mut t = sample();
            break_it(&mut t);
            let bytes = postcard::to_allocvec(&t).unwrap();
            let borrowed: Task<&str> = postcard::from_bytes(&bytes).unwrap();
            let checked = check_task_wire(&borrowed).is_ok();
            let converted = task_from_wire(t).is_ok();
            assert_eq!(checked, converted, "case {i}");
            assert_eq!(checked, i == 0, "case {i}");
        }
    }
}
