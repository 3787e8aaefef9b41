//! The runtime's health as seen from the store alone, so that another process (`tasklog
//! stats`) can report it: queue depth by kind and priority, running and stuck tasks, retries,
//! success rate and run times of the tasks the runtime owns (those with a `runtime.kind`).

use serde_json::Value;

use super::META_KIND;
use super::health::RuntimeHealth;
use crate::error::Result;
use crate::store::{Filter, Store};
use crate::task::{TaskState, Timestamp};

/// Computes the runtime's figures from the tasks in `store`. Recoveries by strategy come from
/// the histories (`runtime.recovery` records and `interrupted` events), like
/// [`super::recovery_figures`].
pub fn health_from_store(store: &Store) -> Result<RuntimeHealth> {
    let now = Timestamp::now();
    let mut h = RuntimeHealth::default();
    let mut run_ms: Vec<f64> = Vec::new();
    let (mut succeeded, mut failed) = (0u64, 0u64);
    store.for_each_task(&Filter::default(), &mut |task| {
        // Recoveries from the durable histories, by the rules of `runtime::metrics`, of every
        // task (with a kind or not), in this same walk: a second walk over every task, through
        // `recovery_figures`, doubled the cost of `stats`.
        match super::metrics::attempts_of(store, &task)? {
            Some(found) => super::metrics::count_by_strategy(&found, &mut h.recovered),
            // Removed since its page was read.
            None => return Ok(()),
        }
        let Some(kind) = task.metadata.get(META_KIND).and_then(Value::as_str) else {
            return Ok(());
        };
        match task.state {
            TaskState::Pending => {
                *h.queue_depth
                    .entry(kind.to_string())
                    .or_default()
                    .entry(task.priority)
                    .or_default() += 1;
            }
            TaskState::Running => {
                h.running += 1;
                if task.lease.as_ref().is_some_and(|l| l.expires_at < now) {
                    h.stuck += 1;
                }
            }
            TaskState::Completed => succeeded += 1,
            // A discarded task's last run failed too.
            TaskState::Failed | TaskState::Discarded => failed += 1,
            TaskState::Cancelled => h.cancelled += 1,
        }
        h.retries += u64::from(task.attempt.saturating_sub(1));
        if let (Some(s), Some(c), TaskState::Completed) =
            (task.started_at, task.completed_at, task.state)
        {
            run_ms.push((c.0 - s.0) as f64);
        }
        Ok(())
    })?;
    h.succeeded = succeeded;
    h.failed = failed;
    let runs = succeeded + failed;
    h.success_rate = if runs == 0 {
        1.0
    } else {
        succeeded as f64 / runs as f64
    };
    run_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if run_ms.is_empty() {
            0.0
        } else {
            run_ms
                .get(((run_ms.len() - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or_default()
        }
    };
    (h.run_ms_p50, h.run_ms_p90, h.run_ms_p99) = (pct(0.5), pct(0.9), pct(0.99));
    Ok(h)
}
