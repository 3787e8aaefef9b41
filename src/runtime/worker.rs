//! The runtime's threads: workers that claim and run tasks, the feed that queues new and
//! retried tasks from the store's committed events, and the supervisor that sends heartbeats
//! and recovers tasks whose lease expired.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::context::{CancelSignal, TaskContext};
use super::{META_INPUT, META_KIND, META_NOT_BEFORE, Recovery, Shared, now_ms};
use crate::error::Result;
use crate::store::{Change, Filter, Mutation, Query, Subscription};
use crate::task::{EventKind, Task, TaskState, TaskUpdate};

const POLL: Duration = Duration::from_millis(100);

/// The kind of a task run by the runtime.
pub fn kind_of(task: &Task) -> Option<&str> {
    task.metadata.get(META_KIND).and_then(Value::as_str)
}

/// Queues a pending task of a registered kind.
pub fn enqueue(shared: &Shared, task: &Task) {
    if task.state != TaskState::Pending {
        return;
    }
    let Some(kind) = kind_of(task) else { return };
    if !shared.kinds.read().contains_key(kind) {
        return;
    }
    let not_before = task
        .metadata
        .get(META_NOT_BEFORE)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    shared.queue.lock().push(
        task.id.clone(),
        kind.to_string(),
        task.priority,
        not_before,
        now_ms(),
    );
    shared.queue_cv.notify_one();
}

/// Queues every pending task of a registered kind, oldest first.
pub fn queue_pending(shared: &Shared) -> Result<()> {
    let q = Query {
        filter: Filter {
            states: vec![TaskState::Pending],
            ..Filter::default()
        },
        ..Query::default()
    };
    for task in shared.store.list(&q)?.tasks {
        enqueue(shared, &task);
    }
    Ok(())
}

/// Follows committed events: queues tasks that became pending, signals cancellations.
pub fn feed(shared: &Shared, mut sub: Subscription) {
    while !shared.stop.load(Ordering::Acquire) {
        let c = match sub.next_timeout(POLL) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                if !shared.stop.load(Ordering::Acquire) {
                    tracing::warn!(error = %e, "runtime feed stopped");
                }
                return;
            }
        };
        match &c.event.kind {
            EventKind::Created { .. }
            | EventKind::Retried
            | EventKind::Requeued { .. }
            | EventKind::Interrupted { .. }
            | EventKind::Imported { .. } => {
                if let Ok(task) = shared.store.get(&c.event.task_id) {
                    enqueue(shared, &task);
                }
            }
            EventKind::Cancelled { .. } => {
                if let Some(sig) = shared.running.lock().get(&c.event.task_id) {
                    sig.cancel();
                }
            }
            _ => {}
        }
    }
}

