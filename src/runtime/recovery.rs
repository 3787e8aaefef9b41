//! Recovering work whose worker died: by the kind's strategy, each step an event.

use serde_json::Value;

use super::{META_KIND, Shared};
use crate::error::Result;
use crate::store::{Change, InterruptedPolicy, Mutation};
use crate::task::{Task, TaskState};

/// The actor recorded on recovery events.
pub const RECOVERY_ACTOR: &str = "tasklog-runtime";

/// Applies each interrupted task's recovery strategy. Tasks no longer running are skipped.
pub fn recover(shared: &Shared, ids: &[String]) -> Result<()> {
    for id in ids {
        let Ok(task) = shared.store.get(id) else {
            continue;
        };
        if task.state != TaskState::Running {
            continue;
        }
        recover_one(shared, &task, "interrupted by restart")?;
    }
    Ok(())
}

/// Recovers one running task whose owner is gone.
pub fn recover_one(shared: &Shared, task: &Task, reason: &str) -> Result<()> {
    let kind = task
        .metadata
        .get(META_KIND)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let recovery = shared
        .kinds
        .read()
        .get(kind)
        .map(|k| k.recovery.clone())
        .unwrap_or_default();
    let interrupt = |to: TaskState| {
        Mutation::new(
            task.id.clone(),
            Change::Interrupt {
                reason: reason.into(),
                to,
            },
        )
        .expect_version(task.version)
        .actor(RECOVERY_ACTOR)
    };
    let (mutation, label) = match &recovery {
        super::Recovery::StoreDefault => match shared.default_policy {
            InterruptedPolicy::Requeue => (Some(interrupt(TaskState::Pending)), "requeue"),
            InterruptedPolicy::Leave => (None, "leave"),
            _ => (Some(interrupt(TaskState::Failed)), "mark_failed"),
        },
        super::Recovery::Resume => (Some(interrupt(TaskState::Pending)), "resume"),
        super::Recovery::Restart => (Some(interrupt(TaskState::Pending)), "restart"),
        super::Recovery::MarkFailed => (Some(interrupt(TaskState::Failed)), "mark_failed"),
        super::Recovery::ValidateOnly {
            threshold,
            validate,
        } => {
            let done = (task.progress.percent >= *threshold)
                .then(|| validate(task))
                .flatten();
            match done {
                Some(result) => (
                    Some(
                        Mutation::new(
                            task.id.clone(),
                            Change::Complete {
                                result: Some(result),
                            },
                        )
                        .expect_version(task.version)
                        .actor(RECOVERY_ACTOR),
                    ),
                    "validated",
                ),
                None => (Some(interrupt(TaskState::Pending)), "resume"),
            }
        }
    };
    let Some(m) = mutation else { return Ok(()) };
    match shared.store.apply(m) {
        Ok(t) => {
            *shared
                .counters
                .lock()
                .recovered
                .entry(label.to_string())
                .or_default() += 1;
            tracing::info!(task = %task.id, strategy = label, "recovered interrupted task");
            if t.state == TaskState::Pending {
                super::worker::enqueue(shared, &t);
            }
            Ok(())
        }
        // Someone changed it meanwhile (it finished, or was recovered already): nothing to do.
        Err(crate::Error::Conflict { .. }) | Err(crate::Error::InvalidTransition { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
