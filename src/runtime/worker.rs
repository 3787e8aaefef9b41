//! The runtime's threads: workers that claim and run tasks, the feed that queues new and
//! retried tasks from the store's committed events, and the supervisor that sends heartbeats
//! and recovers tasks whose lease expired.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::context::{CancelSignal, TaskContext};
use super::{META_INPUT, META_KIND, META_NOT_BEFORE, META_TIMEOUT_MS, Recovery, Shared, now_ms};
use crate::error::Result;
use crate::store::{Change, Filter, Mutation, Query, Subscription};
use crate::task::{EventKind, Task, TaskState, TaskUpdate};

const POLL: Duration = Duration::from_millis(100);

/// A handler running in this runtime.
pub(crate) struct Running {
    /// Raised to cancel it, or to tell it its attempt timed out.
    pub(crate) cancel: Arc<CancelSignal>,
    /// The claim it runs under (fences every write of the attempt).
    pub(crate) attempt: u32,
    pub(crate) claim_lsn: u64,
    pub(crate) kind: String,
    /// When the attempt times out, and its limit in ms (for the error text).
    pub(crate) deadline: Option<(Instant, u64)>,
    /// How long after the deadline a handler that has not returned is abandoned.
    pub(crate) abandon_after: Duration,
    /// Set (under the `running` lock) when supervision gave up on the handler: its worker
    /// thread was replaced and must exit once the handler returns.
    pub(crate) abandoned: Arc<AtomicBool>,
}

/// The kind of a task run by the runtime.
pub fn kind_of(task: &Task) -> Option<&str> {
    task.metadata.get(META_KIND).and_then(Value::as_str)
}

/// A task's earliest start (ms since the epoch; 0 when it has none).
fn not_before_of(task: &Task) -> i64 {
    task.metadata
        .get(META_NOT_BEFORE)
        .and_then(Value::as_i64)
        .unwrap_or(0)
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
    let not_before = not_before_of(task);
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
                if let Some(r) = shared.running.lock().get(&c.event.task_id) {
                    r.cancel.cancel();
                }
            }
            _ => {}
        }
    }
}