/// Sends heartbeats for running tasks and recovers tasks whose lease expired.
pub fn supervise(shared: &Shared) {
    let o = &shared.options;
    let mut next_heartbeat = Instant::now();
    let mut next_check = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next_heartbeat {
            let ids: Vec<String> = shared.running.lock().keys().cloned().collect();
            for id in ids {
                if let Err(e) = shared.store.heartbeat(&id, &o.owner, o.lease_ms) {
                    tracing::debug!(task = %id, error = %e, "heartbeat refused");
                }
            }
            next_heartbeat = now + Duration::from_millis(o.heartbeat_ms.max(1));
        }
        if now >= next_check {
            if let Err(e) = recover_expired(shared) {
                tracing::warn!(error = %e, "lease supervision failed");
            }
            next_check = now + Duration::from_millis(o.supervise_ms.max(1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn recover_expired(shared: &Shared) -> Result<()> {
    let now = crate::task::Timestamp::now();
    let q = Query {
        filter: Filter {
            states: vec![TaskState::Running],
            ..Filter::default()
        },
        ..Query::default()
    };
    for task in shared.store.list(&q)?.tasks {
        let expired = task.lease.as_ref().is_some_and(|l| l.expires_at < now);
        if expired && !shared.running.lock().contains_key(&task.id) {
            shared.counters.lock().stuck += 1;
            super::recovery::recover_one(shared, &task, "lease expired")?;
        }
    }
    Ok(())
}

/// A worker: claims the next ready task and runs it, until the runtime stops.
pub fn work(shared: &Shared) {
    while let Some(entry) = next_entry(shared) {
        claim_and_run(shared, &entry);
        // Taken from the queue in `next_entry`; over now (a retry was queued again before).
        shared.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn claim_and_run(shared: &Shared, entry: &super::queue::Entry) {
    let Some(kind) = shared.kinds.read().get(&entry.kind).cloned() else {
        return;
    };
    let task = match shared
        .store
        .claim(&entry.id, &shared.options.owner, shared.options.lease_ms)
    {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(task = %entry.id, error = %e, "claim refused (taken, cancelled or removed)");
            return;
        }
    };
    run(shared, &kind, task);
}

fn next_entry(shared: &Shared) -> Option<super::queue::Entry> {
    let mut q = shared.queue.lock();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        let now = now_ms();
        if let Some(e) = q.pop(now) {
            shared.busy.fetch_add(1, Ordering::AcqRel);
            return Some(e);
        }
        let wait = q.next_due_ms().map_or(POLL, |due| {
            Duration::from_millis((due - now).clamp(1, 100) as u64)
        });
        shared.queue_cv.wait_for(&mut q, wait);
    }
}

fn run(shared: &Shared, kind: &super::Kind, task: Task) {
    let id = task.id.clone();
    let cancel = Arc::new(CancelSignal::default());
    shared.running.lock().insert(id.clone(), cancel.clone());
    let input = task
        .metadata
        .get(META_INPUT)
        .cloned()
        .unwrap_or(Value::Null);
    let resume_from = if matches!(kind.recovery, Recovery::Restart) {
        None
    } else {
        task.checkpoint.clone()
    };
    let ctx = TaskContext {
        store: shared.store.clone(),
        owner: shared.options.owner.clone(),
        resume_from,
        cancel: cancel.clone(),
        shutting_down: shared.shutting_down.clone(),
        task,
    };
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| kind.handler.run(&ctx, input)));
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let outcome = match outcome {
        Ok(r) => r,
        Err(panic) => Err(format!("handler panicked: {}", panic_message(&panic))),
    };
    if let Err(e) = record_outcome(shared, kind, &ctx, outcome, cancel.is_cancelled()) {
        tracing::warn!(task = %id, error = %e, "could not record the outcome (the task moved on without this worker)");
    }
    shared.counters.lock().record_run(elapsed_ms);
    shared.running.lock().remove(&id);
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn record_outcome(
    shared: &Shared,
    kind: &super::Kind,
    ctx: &TaskContext,
    outcome: std::result::Result<Value, String>,
    cancelled: bool,
) -> Result<()> {
    let owner = &shared.options.owner;
    let attempt = ctx.task.attempt;
    let fenced = |c: Change| {
        Mutation::new(ctx.task.id.clone(), c)
            .fenced_claim(owner.clone(), attempt, ctx.claim_lsn())
            .actor(owner.clone())
    };
    if cancelled {
        shared.counters.lock().cancelled += 1;
        return shared
            .store
            .apply(fenced(Change::Cancel {
                reason: Some("cancelled while running".into()),
            }))
            .map(|_| ());
    }
    if outcome.is_err() && shared.shutting_down.load(Ordering::Acquire) {
        // The handler stopped because the runtime is shutting down (as `is_shutting_down`
        // asks it to): that is not a failure. Back to pending, keeping the checkpoint, so the
        // next start resumes it, with neither a retry nor an error counted.
        return shared
            .store
            .apply(fenced(Change::Interrupt {
                reason: "runtime shut down".into(),
                to: TaskState::Pending,
            }))
            .map(|_| ());
    }
    match outcome {
        Ok(result) => {
            shared.counters.lock().succeeded += 1;
            shared
                .store
                .apply(fenced(Change::Complete {
                    result: Some(result),
                }))
                .map(|_| ())
        }
        Err(error) => {
            shared.counters.lock().failed += 1;
            if attempt >= kind.retry.max_attempts {
                return shared
                    .store
                    .apply(fenced(Change::Fail { error }))
                    .map(|_| ());
            }
            let not_before = now_ms() + kind.retry.delay_ms(attempt + 1) as i64;
            let mut update = TaskUpdate::default();
            update
                .set_metadata
                .insert(META_NOT_BEFORE.into(), Value::from(not_before));
            // Failure, retry and backoff commit together: a crash cannot lose the retry.
            let batch = vec![
                fenced(Change::Fail { error }),
                Mutation::new(ctx.task.id.clone(), Change::Retry).actor(owner.clone()),
                Mutation::new(ctx.task.id.clone(), Change::Update(update)).actor(owner.clone()),
            ];
            let after = shared.store.batch(batch)?;
            shared.counters.lock().retries += 1;
            // Queue the retry now rather than waiting for the feed, so that the runtime is
            // never seen idle while a retry is due (the feed's copy is ignored as a duplicate,
            // or its claim fails).
            if let Some(t) = after.last() {
                enqueue(shared, t);
            }
            Ok(())
        }
    }
}
