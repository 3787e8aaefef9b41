//! What a handler sees while it runs: its task, progress/checkpoint/output reporting, the last
//! checkpoint when resumed, and a cancellation signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::error::Result;
use crate::store::{Change, Mutation, Store};
use crate::task::{Checkpoint, OutputKind, Task};

/// A cancellation flag that can be polled or waited on.
#[derive(Debug, Default)]
pub struct CancelSignal {
    flag: AtomicBool,
    /// Raised with `flag` when the cause is the attempt's timeout.
    timed_out: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl CancelSignal {
    /// Raises the signal.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        let _g = self.lock.lock();
        self.cond.notify_all();
    }
    /// Raises the signal because the attempt ran past its timeout.
    pub fn time_out(&self) {
        self.timed_out.store(true, Ordering::Release);
        self.cancel();
    }
    /// True once raised by a timeout.
    pub fn is_timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
    /// True once raised.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
    /// Waits up to `timeout`; true if the signal was raised.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock.lock();
        while !self.is_cancelled() {
            if self.cond.wait_until(&mut g, deadline).timed_out() {
                break;
            }
        }
        self.is_cancelled()
    }
}

/// Asks for a checkpoint each time progress crosses a multiple of `every` percent.
#[derive(Debug, Default)]
pub(crate) struct CheckpointPacer {
    every: Option<u8>,
    /// The multiple of `every` the last checkpoint (or the start) was in.
    bucket: AtomicU8,
    due: AtomicBool,
}

impl CheckpointPacer {
    pub(crate) fn new(every: Option<u8>, from_percent: u8) -> Self {
        let bucket = every.map_or(0, |n| from_percent / n.max(1));
        CheckpointPacer {
            every,
            bucket: AtomicU8::new(bucket),
            due: AtomicBool::new(false),
        }
    }
    fn on_progress(&self, percent: u8) {
        if let Some(n) = self.every
            && percent / n.max(1) > self.bucket.load(Ordering::Acquire)
        {
            self.due.store(true, Ordering::Release);
        }
    }
    fn on_checkpoint(&self, percent: u8) {
        if let Some(n) = self.every {
            self.bucket.store(percent / n.max(1), Ordering::Release);
        }
        self.due.store(false, Ordering::Release);
    }
}

/// The handler's view of its task. Every report is a durable event, fenced by the worker's
/// lease and attempt, so a worker that lost its task cannot write to it.
pub struct TaskContext {
    pub(crate) store: Store,
    pub(crate) task: Task,
    pub(crate) owner: String,
    pub(crate) resume_from: Option<Checkpoint>,
    pub(crate) cancel: Arc<CancelSignal>,
    pub(crate) shutting_down: Arc<AtomicBool>,
    pub(crate) checkpoints: CheckpointPacer,
}

impl TaskContext {
    /// The task as it was claimed.
    pub fn task(&self) -> &Task {
        &self.task
    }
    /// The claim this run holds (the LSN of its `started` event).
    pub(crate) fn claim_lsn(&self) -> u64 {
        self.task
            .lease
            .as_ref()
            .map_or(self.task.last_lsn, |l| l.claim_lsn)
    }
    /// The task id.
    pub fn id(&self) -> &str {
        &self.task.id
    }
    /// The attempt number (1 for the first run).
    pub fn attempt(&self) -> u32 {
        self.task.attempt
    }
    /// The last checkpoint when this run resumes interrupted work.
    pub fn resume_from(&self) -> Option<&Checkpoint> {
        self.resume_from.as_ref()
    }
    /// True once the task was cancelled or its attempt timed out: the handler should stop (its
    /// result is discarded; the task ends as cancelled, or the attempt as timed out).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
    /// True once this attempt ran past its timeout (then `is_cancelled` is true as well): stop
    /// soon, the attempt will fail as timed out whatever the handler returns.
    pub fn is_timed_out(&self) -> bool {
        self.cancel.is_timed_out()
    }
    /// Waits up to `timeout` for cancellation; true if cancelled. Use as an interruptible sleep.
    pub fn wait_cancelled(&self, timeout: Duration) -> bool {
        self.cancel.wait(timeout)
    }
    /// True while the runtime is shutting down: checkpoint and return soon.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
    /// Reports progress (durable when it returns).
    pub fn progress(&self, percent: u8, step: Option<&str>, message: Option<&str>) -> Result<()> {
        self.write(Change::Progress {
            percent,
            step: step.map(Into::into),
            message: message.map(Into::into),
        })?;
        self.checkpoints.on_progress(percent);
        Ok(())
    }
    /// True when the kind's `checkpoint_every_percent` asks for a checkpoint: progress crossed
    /// another multiple of it since the last checkpoint. Taking one clears it.
    pub fn checkpoint_due(&self) -> bool {
        self.checkpoints.due.load(Ordering::Acquire)
    }
    /// Takes a checkpoint (durable when it returns): a resumed attempt receives it.
    pub fn checkpoint(&self, name: &str, data: Value) -> Result<()> {
        let t = self.write_task(Change::Checkpoint {
            name: name.into(),
            data,
            progress: None,
        })?;
        self.checkpoints.on_checkpoint(t.progress.percent);
        Ok(())
    }
    /// Records output.
    pub fn output(&self, kind: OutputKind, content: &str) -> Result<()> {
        self.write(Change::Output {
            kind,
            content: content.into(),
            path: None,
            size_bytes: None,
            mime: None,
        })
    }

    fn write(&self, change: Change) -> Result<()> {
        self.write_task(change).map(|_| ())
    }

    fn write_task(&self, change: Change) -> Result<Task> {
        let m = Mutation::new(self.task.id.clone(), change)
            .fenced_claim(self.owner.clone(), self.task.attempt, self.claim_lsn())
            .actor(self.owner.clone());
        self.store.apply(m)
    }
}