/// Sends heartbeats for running tasks, enforces attempt timeouts and recovers tasks whose
/// lease expired.
pub fn supervise(shared: &Arc<Shared>) {
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
        check_timeouts(shared);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tells handlers past their deadline to stop, and abandons those that ignored it for longer
/// than their kind allows.
fn check_timeouts(shared: &Arc<Shared>) {
    let now = Instant::now();
    let mut give_up = Vec::new();
    {
        let running = shared.running.lock();
        for (id, r) in running.iter() {
            let Some((deadline, timeout_ms)) = r.deadline else {
                continue;
            };
            if now < deadline || (r.cancel.is_cancelled() && !r.cancel.is_timed_out()) {
                continue;
            }
            if !r.cancel.is_timed_out() {
                tracing::info!(task = %id, timeout_ms, "attempt timed out; asking the handler to stop");
                r.cancel.time_out();
                shared.counters.lock().timed_out += 1;
            }
            if deadline
                .checked_add(r.abandon_after)
                .is_some_and(|at| now >= at)
            {
                give_up.push(id.clone());
            }
        }
    }
    for id in give_up {
        abandon(shared, &id);
    }
}

/// Gives up on a timed-out handler that did not return: fails its attempt without it (fenced
/// by its claim, so whichever of the two writes first wins and the other is refused), and
/// replaces its worker thread, which exits once the handler returns.
fn abandon(shared: &Arc<Shared>, id: &str) {
    let Some(r) = shared.running.lock().remove(id) else {
        return;
    };
    r.abandoned.store(true, Ordering::Release);
    // The abandoned worker no longer counts as busy (it exits without touching `busy`).
    shared.busy.fetch_sub(1, Ordering::AcqRel);
    shared.counters.lock().abandoned += 1;
    let timeout_ms = r.deadline.map_or(0, |(_, ms)| ms);
    tracing::warn!(task = %id, timeout_ms, "handler ignored its timeout; abandoning it");
    let kind = shared.kinds.read().get(&r.kind).cloned();
    if let Some(kind) = kind {
        let error = format!(
            "timed out after {timeout_ms} ms (the handler ignored cancellation and was abandoned)"
        );
        if let Err(e) = fail_attempt(shared, &kind, id, r.attempt, r.claim_lsn, error) {
            tracing::debug!(task = %id, error = %e, "abandoned attempt already ended");
        }
    }
    if shared.stop.load(Ordering::Acquire) {
        return;
    }
    let s = shared.clone();
    match std::thread::Builder::new()
        .name("tasklog-worker-r".into())
        .spawn(move || work(&s))
    {
        Ok(h) => shared.extra_threads.lock().push(h),
        Err(e) => tracing::warn!(error = %e, "could not replace an abandoned worker"),
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
        if claim_and_run(shared, &entry) {
            // Abandoned after a timeout: a replacement worker took this one's place (and
            // its `busy` count).
            return;
        }
        // Taken from the queue in `next_entry`; over now (a retry was queued again before).
        shared.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Claims and runs one task. True when its handler was abandoned.
fn claim_and_run(shared: &Shared, entry: &super::queue::Entry) -> bool {
    let Some(kind) = shared.kinds.read().get(&entry.kind).cloned() else {
        return false;
    };
    // The entry may be stale: queued from an older copy of the task (the feed's copy of a
    // retry whose next attempt has since failed again and moved `runtime.not_before` further).
    // The store's current copy decides, and the claim is guarded by its version so that a
    // change in between refuses it instead of starting the task early.
    let Ok(current) = shared.store.get(&entry.id) else {
        return false;
    };
    if current.state == TaskState::Pending && not_before_of(&current) > now_ms() {
        enqueue(shared, &current);
        return false;
    }
    let claim = Mutation::new(
        entry.id.clone(),
        Change::Start {
            owner: Some(shared.options.owner.clone()),
            lease_ms: Some(shared.options.lease_ms),
        },
    )
    .expect_version(current.version);
    let task = match shared.store.apply(claim) {
        Ok(t) => t,
        Err(crate::Error::Conflict { .. }) => {
            // Changed since it was read: queue it again from what it is now.
            if let Ok(now) = shared.store.get(&entry.id) {
                enqueue(shared, &now);
            }
            return false;
        }
        Err(crate::Error::Throttled { retry_after_ms, .. }) => {
            hold_kind(shared, entry, retry_after_ms);
            return false;
        }
        Err(e) => {
            tracing::debug!(task = %entry.id, error = %e, "claim refused (taken, cancelled or removed)");
            return false;
        }
    };
    run(shared, &kind, &entry.kind, task)
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

/// How long a kind at its concurrency limit is held back before a claim is tried again (a
/// task of the kind finishing here ends the hold earlier).
const LIMIT_RECHECK_MS: i64 = 25;
/// How long a paused kind is held back before a claim is tried again.
const PAUSE_RECHECK_MS: i64 = 250;

/// The store refused to start a task of this kind now: put the task back in its place and
/// hand out no task of the kind until a claim may succeed again.
fn hold_kind(shared: &Shared, entry: &super::queue::Entry, retry_after_ms: Option<u64>) {
    let wait = match retry_after_ms {
        Some(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
        None if shared
            .store
            .kind_settings()
            .get(&entry.kind)
            .is_some_and(|s| s.paused) =>
        {
            PAUSE_RECHECK_MS
        }
        None => LIMIT_RECHECK_MS,
    };
    let mut q = shared.queue.lock();
    q.restore(entry.clone());
    q.hold(&entry.kind, now_ms().saturating_add(wait));
    drop(q);
    shared.queue_cv.notify_all();
}

/// The attempt's time limit: the task's own `runtime.timeout_ms`, else its kind's.
fn timeout_of(task: &Task, kind: &super::Kind) -> Option<Duration> {
    task.metadata
        .get(META_TIMEOUT_MS)
        .and_then(Value::as_u64)
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .or(kind.timeout)
}

/// Runs a claimed task to its outcome. True when its handler was abandoned.
fn run(shared: &Shared, kind: &super::Kind, kind_name: &str, task: Task) -> bool {
    let id = task.id.clone();
    let cancel = Arc::new(CancelSignal::default());
    let abandoned = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = timeout_of(&task, kind).map(|t| {
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        // A limit beyond the clock's range is no limit: a far deadline.
        let at = started
            .checked_add(t)
            .unwrap_or(started + Duration::from_secs(86_400 * 365));
        (at, ms)
    });
    let claim_lsn = task.lease.as_ref().map_or(task.last_lsn, |l| l.claim_lsn);
    shared.running.lock().insert(
        id.clone(),
        Running {
            cancel: cancel.clone(),
            attempt: task.attempt,
            claim_lsn,
            kind: kind_name.to_string(),
            deadline,
            abandon_after: kind.abandon_after,
            abandoned: abandoned.clone(),
        },
    );
    let input = task
        .metadata
        .get(META_INPUT)
        .cloned()
        .unwrap_or(Value::Null);
    let resume_from =
        if matches!(kind.recovery, Recovery::Restart) || super::recovery::restarts(&task) {
            None
        } else {
            task.checkpoint.as_deref().cloned()
        };
    let ctx = TaskContext {
        store: shared.store.clone(),
        owner: shared.options.owner.clone(),
        resume_from,
        cancel: cancel.clone(),
        shutting_down: shared.shutting_down.clone(),
        checkpoints: super::context::CheckpointPacer::new(
            kind.checkpoint_every_percent,
            task.checkpoint.as_ref().map_or(0, |c| c.progress),
        ),
        task,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| kind.handler.run(&ctx, input)));
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut outcome = match outcome {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(panic) => Err(format!("handler panicked: {}", panic_message(&panic))),
    };
    let timed_out = cancel.is_timed_out();
    if let (true, Some((_, ms))) = (timed_out, deadline) {
        // Start-to-close exceeded: whatever the handler returned, the attempt failed.
        outcome = Err(format!("timed out after {ms} ms"));
    }
    if abandoned.load(Ordering::Acquire) {
        // Supervision failed the attempt already; this write is fenced out unless it won the
        // race, and either way exactly one outcome is recorded.
        if let Err(e) = record_outcome(shared, kind, &ctx, outcome, false) {
            tracing::info!(task = %id, error = %e, "late outcome of an abandoned handler refused");
        }
        return true;
    }
    if let Err(e) = record_outcome(
        shared,
        kind,
        &ctx,
        outcome,
        cancel.is_cancelled() && !timed_out,
    ) {
        tracing::warn!(task = %id, error = %e, "could not record the outcome (the task moved on without this worker)");
    }
    shared.counters.lock().record_run(elapsed_ms);
    let mut running = shared.running.lock();
    // Only this claim's entry: after an abandonment the task may run again here.
    if running.get(&id).is_some_and(|r| r.claim_lsn == claim_lsn) {
        running.remove(&id);
    }
    drop(running);
    // A slot of the kind is free: a kind held at its limit may try again now.
    if shared.queue.lock().release(kind_name) {
        shared.queue_cv.notify_all();
    }
    abandoned.load(Ordering::Acquire)
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
        Err(error) => fail_attempt(shared, kind, &ctx.task.id, attempt, ctx.claim_lsn(), error),
    }
}

/// Fails an attempt (fenced by its claim) and, in the same batch, schedules the retry or,
/// after the last allowed attempt, discards the task.
fn fail_attempt(
    shared: &Shared,
    kind: &super::Kind,
    id: &str,
    attempt: u32,
    claim_lsn: u64,
    error: String,
) -> Result<()> {
    let owner = &shared.options.owner;
    let fail = Mutation::new(id.to_string(), Change::Fail { error })
        .fenced_claim(owner.clone(), attempt, claim_lsn)
        .actor(owner.clone());
    if attempt >= kind.retry.max_attempts {
        // One batch: a crash cannot leave the last failure without its discard, so "failed"
        // always means "a retry may follow" and "discarded" means "none will".
        let discard = Change::Discard {
            reason: Some(format!(
                "attempt {attempt} of {} failed; no attempts left",
                kind.retry.max_attempts
            )),
        };
        shared.store.batch(vec![
            fail,
            Mutation::new(id.to_string(), discard).actor(owner.clone()),
        ])?;
        shared.counters.lock().failed += 1;
        return Ok(());
    }
    let not_before = now_ms() + kind.retry.delay_ms(attempt + 1) as i64;
    let mut update = TaskUpdate::default();
    update
        .set_metadata
        .insert(META_NOT_BEFORE.into(), Value::from(not_before));
    // Failure, retry and backoff commit together: a crash cannot lose the retry.
    let batch = vec![
        fail,
        Mutation::new(id.to_string(), Change::Retry).actor(owner.clone()),
        Mutation::new(id.to_string(), Change::Update(update)).actor(owner.clone()),
    ];
    let after = shared.store.batch(batch)?;
    {
        let mut c = shared.counters.lock();
        c.failed += 1;
        c.retries += 1;
    }
    // Queue the retry now rather than waiting for the feed, so that the runtime is never seen
    // idle while a retry is due (the feed's copy is ignored as a duplicate, or its claim fails).
    if let Some(t) = after.last() {
        enqueue(shared, t);
    }
    Ok(())
}
