//! Recovery figures (seed 003's health and metrics fields) derived from the store alone: from
//! the tasks and their durable histories, never from counters a process keeps. So the
//! library, `tasklog stats` and the server's `/health/recovery*` routes give the same figures,
//! before and after any restart or crash.
//!
//! Rules:
//! - **stuck**: running, with a lease that expired (its worker stopped heartbeating).
//! - **orphaned**: running without a lease, started under an earlier session of the store.
//! - **recovery queue depth**: pending tasks waiting to run again: with a checkpoint or beyond
//!   their first attempt.
//! - **recent failures**: tasks that failed in the last hour.
//! - **a recovery attempt**: a runtime's recovery record (`runtime.recovery` written with the
//!   recovery, naming the strategy) or an `interrupted` event written without one (the store's
//!   interrupted-work policy: `interrupted_to_pending` or `interrupted_to_failed`). It succeeded
//!   when its task completed after it with no later attempt; the recovery time runs from the
//!   attempt to the completion.
//! - **overall health**: `unhealthy` when the store cannot write (poisoned or closed), else
//!   `degraded` when a task is stuck or orphaned, else `healthy`. (The server also says
//!   `unhealthy` while it is not ready, e.g. shutting down.)

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::recovery::META_RECOVERY;
use crate::error::Result;
use crate::store::{Filter, HistoryEvent, Store};
use crate::task::{Task, TaskState, Timestamp};

/// "Recent" failures are those of the last hour.
pub const RECENT_FAILURE_WINDOW_SECS: i64 = 3_600;
/// The window of the `_24h` figures.
pub const METRICS_WINDOW_SECS: i64 = 86_400;

/// `healthy`, `degraded` or `unhealthy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HealthLevel {
    /// Nothing stuck or orphaned; the store writes.
    Healthy,
    /// Tasks are stuck or orphaned.
    Degraded,
    /// The store cannot write (poisoned or closed).
    Unhealthy,
}

/// Seed 003's figures, by the rules of this module.
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryFigures {
    /// By the rules above.
    pub overall_health: HealthLevel,
    /// Pending tasks waiting to run again.
    pub recovery_queue_depth: usize,
    /// Tasks that failed in the last hour.
    pub recent_failure_count: usize,
    /// Running tasks without a lease from an earlier session.
    pub orphaned_task_count: usize,
    /// Running tasks whose lease expired.
    pub stuck_task_count: usize,
    /// Every state, plus `processing` (running), `orphaned` and `stuck` (subsets of running).
    pub task_state_distribution: BTreeMap<String, usize>,
    /// Percentage of the last 24 hours' recovery attempts that succeeded (None: none).
    pub recovery_success_rate_24h: Option<f64>,
    /// Recovery attempts in the last 24 hours.
    pub total_recovery_attempts_24h: u64,
    /// Those whose task completed afterwards without another attempt.
    pub successful_recoveries_24h: u64,
    /// Mean time from attempt to completion of the successful ones (None: none).
    pub average_recovery_time_seconds: Option<f64>,
    /// Every recovery attempt ever recorded, by strategy.
    pub recovered_by_strategy: BTreeMap<String, u64>,
    /// When the figures were taken.
    pub timestamp: Timestamp,
}

/// One recovery attempt found in a history.
pub(super) struct Attempt {
    at: Timestamp,
    strategy: String,
}

/// The recovery attempts in a task's history, oldest first.
fn attempts(history: &[HistoryEvent]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    let mut record_before = false;
    for e in history {
        let record = (e.kind == "updated")
            .then(|| e.details.get("set_metadata")?.get(META_RECOVERY))
            .flatten();
        if let Some(r) = record {
            let strategy = r
                .get("strategy")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            out.push(Attempt {
                at: e.at,
                strategy: strategy.to_string(),
            });
            record_before = true;
            continue;
        }
        // An interruption right after a recovery record is that recovery's own step.
        if e.kind == "interrupted" && !record_before {
            let to = e.to.map_or("unknown", |s| s.as_str());
            out.push(Attempt {
                at: e.at,
                strategy: format!("interrupted_to_{to}"),
            });
        }
        record_before = false;
    }
    out
}

/// True when `task`'s history may hold a recovery attempt ([`attempts`]), judged without
/// decoding it: a task interrupted back to pending and then completed keeps no trace of it in
/// its fields, but every attempt is a recovery record, which stays in the task's metadata, or
/// an interruption, which moved the task from running to pending or failed, the only two
/// places the store lets an interruption go (what the entry headers of
/// [`Store::history_steps`] say without decoding an event). A requeue or a plain failure makes
/// the same move: those tasks are read, and `attempts` finds nothing in them; tasks that only
/// ever completed or were cancelled are not. Missed, as leaving neither trace: a recovery that
/// completed its task and whose record was later removed from the metadata by hand, and an
/// imported history (re-recorded as it is) claiming an interruption to completed or cancelled.
fn may_hold_attempts(store: &Store, task: &Task) -> Result<bool> {
    if task.metadata.contains_key(META_RECOVERY) {
        return Ok(true);
    }
    Ok(store.history_steps(&task.id)?.iter().any(|s| {
        s.from == Some(TaskState::Running)
            && matches!(s.to, Some(TaskState::Pending | TaskState::Failed))
    }))
}

