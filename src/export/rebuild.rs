//! Imported histories: reading each event back into an [`EventKind`], and replaying a history
//! through the same state-machine checks the store applies, so that an impossible history is
//! reported during validation instead of failing the batch.

use serde_json::Value;

use serde::Deserialize;

use super::ImportEvent;
use super::json_de::JsonDe;
use super::parse::Json;
use super::validate::{Problems, read_time};
use crate::error::Error;
use crate::store::HistoryEvent;
use crate::task::{Event, EventKind, Task, apply, limits};

/// Reads a task's `history` array. Returns the events and the task they rebuild, or `(None,
/// None)` after recording problems.
pub(crate) fn read_history(
    path: &str,
    id: &str,
    value: &Json,
    problems: &mut Problems,
) -> (Option<Vec<ImportEvent>>, Option<Task>) {
    let Json::Array(items) = value else {
        problems.push(
            path,
            format!("expected an array of events, found {}", value.type_name()),
        );
        return (None, None);
    };
    let mut events = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        // Rendered only for a problem: most events have none.
        let event_path = || format!("{path}[{i}]");
        match read_event(item) {
            Ok(e) => {
                let details = match e.kind {
                    EventKind::Imported { .. } => ".details.task",
                    _ => ".details",
                };
                for (field, reason) in limits::event_violations(e.at, e.actor.as_deref(), &e.kind) {
                    let place = if field == "at" || field == "actor" {
                        format!("{}.{field}", event_path())
                    } else {
                        format!("{}{details}.{field}", event_path())
                    };
                    problems.push(&place, reason);
                    ok = false;
                }
                let prev = events.last().map_or(0, |p: &ImportEvent| p.lsn);
                if !events.is_empty() && e.lsn <= prev {
                    problems.push(
                        &format!("{}.lsn", event_path()),
                        format!("{} does not follow {prev} (LSNs must increase)", e.lsn),
                    );
                    ok = false;
                }
                events.push(e);
            }
            Err((field, message)) => {
                problems.push(&format!("{}{field}", event_path()), message);
                ok = false;
            }
        }
    }
    if !ok {
        return (None, None);
    }
    let replay = events.iter().map(|e| (e.lsn, to_event(id, e)));
    match rebuild(replay) {
        Ok(Some(task)) => (Some(events), Some(task)),
        Ok(None) if events.is_empty() => (Some(events), None),
        Ok(None) => {
            problems.push(path, "the history ends with the task removed");
            (None, None)
        }
        Err((i, e)) => {
            problems.push(&format!("{path}[{i}]"), e);
            (None, None)
        }
    }
}

/// One exported history event: `lsn`, `at`, `kind`, `details`, optional `actor`. `from` and
/// `to` are ignored: the replay recomputes them.
fn read_event(item: &Json) -> Result<ImportEvent, (String, String)> {
    let Json::Object(_) = item else {
        return Err((
            String::new(),
            format!("expected an event object, found {}", item.type_name()),
        ));
    };
    let field = |name: &str| item.get(name).filter(|v| !matches!(v, Json::Null));
    let missing = |name: &str| (format!(".{name}"), "missing".to_string());
    let lsn = match field("lsn") {
        Some(Json::Number(n)) => n
            .as_u64()
            .ok_or_else(|| (".lsn".into(), format!("{n} is not an LSN")))?,
        Some(other) => {
            return Err((
                ".lsn".into(),
                format!("expected a number, found {}", other.type_name()),
            ));
        }
        None => return Err(missing("lsn")),
    };
    let at = read_time(field("at").ok_or_else(|| missing("at"))?).map_err(|e| (".at".into(), e))?;
    let kind = match field("kind") {
        Some(Json::String(k)) => k.to_string(),
        Some(other) => {
            return Err((
                ".kind".into(),
                format!("expected a string, found {}", other.type_name()),
            ));
        }
        None => return Err(missing("kind")),
    };
    let actor = match field("actor") {
        None => None,
        Some(Json::String(a)) => Some(a.to_string()),
        Some(other) => {
            return Err((
                ".actor".into(),
                format!("expected a string, found {}", other.type_name()),
            ));
        }
    };
    let kind = event_kind(&kind, field("details"))?;
    Ok(ImportEvent {
        lsn,
        at,
        actor,
        kind,
    })
}

