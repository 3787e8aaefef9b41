//! `runtime`: runs tasks, not only records them. Register a handler per task kind, submit tasks
//! with a JSON input and a priority, and a pool of worker threads claims them under a lease,
//! runs them with progress, checkpoints, outputs and cancellation, retries failures with
//! backoff, and after a crash resumes interrupted work by each kind's recovery strategy.
//!
//! Uses only the store's public API. A task's kind and input live in its metadata
//! (`runtime.kind`, `runtime.input`); a retry's earliest start in `runtime.not_before`.

mod context;
mod handler;
mod health;
mod metrics;
mod observe;
mod queue;
mod recovery;
pub mod schedule;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::Value;

pub use context::{CancelSignal, TaskContext};
pub use handler::{
    ABANDON_AFTER_DEFAULT, AutoRecovery, Handler, HandlerError, Kind, Recovery, RetryPolicy,
    Validator,
};
pub use health::RuntimeHealth;
pub use metrics::{
    HealthLevel, METRICS_WINDOW_SECS, RECENT_FAILURE_WINDOW_SECS, RecoveryFigures, recovery_figures,
};
pub use observe::health_from_store;
pub use recovery::META_RECOVERY;

use crate::error::{Error, Result};
use crate::store::{InterruptedPolicy, Store, StoreOptions};
use crate::task::{NewTask, Task, TaskState, Timestamp};
use health::Counters;
use queue::Queue;

/// Metadata key holding a task's kind (the store's per-kind rules read the same key).
pub const META_KIND: &str = crate::store::kinds::META_KIND;
/// Metadata key holding a task's input.
pub const META_INPUT: &str = "runtime.input";
/// Metadata key holding the earliest start of a delayed task or a retry (ms since the epoch).
pub const META_NOT_BEFORE: &str = crate::task::META_NOT_BEFORE;
/// Metadata key holding a task's own attempt time limit in milliseconds (overrides its
/// kind's `Kind::timeout`).
pub const META_TIMEOUT_MS: &str = "runtime.timeout_ms";

pub use crate::store::unique::{META_UNIQUE_FOR_MS, META_UNIQUE_KEY};

/// How long a unique key keeps a second submit from creating a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UniqueScope {
    /// While the task holding the key is pending or running.
    Active,
    /// For this long after the holder was created, whatever its state.
    For(Duration),
}

/// Gives `new` a unique key: a submit while the key is held in `scope` returns the holder
/// instead of creating a task (enforced by the store, atomically, durable across restarts).
pub fn unique(new: NewTask, key: &str, scope: UniqueScope) -> NewTask {
    let new = new.meta(META_UNIQUE_KEY, Value::String(key.into()));
    match scope {
        UniqueScope::Active => new,
        UniqueScope::For(d) => new.meta(
            META_UNIQUE_FOR_MS,
            Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ),
    }
}

/// Runtime options.
///
/// ## Defaults
/// - `workers`: 4 threads.
/// - `lease_ms`: 30,000 (a worker's claim lapses 30 s after its last heartbeat).
/// - `heartbeat_ms`: a third of the lease.
/// - `supervise_ms`: 1,000 (how often expired leases are looked for).
/// - `owner`: `worker-<pid>-<random>`.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Worker threads.
    pub workers: usize,
    /// Lease length.
    pub lease_ms: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Supervision period.
    pub supervise_ms: u64,
    /// This runtime's lease owner name.
    pub owner: String,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            workers: 4,
            lease_ms: 30_000,
            heartbeat_ms: 10_000,
            supervise_ms: 1_000,
            owner: format!("worker-{}-{:04x}", std::process::id(), fastrand::u16(..)),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) options: RuntimeOptions,
    pub(crate) kinds: RwLock<HashMap<String, Kind>>,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) queue_cv: Condvar,
    pub(crate) running: Mutex<HashMap<String, worker::Running>>,
    /// Workers started to replace abandoned ones.
    pub(crate) extra_threads: Mutex<Vec<JoinHandle<()>>>,
    /// Entries taken from the queue whose claim and run are not over yet (changed under the
    /// queue lock when taking, so that `wait_idle` never sees a task in neither place).
    pub(crate) busy: AtomicUsize,
    pub(crate) stop: AtomicBool,
    pub(crate) shutting_down: Arc<AtomicBool>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) default_policy: InterruptedPolicy,
    /// The cause recorded on work a crash interrupted (`StoreOptions::interrupted_message`).
    pub(crate) interrupted_message: String,
}

