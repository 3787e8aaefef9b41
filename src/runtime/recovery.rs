//! Recovering work whose worker died: by the kind's strategy, each step an event.

use serde_json::{Value, json};

use super::{META_KIND, Recovery, Shared};
use crate::error::Result;
use crate::store::{Change, InterruptedPolicy, Mutation};
use crate::task::{Task, TaskState, TaskUpdate};

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
        recover_one(shared, &task, &shared.interrupted_message)?;
    }
    Ok(())
}

/// Metadata key holding the last recovery of a task: `{strategy, reason, cause, progress,
/// attempt, at_ms}` (written with the recovery, in the same batch, so the history shows it).
pub const META_RECOVERY: &str = "runtime.recovery";

/// What recovery does with a task.
enum Action {
    /// Back to pending (a `restart` strategy withholds the checkpoint from the next run).
    Pending,
    Failed,
    Complete(Value),
    Leave,
}

/// Chooses the action, the strategy's name and the reason.
fn decide(shared: &Shared, recovery: &Recovery, task: &Task) -> (Action, &'static str, String) {
    let p = task.progress.percent;
    match recovery {
        Recovery::StoreDefault => match shared.default_policy {
            InterruptedPolicy::Requeue => (
                Action::Pending,
                "requeue",
                "the store's interrupted-work policy is requeue".into(),
            ),
            InterruptedPolicy::Leave => (Action::Leave, "leave", String::new()),
            _ => (
                Action::Failed,
                "mark_failed",
                "the store's interrupted-work policy is mark-failed".into(),
            ),
        },
        Recovery::Resume => (
            Action::Pending,
            "resume",
            "the kind resumes from its checkpoint".into(),
        ),
        Recovery::Restart => (
            Action::Pending,
            "restart",
            "the kind restarts from scratch".into(),
        ),
        Recovery::MarkFailed => (
            Action::Failed,
            "mark_failed",
            "the kind marks interrupted work failed".into(),
        ),
        Recovery::ValidateOnly {
            threshold,
            validate,
        } => match (p >= *threshold).then(|| validate(task)).flatten() {
            Some(result) => (
                Action::Complete(result),
                "validated",
                format!("progress {p}% >= {threshold}% and the validator found the work done"),
            ),
            None => (
                Action::Pending,
                "resume",
                format!("progress {p}% (threshold {threshold}%): not validated, resumed"),
            ),
        },
        Recovery::Auto(a) => auto(a, task),
    }
}

/// Seed 003's choice: validate above `validate_above`, resume from a checkpoint above
/// `resume_above`, restart otherwise.
fn auto(a: &super::AutoRecovery, task: &Task) -> (Action, &'static str, String) {
    let p = task.progress.percent;
    let checkpoint = task.checkpoint.as_ref();
    if p > a.validate_above
        && let Some(result) = a.validate.as_ref().and_then(|v| v(task))
    {
        return (
            Action::Complete(result),
            "validated",
            format!(
                "progress {p}% > {}%: validated only, the work was found done",
                a.validate_above
            ),
        );
    }
    match checkpoint {
        Some(c) if p > a.resume_above => (
            Action::Pending,
            "resume",
            format!(
                "progress {p}% > {}% with checkpoint {:?} ({}%)",
                a.resume_above, c.name, c.progress
            ),
        ),
        Some(_) => (
            Action::Pending,
            "restart",
            format!(
                "progress {p}% <= {}%: clean restart (checkpoint not used)",
                a.resume_above
            ),
        ),
        None => (
            Action::Pending,
            "restart",
            format!("progress {p}% and no checkpoint: clean restart"),
        ),
    }
}

/// True when the task's last recovery chose a clean restart for the attempt it is at (the
/// run then gets no checkpoint).
pub fn restarts(task: &Task) -> bool {
    task.metadata.get(META_RECOVERY).is_some_and(|r| {
        r.get("strategy").and_then(Value::as_str) == Some("restart")
            && r.get("attempt").and_then(Value::as_u64) == Some(u64::from(task.attempt))
    })
}

/// Recovers one running task whose owner is gone.
pub fn recover_one(shared: &Shared, task: &Task, cause: &str) -> Result<()> {
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
    let (action, label, reason) = decide(shared, &recovery, task);
    let change = match action {
        Action::Leave => return Ok(()),
        Action::Pending => Change::Interrupt {
            reason: cause.into(),
            to: TaskState::Pending,
        },
        Action::Failed => Change::Interrupt {
            reason: cause.into(),
            to: TaskState::Failed,
        },
        Action::Complete(result) => Change::Complete {
            result: Some(result),
        },
    };
    // The choice and its reason first, in the same batch: the history says why.
    let mut update = TaskUpdate::default();
    update.set_metadata.insert(
        META_RECOVERY.into(),
        json!({
            "strategy": label,
            "reason": reason,
            "cause": cause,
            "progress": task.progress.percent,
            "attempt": task.attempt,
            "at_ms": super::now_ms(),
        }),
    );
    let batch = vec![
        Mutation::new(task.id.clone(), Change::Update(update))
            .expect_version(task.version)
            .actor(RECOVERY_ACTOR),
        Mutation::new(task.id.clone(), change).actor(RECOVERY_ACTOR),
    ];
    match shared.store.batch(batch) {
        Ok(after) => {
            *shared
                .counters
                .lock()
                .recovered
                .entry(label.to_string())
                .or_default() += 1;
            tracing::info!(task = %task.id, strategy = label, reason = %reason, "recovered interrupted task");
            if let Some(t) = after.last()
                && t.state == TaskState::Pending
            {
                super::worker::enqueue(shared, t);
            }
            Ok(())
        }
        // Someone changed it meanwhile (it finished, or was recovered already): nothing to do.
        Err(crate::Error::Conflict { .. }) | Err(crate::Error::InvalidTransition { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