/// The recovery attempts of `task` (read from its history only when it
/// [`may_hold_attempts`]); `None` when the task was removed meanwhile (a walk over the tasks
/// skips it).
pub(super) fn attempts_of(store: &Store, task: &Task) -> Result<Option<Vec<Attempt>>> {
    let history = match may_hold_attempts(store, task) {
        Ok(false) => return Ok(Some(Vec::new())),
        Ok(true) => store.history(&task.id),
        Err(e) => Err(e),
    };
    match history {
        Ok(h) => Ok(Some(attempts(&h))),
        Err(crate::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds `found` to the count of attempts by strategy.
pub(super) fn count_by_strategy(found: &[Attempt], by_strategy: &mut BTreeMap<String, u64>) {
    for a in found {
        *by_strategy.entry(a.strategy.clone()).or_default() += 1;
    }
}

/// Computes seed 003's figures from `store` at `now`. Reads the history of each task that
/// `may_hold_attempts` (the others' entry headers only: the cost of `stats` grows with the
/// number of tasks, and with the events of the interrupted, requeued and failed ones).
pub fn recovery_figures(store: &Store, now: Timestamp) -> Result<RecoveryFigures> {
    let since_24h = now.plus_millis(-METRICS_WINDOW_SECS * 1000);
    let since_1h = now.plus_millis(-RECENT_FAILURE_WINDOW_SECS * 1000);
    let (mut stuck, mut orphaned, mut queue, mut recent_failures) = (0, 0, 0, 0);
    let mut dist: BTreeMap<String, usize> = BTreeMap::new();
    for s in TaskState::ALL {
        dist.insert(s.as_str().to_string(), 0);
    }
    let mut by_strategy: BTreeMap<String, u64> = BTreeMap::new();
    let (mut tried, mut succeeded, mut secs) = (0u64, 0u64, 0.0f64);
    store.for_each_task(&Filter::default(), &mut |t| {
        *dist.entry(t.state.as_str().to_string()).or_default() += 1;
        match t.state {
            TaskState::Running => match &t.lease {
                Some(l) if l.expires_at < now => stuck += 1,
                Some(_) => {}
                None if t.session != store.session() => orphaned += 1,
                None => {}
            },
            TaskState::Pending if t.checkpoint.is_some() || t.attempt > 1 => queue += 1,
            TaskState::Failed | TaskState::Discarded
                if t.completed_at.unwrap_or(t.updated_at) >= since_1h =>
            {
                recent_failures += 1;
            }
            _ => {}
        }
        let Some(found) = attempts_of(store, &t)? else {
            return Ok(());
        };
        count_by_strategy(&found, &mut by_strategy);
        for (i, a) in found.iter().enumerate() {
            if a.at < since_24h {
                continue;
            }
            tried += 1;
            let last = i + 1 == found.len();
            if let (true, TaskState::Completed, Some(done)) = (last, t.state, t.completed_at)
                && done >= a.at
            {
                succeeded += 1;
                secs += done.0.saturating_sub(a.at.0) as f64 / 1000.0;
            }
        }
        Ok(())
    })?;
    let running = dist.get("running").copied().unwrap_or(0);
    dist.insert("processing".into(), running);
    dist.insert("orphaned".into(), orphaned);
    dist.insert("stuck".into(), stuck);
    let writable = store.poisoned().is_none() && !store.is_closed();
    let overall_health = if !writable {
        HealthLevel::Unhealthy
    } else if stuck > 0 || orphaned > 0 {
        HealthLevel::Degraded
    } else {
        HealthLevel::Healthy
    };
    Ok(RecoveryFigures {
        overall_health,
        recovery_queue_depth: queue,
        recent_failure_count: recent_failures,
        orphaned_task_count: orphaned,
        stuck_task_count: stuck,
        task_state_distribution: dist,
        recovery_success_rate_24h: (tried > 0).then(|| succeeded as f64 * 100.0 / tried as f64),
        total_recovery_attempts_24h: tried,
        successful_recoveries_24h: succeeded,
        average_recovery_time_seconds: (succeeded > 0).then(|| secs / succeeded as f64),
        recovered_by_strategy: by_strategy,
        timestamp: now,
    })
}
