//! The state machine: which events a task in a given state accepts, and how they change it.
//! `check` never mutates; `apply` assumes `check` passed (the store checks before it appends,
//! and replay applies only events that were checked when written).

use super::{Event, EventKind, Progress, Task, TaskState};
use crate::error::{Error, Result};

/// Checks that `event` is allowed for `task` (`None`: the task does not exist).
pub fn check(task: Option<&Task>, event: &Event) -> Result<()> {
    let id = &event.task_id;
    let Some(task) = task else {
        return match &event.kind {
            EventKind::Created { .. } | EventKind::Imported { .. } => Ok(()),
            _ => Err(Error::NotFound { id: id.clone() }),
        };
    };
    let from = task.state;
    let invalid = |to: TaskState| Error::InvalidTransition {
        id: id.clone(),
        action: event.kind.action(),
        from,
        to,
    };
    match &event.kind {
        EventKind::Created { .. } => Err(Error::AlreadyExists { id: id.clone() }),
        EventKind::Imported { .. }
        | EventKind::Updated(_)
        | EventKind::Output { .. }
        | EventKind::Removed { .. } => Ok(()),
        EventKind::Heartbeat { .. } | EventKind::Progress { .. } | EventKind::Checkpoint { .. } => {
            if from == TaskState::Running {
                Ok(())
            } else {
                Err(invalid(TaskState::Running))
            }
        }
        // Several events lead to pending; each has its own source states.
        EventKind::Retried => {
            if matches!(
                from,
                TaskState::Failed | TaskState::Cancelled | TaskState::Discarded
            ) {
                Ok(())
            } else {
                Err(invalid(TaskState::Pending))
            }
        }
        EventKind::Requeued { .. } | EventKind::Interrupted { .. }
            if from != TaskState::Running =>
        {
            Err(invalid(target_state(&event.kind).unwrap_or(from)))
        }
        other => {
            let to = target_state(other).unwrap_or(from);
            if from.can_move_to(to) {
                Ok(())
            } else {
                Err(invalid(to))
            }
        }
    }
}

impl EventKind {
    /// The state this event moves a task to, or `None` when it leaves the state as it is
    /// (progress, output, an update, ...).
    pub fn target_state(&self) -> Option<TaskState> {
        target_state(self)
    }
}

/// The state an event moves a task to, or `None` when it does not change the state.
pub fn target_state(kind: &EventKind) -> Option<TaskState> {
    Some(match kind {
        EventKind::Created { .. } => TaskState::Pending,
        EventKind::Started { .. } => TaskState::Running,
        EventKind::Completed { .. } => TaskState::Completed,
        EventKind::Failed { .. } => TaskState::Failed,
        EventKind::Cancelled { .. } => TaskState::Cancelled,
        EventKind::Requeued { .. } | EventKind::Retried => TaskState::Pending,
        EventKind::Interrupted { to, .. } => *to,
        EventKind::Imported { task } => task.state,
        EventKind::Discarded { .. } => TaskState::Discarded,
        EventKind::Updated(_)
        | EventKind::Heartbeat { .. }
        | EventKind::Progress { .. }
        | EventKind::Checkpoint { .. }
        | EventKind::Output { .. }
        | EventKind::Removed { .. } => return None,
    })
}

/// True for events that create, replace or remove their task (the others change it in place).
pub fn reshapes(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Created { .. } | EventKind::Removed { .. } | EventKind::Imported { .. }
    )
}

/// The task after `event` (`None` when it removes the task), given the task before it.
pub fn next(current: Option<Task>, mut event: Event, lsn: u64) -> Option<Task> {
    if matches!(event.kind, EventKind::Removed { .. }) {
        return None;
    }
    match current {
        Some(mut t) if !matches!(event.kind, EventKind::Imported { .. }) => {
            apply(&mut t, &mut event, lsn);
            Some(t)
        }
        Some(t) => {
            let mut replaced = create(&mut event, lsn)?;
            replaced.version = t.version + 1;
            Some(replaced)
        }
        None => create(&mut event, lsn),
    }
}

/// Builds the task a `Created` or `Imported` event creates. `None` for any other event (which
/// is left as it was). Takes the event's id and contents, so that its strings move into the
/// task instead of being copied (replay creates 200,000 tasks a second; each copy is an
/// allocation); what is left of the event afterwards means nothing.
pub fn create(event: &mut Event, lsn: u64) -> Option<Task> {
    if !matches!(
        event.kind,
        EventKind::Created { .. } | EventKind::Imported { .. }
    ) {
        return None;
    }
    let at = event.at;
    let task_id = std::mem::take(&mut event.task_id);
    let mut task = match taken_kind(event) {
        EventKind::Created {
            title,
            description,
            role,
            provider,
            model,
            tags,
            metadata,
            priority,
            ..
        } => Task {
            id: String::new(),
            title,
            description,
            role,
            state: TaskState::Pending,
            progress: Progress::default(),
            created_at: at,
            updated_at: at,
            started_at: None,
            completed_at: None,
            provider,
            model,
            tags,
            metadata,
            result: None,
            last_error: None,
            error_count: 0,
            attempt: 1,
            priority,
            checkpoint: None,
            outputs: Vec::new(),
            lease: None,
            session: 0,
            version: 0,
            last_lsn: 0,
        },
        EventKind::Imported { task } => *task,
        _ => return None,
    };
    task.id = task_id;
    task.version = 1;
    task.last_lsn = lsn;
    Some(task)
}