/// A pool of workers over a store.
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use tasklog::runtime::{Kind, Runtime, RuntimeOptions};
/// use tasklog::{StoreOptions, TaskState};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let mut rt = Runtime::open(dir.path(), StoreOptions::new(), RuntimeOptions::default())?;
/// rt.register("double", Kind::new(|_, input| {
///     let n = input.as_i64().ok_or("a number, please")?;
///     Ok(json!(n * 2))
/// }));
/// rt.start()?;
/// let id = rt.submit("double", json!(21), 1)?.id;
/// rt.wait_idle(Duration::from_secs(10));
/// let task = rt.store().get(&id)?;
/// assert_eq!((task.state, task.result.as_deref()), (TaskState::Completed, Some(&json!(42))));
/// rt.shutdown(Duration::from_secs(5))?;
/// # Ok(())
/// # }
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Runtime {
    /// Opens the store at `dir` for a runtime. Interrupted tasks are left to the runtime, which
    /// recovers each by its kind's strategy; `store_options`' interrupted policy is the
    /// strategy of kinds that do not choose one.
    pub fn open(
        dir: impl AsRef<Path>,
        store_options: StoreOptions,
        options: RuntimeOptions,
    ) -> Result<Runtime> {
        let default_policy = store_options.interrupted_policy_value();
        let message = store_options.interrupted_message.clone();
        let store = store_options
            .interrupted_policy(InterruptedPolicy::Leave)
            .open(dir)?;
        Ok(Runtime::with_policy(
            store,
            options,
            default_policy,
            message,
        ))
    }

    /// A runtime over an open store (tasks the store already recovered are not seen again).
    pub fn new(store: Store, options: RuntimeOptions) -> Runtime {
        let policy = store.interrupted_policy();
        let message = store.interrupted_message().to_string();
        Runtime::with_policy(store, options, policy, message)
    }

    fn with_policy(
        store: Store,
        options: RuntimeOptions,
        default_policy: InterruptedPolicy,
        interrupted_message: String,
    ) -> Runtime {
        let shared = Arc::new(Shared {
            store,
            options,
            kinds: RwLock::new(HashMap::new()),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            running: Mutex::new(HashMap::new()),
            extra_threads: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            shutting_down: Arc::new(AtomicBool::new(false)),
            counters: Mutex::new(Counters::default()),
            default_policy,
            interrupted_message,
        });
        Runtime {
            shared,
            threads: Vec::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Registers (or replaces) the handler of a kind. Register every kind before `start`.
    pub fn register(&self, kind: &str, k: Kind) {
        self.shared.kinds.write().insert(kind.to_string(), k);
    }

    /// Recovers interrupted work, queues pending tasks of registered kinds, and starts the
    /// workers, the feed of new tasks and the lease supervisor.
    pub fn start(&mut self) -> Result<()> {
        // Subscribe before scanning, so nothing submitted in between is missed (duplicates
        // are harmless: the queue ignores them and a claim of a claimed task fails).
        let sub = self
            .shared
            .store
            .subscribe(self.shared.store.last_lsn() + 1)?;
        let interrupted: Vec<String> = self
            .shared
            .store
            .recovery_report()
            .tasks_interrupted
            .clone();
        recovery::recover(&self.shared, &interrupted)?;
        worker::queue_pending(&self.shared)?;
        let mut spawn = |name: String, f: Box<dyn FnOnce() + Send>| -> Result<()> {
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::io("spawn thread", "", e))?;
            self.threads.push(h);
            Ok(())
        };
        let s = self.shared.clone();
        spawn(
            "tasklog-feed".into(),
            Box::new(move || worker::feed(&s, sub)),
        )?;
        let s = self.shared.clone();
        spawn(
            "tasklog-supervisor".into(),
            Box::new(move || worker::supervise(&s)),
        )?;
        for i in 0..self.shared.options.workers.max(1) {
            let s = self.shared.clone();
            spawn(
                format!("tasklog-worker-{i}"),
                Box::new(move || worker::work(&s)),
            )?;
        }
        Ok(())
    }

    /// Starts a thread that fires this store's due schedules every `every` (see
    /// [`schedule`]), reading the time from `clock`, until the runtime stops. Several
    /// runtimes (or servers) may fire one store's schedules: each fire time still creates
    /// exactly one task.
    pub fn start_scheduler(
        &mut self,
        every: Duration,
        clock: Arc<dyn schedule::Clock>,
    ) -> Result<()> {
        let s = self.shared.clone();
        let h = std::thread::Builder::new()
            .name("tasklog-scheduler".into())
            .spawn(move || fire_schedules(&s, every, clock))
            .map_err(|e| Error::io("spawn thread", "", e))?;
        self.threads.push(h);
        Ok(())
    }

    /// Submits a task of `kind` with `input` and `priority` (0 to 10, higher first).
    pub fn submit(&self, kind: &str, input: Value, priority: u8) -> Result<Task> {
        self.submit_task(kind, NewTask::new(kind), input, priority)
    }

    /// Submits a task with explicit fields (title, tags, request id, ...).
    pub fn submit_task(
        &self,
        kind: &str,
        new: NewTask,
        input: Value,
        priority: u8,
    ) -> Result<Task> {
        if !self.shared.kinds.read().contains_key(kind) {
            return Err(Error::InvalidInput {
                at: Some("kind".into()),
                reason: format!("no handler registered for kind {kind:?}"),
            });
        }
        let new = new
            .meta(META_KIND, Value::String(kind.into()))
            .meta(META_INPUT, input)
            .priority(priority);
        let task = self.shared.store.submit(new)?;
        // The feed queues it too; queueing here as well makes it claimable without waiting.
        worker::enqueue(&self.shared, &task);
        Ok(task)
    }

    /// Sets the admission rules of a kind (concurrency limit, per-key limit, rate limit,
    /// pause). They are the store's, durable and held across every worker of the store: this
    /// runtime's, the server's HTTP workers, any other caller of `Store::claim`.
    pub fn set_kind_settings(
        &self,
        kind: &str,
        settings: crate::store::KindSettings,
    ) -> Result<()> {
        self.shared.store.set_kind_settings(kind, settings)?;
        self.release_kind(kind);
        Ok(())
    }

    /// Pauses a kind: no task of it starts until `resume`; running ones finish. Durable.
    pub fn pause(&self, kind: &str) -> Result<()> {
        self.shared.store.pause_kind(kind).map(|_| ())
    }

    /// Resumes a paused kind. Durable.
    pub fn resume(&self, kind: &str) -> Result<()> {
        self.shared.store.resume_kind(kind)?;
        self.release_kind(kind);
        Ok(())
    }

    fn release_kind(&self, kind: &str) {
        self.shared.queue.lock().release(kind);
        self.shared.queue_cv.notify_all();
    }

    /// Cancels a task: a pending one at once; a running one is signalled and ends as
    /// cancelled when its handler returns.
    pub fn cancel(&self, id: &str) -> Result<()> {
        if let Some(r) = self.shared.running.lock().get(id) {
            r.cancel.cancel();
            return Ok(());
        }
        // Pending, or running outside this runtime: cancel in the store directly.
        self.shared.store.cancel(id, Some("cancelled")).map(|_| ())
    }

    /// Current figures. Recoveries by strategy are counted from the store's histories (the
    /// same figures as `health_from_store`, `tasklog stats` and the server's recovery health),
    /// so they include recoveries done before a restart; the other counters are this
    /// process's.
    pub fn health(&self) -> RuntimeHealth {
        let mut h = self.shared.counters.lock().report();
        match recovery_figures(&self.shared.store, Timestamp::now()) {
            Ok(f) => h.recovered = f.recovered_by_strategy,
            Err(e) => {
                tracing::warn!(error = %e, "recoveries not read from the store; this process's counts shown")
            }
        }
        for ((kind, prio), n) in self.shared.queue.lock().depth() {
            h.queue_depth.entry(kind).or_default().insert(prio, n);
        }
        h.running = self.shared.running.lock().len();
        h
    }

    /// Waits until no task is queued or running, or `timeout` passes. True when idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let idle = {
                let q = self.shared.queue.lock();
                q.is_empty() && self.shared.busy.load(Ordering::Acquire) == 0
            } && self.shared.running.lock().is_empty();
            if idle {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Graceful shutdown: stop claiming, tell running handlers (`is_shutting_down`), wait up
    /// to `timeout` for them, put back to pending (keeping checkpoints) what did not finish,
    /// then close the store.
    pub fn shutdown(mut self, timeout: Duration) -> Result<()> {
        self.stop_threads(timeout);
        let leftover: Vec<String> = self.shared.running.lock().keys().cloned().collect();
        for id in &leftover {
            let m = crate::store::Mutation::new(
                id.clone(),
                crate::store::Change::Interrupt {
                    reason: "runtime shut down".into(),
                    to: TaskState::Pending,
                },
            );
            if let Err(e) = self.shared.store.apply(m) {
                tracing::warn!(task = %id, error = %e, "could not requeue a task at shutdown");
            }
        }
        self.shared.store.close()
    }

    fn stop_threads(&mut self, timeout: Duration) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        self.shared.queue_cv.notify_all();
        let deadline = Instant::now() + timeout;
        while !self.shared.running.lock().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let grace = Instant::now() + Duration::from_millis(500);
        let extra: Vec<JoinHandle<()>> = self.shared.extra_threads.lock().drain(..).collect();
        for h in self.threads.drain(..).chain(extra) {
            while !h.is_finished() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(2));
            }
            // A thread still inside a handler is detached: its writes are fenced out once its
            // task is requeued.
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_threads(Duration::from_secs(5));
        }
    }
}

/// The runtime's scheduler thread: fires due schedules until the runtime stops.
fn fire_schedules(shared: &Shared, every: Duration, clock: Arc<dyn schedule::Clock>) {
    let scheduler =
        schedule::Scheduler::new(shared.store.clone(), clock).actor(shared.options.owner.clone());
    let every = every.max(Duration::from_millis(1));
    while !shared.stop.load(Ordering::Acquire) {
        let started = Instant::now();
        if let Err(e) = scheduler.tick() {
            tracing::warn!(error = %e, "schedule tick failed");
        }
        while !shared.stop.load(Ordering::Acquire) && started.elapsed() < every {
            std::thread::sleep(every.min(Duration::from_millis(20)));
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().0
}