/// An event kind from its name and its `details` object (the `kind` tag added in front).
fn event_kind(kind: &str, details: Option<&Json<'_>>) -> Result<EventKind, (String, String)> {
    let kind_node = Json::String(kind.into());
    let mut entries: Vec<(&str, &Json)> = vec![("kind", &kind_node)];
    match details {
        None => {}
        Some(Json::Object(details)) => entries.extend(details.iter().map(|(k, v)| (&**k, v))),
        Some(other) => {
            return Err((
                ".details".into(),
                format!("expected an object, found {}", other.type_name()),
            ));
        }
    }
    let kind: EventKind = EventKind::deserialize(JsonDe::Entries(entries)).map_err(|e| {
        if e.to_string().starts_with("unknown variant") {
            (
                ".kind".to_string(),
                format!("unknown event kind {:?}", limits::excerpt(kind)),
            )
        } else {
            (
                ".details".to_string(),
                format!("not a valid {:?} event: {e}", limits::excerpt(kind)),
            )
        }
    })?;
    // NOTE: an `imported` event persists its task without id, lease, version or LSN (the
    // store sets those), so a history event carrying them is normalised the same way.
    let kind = match kind {
        EventKind::Imported { task } => EventKind::Imported {
            task: Box::new(super::apply::persistable(*task)),
        },
        other => other,
    };
    Ok(kind)
}

/// The domain event for an imported history event.
pub(crate) fn to_event(task_id: &str, e: &ImportEvent) -> Event {
    Event {
        task_id: task_id.to_string(),
        at: e.at,
        actor: e.actor.clone(),
        kind: e.kind.clone(),
    }
}

/// Replays events from nothing, with the store's checks. Returns the task at the end (`None`
/// when the last event removed it), or the index of the first event the state machine refuses.
pub(crate) fn rebuild(
    events: impl Iterator<Item = (u64, Event)>,
) -> Result<Option<Task>, (usize, Error)> {
    let mut current: Option<Task> = None;
    for (i, (lsn, event)) in events.enumerate() {
        apply::check(current.as_ref(), &event).map_err(|e| (i, e))?;
        current = apply::next(current, event, lsn);
    }
    Ok(current)
}

/// The task as it stood just before its last removal, rebuilt from its history (for an export
/// that finds a task removed between listing and reading it).
pub(crate) fn before_removal(task_id: &str, history: &[HistoryEvent]) -> Option<Task> {
    let last_removal = history.iter().rposition(|e| e.kind == "removed")?;
    let events = history.get(..last_removal)?.iter().map(|h| {
        let mut details = match &h.details {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        details.insert("kind".into(), Value::String(h.kind.to_string()));
        let kind = serde_json::from_value::<EventKind>(Value::Object(details)).ok();
        (h.lsn, kind, h.at, h.actor.clone())
    });
    let mut decoded = Vec::new();
    for (lsn, kind, at, actor) in events {
        decoded.push((
            lsn,
            Event {
                task_id: task_id.to_string(),
                at,
                actor,
                kind: kind?,
            },
        ));
    }
    rebuild(decoded.into_iter()).ok().flatten()
}

/// True when two tasks hold the same fields, ignoring what a store assigns (`version`,
/// `last_lsn`) and the runtime-only `session`.
pub(crate) fn same_fields(a: &Task, b: &Task) -> bool {
    // NOTE: destructured so that a field added to `Task` fails to compile here until it is
    // compared (or deliberately ignored).
    let Task {
        id,
        title,
        description,
        role,
        state,
        progress,
        created_at,
        updated_at,
        started_at,
        completed_at,
        provider,
        model,
        tags,
        metadata,
        result,
        last_error,
        error_count,
        attempt,
        priority,
        checkpoint,
        outputs,
        lease,
        session: _,
        version: _,
        last_lsn: _,
    } = a;
    *id == b.id
        && *title == b.title
        && *description == b.description
        && *role == b.role
        && *state == b.state
        && *progress == b.progress
        && *created_at == b.created_at
        && *updated_at == b.updated_at
        && *started_at == b.started_at
        && *completed_at == b.completed_at
        && *provider == b.provider
        && *model == b.model
        && *tags == b.tags
        && *metadata == b.metadata
        && *result == b.result
        && *last_error == b.last_error
        && *error_count == b.error_count
        && *attempt == b.attempt
        && *priority == b.priority
        && *checkpoint == b.checkpoint
        && *outputs == b.outputs
        && *lease == b.lease
}
