//! Taking back a running task whose owner is gone, on request: the one public way to write
//! an `Interrupt` (docs/design.md, "No public way to forge history").

use super::{InterruptedPolicy, Mutation, Store};
use crate::error::{Error, Result};
use crate::store::Change;
use crate::task::{Task, TaskState, Timestamp};

impl Store {
    /// Takes back the running task `id` whose owner is gone — its lease expired, or it ran
    /// without a lease in a session that is over — the way [`Store::open`] does at startup:
    /// it becomes `failed` under [`InterruptedPolicy::MarkFailed`], else `pending` (resumed
    /// from its checkpoint), and the history records `reason` and `actor`.
    ///
    /// The store checks the claim itself, so nobody can interrupt live work through it: a task
    /// that is not running is refused with [`Error::InvalidTransition`], one under a live lease
    /// or owned by this session with [`Error::InvalidInput`], and a task that changed between
    /// the check and the write with [`Error::Conflict`]; nothing is written then.
    pub fn recover_abandoned(&self, id: &str, reason: &str, actor: Option<&str>) -> Result<Task> {
        let task = self.get(id)?;
        if task.state != TaskState::Running {
            return Err(Error::InvalidTransition {
                id: id.into(),
                action: "recover",
                from: task.state,
                to: TaskState::Pending,
            });
        }
        let expired = task
            .lease
            .as_ref()
            .is_some_and(|l| l.expires_at < Timestamp::now());
        let orphaned = task.lease.is_none() && task.session != self.session();
        if !expired && !orphaned {
            return Err(Error::InvalidInput {
                at: Some(format!("task {id:?}")),
                reason: "it is running under a live lease or in this store's session; \
                         cancel or requeue it to take it back"
                    .into(),
            });
        }
        let to = match self.interrupted_policy() {
            InterruptedPolicy::MarkFailed => TaskState::Failed,
            _ => TaskState::Pending,
        };
        let mut m = Mutation::new(
            id,
            Change::Interrupt {
                reason: reason.into(),
                to,
            },
        )
        .expect_version(task.version);
        m.actor = actor.map(str::to_string);
        self.apply(m)
    }
}
