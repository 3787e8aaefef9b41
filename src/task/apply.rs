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
            if matches!(from, TaskState::Failed | TaskState::Cancelled) {
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
        EventKind::Updated(_)
        | EventKind::Heartbeat { .. }
        | EventKind::Progress { .. }
        | EventKind::Checkpoint { .. }
        | EventKind::Output { .. }
        | EventKind::Removed { .. } => return None,
    })
}

/// Builds the task a `Created` or `Imported` event creates. `None` for any other event.
pub fn create(event: &Event, lsn: u64) -> Option<Task> {
    let mut task = match &event.kind {
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
            id: event.task_id.clone(),
            title: title.clone(),
            description: description.clone(),
            role: role.clone(),
            state: TaskState::Pending,
            progress: Progress::default(),
            created_at: event.at,
            updated_at: event.at,
            started_at: None,
            completed_at: None,
            provider: provider.clone(),
            model: model.clone(),
            tags: tags.clone(),
            metadata: metadata.clone(),
            result: None,
            last_error: None,
            error_count: 0,
            attempt: 1,
            priority: *priority,
            checkpoint: None,
            outputs: Vec::new(),
            lease: None,
            session: 0,
            version: 0,
            last_lsn: 0,
        },
        EventKind::Imported { task } => (**task).clone(),
        _ => return None,
    };
    task.id = event.task_id.clone();
    task.version = 1;
    task.last_lsn = lsn;
    Some(task)
}

/// Applies an event that `check` accepted to an existing task.
pub fn apply(task: &mut Task, event: &Event, lsn: u64) {
    let at = event.at;
    match &event.kind {
        EventKind::Created { .. } => {}
        EventKind::Imported { task: imported } => {
            let version = task.version;
            *task = (**imported).clone();
            task.id = event.task_id.clone();
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
            task.session = *session;
            task.lease = owner
                .as_ref()
                .zip(*lease_expires_at)
                .map(|(o, e)| super::Lease {
                    owner: o.clone(),
                    expires_at: e,
                    claim_lsn: lsn,
                });
        }
        EventKind::Heartbeat {
            owner,
            lease_expires_at,
        } => {
            // A heartbeat extends the claim; it does not make a new one.
            let claim_lsn = task.lease.as_ref().map_or(0, |l| l.claim_lsn);
            task.lease = Some(super::Lease {
                owner: owner.clone(),
                expires_at: *lease_expires_at,
                claim_lsn,
            });
        }
        EventKind::Progress {
            percent,
            step,
            message,
        } => {
            task.progress = Progress {
                percent: (*percent).min(100),
                step: step.clone(),
                message: message.clone(),
            };
        }
        EventKind::Checkpoint {
            name,
            progress,
            data,
        } => {
            task.checkpoint = Some(super::Checkpoint {
                name: name.clone(),
                progress: (*progress).min(100),
                data: data.clone(),
                at,
            });
        }
        EventKind::Output {
            output_kind,
            content,
            path,
            size_bytes,
            mime,
        } => task.outputs.push(super::Output {
            kind: *output_kind,
            content: content.clone(),
            at,
            path: path.clone(),
            size_bytes: *size_bytes,
            mime: mime.clone(),
        }),
        EventKind::Completed { result } => {
            finish(task, TaskState::Completed, at);
            task.progress.percent = 100;
            task.result = result.clone();
        }
        EventKind::Failed { error } => {
            finish(task, TaskState::Failed, at);
            task.last_error = Some(error.clone());
            task.error_count = task.error_count.saturating_add(1);
        }
        EventKind::Cancelled { reason } => {
            finish(task, TaskState::Cancelled, at);
            if let Some(r) = reason {
                task.metadata
                    .insert("cancel_reason".into(), serde_json::Value::String(r.clone()));
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
            if *to == TaskState::Failed {
                finish(task, TaskState::Failed, at);
                task.last_error = Some(reason.clone());
                task.error_count = task.error_count.saturating_add(1);
            } else {
                // Requeued after a crash: the checkpoint stays so the next attempt resumes from it.
                release(task, *to);
            }
        }
        EventKind::Removed { .. } => {}
    }
    task.updated_at = at;
    task.version += 1;
    task.last_lsn = lsn;
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

fn apply_update(task: &mut Task, u: &super::TaskUpdate) {
    if let Some(v) = &u.title {
        task.title.clone_from(v);
    }
    if let Some(v) = &u.description {
        task.description.clone_from(v);
    }
    if let Some(v) = &u.role {
        task.role = Some(v.clone());
    }
    if let Some(v) = &u.provider {
        task.provider = Some(v.clone());
    }
    if let Some(v) = &u.model {
        task.model = Some(v.clone());
    }
    if let Some(p) = u.priority {
        task.priority = p.min(10);
    }
    for t in &u.add_tags {
        if !task.tags.contains(t) {
            task.tags.push(t.clone());
        }
    }
    task.tags.retain(|t| !u.remove_tags.contains(t));
    for (k, v) in &u.set_metadata {
        task.metadata.insert(k.clone(), v.clone());
    }
    for k in &u.remove_metadata {
        task.metadata.remove(k);
    }
}