/// Applies an event that `check` accepted to an existing task. Takes the event's contents, so
/// that its strings move into the task (see [`create`]); what is left of the event afterwards
/// means nothing. By reference, not by value: the commit path hands each event down through
/// several calls, and an `Event` (280 bytes) moved by value is copied at each (a tenth of a
/// bulk write's time went to those copies). Reads nothing from `event.task_id`: replay passes
/// events whose id was only borrowed from the log.
pub fn apply(task: &mut Task, event: &mut Event, lsn: u64) {
    let at = event.at;
    match taken_kind(event) {
        EventKind::Created { .. } => {}
        EventKind::Imported { task: imported } => {
            let version = task.version;
            let id = std::mem::take(&mut task.id);
            *task = *imported;
            task.id = id;
            task.version = version;
        }
        EventKind::Updated(u) => apply_update(task, u),
        EventKind::Started {
            owner,
            lease_expires_at,
            session,
        } => {
            task.state = TaskState::Running;
            task.started_at = Some(at);
            task.completed_at = None;
            task.session = session;
            task.lease = owner.zip(lease_expires_at).map(|(owner, e)| {
                Box::new(super::Lease {
                    owner,
                    expires_at: e,
                    claim_lsn: lsn,
                })
            });
        }
        EventKind::Heartbeat {
            owner,
            lease_expires_at,
        } => {
            // A heartbeat extends the claim; it does not make a new one (the claim LSN stays,
            // and the boxed lease is updated where it is).
            match task.lease.as_deref_mut() {
                Some(lease) => {
                    lease.owner = owner;
                    lease.expires_at = lease_expires_at;
                }
                None => {
                    task.lease = Some(Box::new(super::Lease {
                        owner,
                        expires_at: lease_expires_at,
                        claim_lsn: 0,
                    }));
                }
            }
        }
        EventKind::Progress {
            percent,
            step,
            message,
        } => {
            task.progress = Progress {
                percent: percent.min(100),
                step,
                message,
            };
        }
        EventKind::Checkpoint {
            name,
            progress,
            data,
        } => {
            task.checkpoint = Some(Box::new(super::Checkpoint {
                name,
                progress: progress.min(100),
                data,
                at,
            }));
        }
        EventKind::Output {
            output_kind,
            content,
            path,
            size_bytes,
            mime,
        } => task.outputs.push(super::Output {
            kind: output_kind,
            content,
            at,
            path,
            size_bytes,
            mime,
        }),
        EventKind::Completed { result } => {
            finish(task, TaskState::Completed, at);
            task.progress.percent = 100;
            task.result = result.map(Box::new);
        }
        EventKind::Failed { error } => {
            finish(task, TaskState::Failed, at);
            task.last_error = Some(error);
            task.error_count = task.error_count.saturating_add(1);
        }
        EventKind::Cancelled { reason } => {
            finish(task, TaskState::Cancelled, at);
            if let Some(r) = reason {
                task.metadata
                    .insert("cancel_reason".into(), serde_json::Value::String(r));
            }
        }
        EventKind::Requeued { .. } => release(task, TaskState::Pending),
        EventKind::Retried => {
            release(task, TaskState::Pending);
            task.completed_at = None;
            task.attempt = task.attempt.saturating_add(1);
            task.progress = Progress::default();
        }
        EventKind::Interrupted { reason, to } => {
            if to == TaskState::Failed {
                finish(task, TaskState::Failed, at);
                task.last_error = Some(reason);
                task.error_count = task.error_count.saturating_add(1);
            } else {
                // Requeued after a crash: the checkpoint stays so the next attempt resumes from it.
                release(task, to);
            }
        }
        EventKind::Discarded { .. } => {
            // The failure that led here already counted the error and set `completed_at`;
            // discarding only records that nothing will retry it.
            task.state = TaskState::Discarded;
        }
        EventKind::Removed { .. } => {}
    }
    task.updated_at = at;
    task.version += 1;
    task.last_lsn = lsn;
}

/// The event's kind, taken out of it (a field-less kind is left in its place).
fn taken_kind(event: &mut Event) -> EventKind {
    std::mem::replace(&mut event.kind, EventKind::Retried)
}

fn finish(task: &mut Task, state: TaskState, at: super::Timestamp) {
    task.state = state;
    task.completed_at = Some(at);
    task.lease = None;
    task.session = 0;
}

fn release(task: &mut Task, state: TaskState) {
    task.state = state;
    task.lease = None;
    task.session = 0;
}

fn apply_update(task: &mut Task, u: super::TaskUpdate) {
    if let Some(v) = u.title {
        task.title = v;
    }
    if let Some(v) = u.description {
        task.description = v;
    }
    if let Some(v) = u.role {
        task.role = Some(v);
    }
    if let Some(v) = u.provider {
        task.provider = Some(v);
    }
    if let Some(v) = u.model {
        task.model = Some(v);
    }
    if let Some(p) = u.priority {
        task.priority = p.min(10);
    }
    for t in u.add_tags {
        if !task.tags.contains(&t) {
            task.tags.push(t);
        }
    }
    task.tags.retain(|t| !u.remove_tags.contains(t));
    for (k, v) in u.set_metadata {
        task.metadata.insert(k, v);
    }
    for k in &u.remove_metadata {
        task.metadata.remove(k);
    }
}
