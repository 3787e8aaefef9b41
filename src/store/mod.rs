//! `store`: composes the log and the domain. Open and recover, mutate durably, read tasks and
//! their full history, snapshot in the background.
//!
//! A mutation is validated against the current state under the state lock, queued in the log
//! (which assigns its LSN), applied to the in-memory state, and acknowledged to the caller only
//! once the log says it is durable. Reads wait for the durability of what they return, so no
//! reader sees a change that a crash could still take away.

mod abandoned;
pub mod backup;
mod commit;
mod follow;
#[doc(hidden)]
#[cfg(feature = "testing")]
pub mod fuzzing;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod history;
testing_pub_mod!(history);
mod import_staged;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod kinds;
testing_pub_mod!(kinds);
pub mod log;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod mutation;
testing_pub_mod!(mutation);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod options;
testing_pub_mod!(options);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod query;
testing_pub_mod!(query);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod record;
testing_pub_mod!(record);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod recovery;
testing_pub_mod!(recovery);
pub mod repair;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod snapshot;
testing_pub_mod!(snapshot);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod state;
testing_pub_mod!(state);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod stats;
testing_pub_mod!(stats);
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod subscribe;
testing_pub_mod!(subscribe);
mod task_record;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod unique;
testing_pub_mod!(unique);
pub mod verify;
mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

pub use history::{HistoryEvent, HistoryStep};
pub(crate) use import_staged::LastTouches;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use import_staged::set_staging_for_tests;
pub use import_staged::{IMPORT_CHUNK_MUTATIONS, IMPORT_STAGED_MIN_MUTATIONS};
pub use kinds::{KindSettings, PerKeyLimit, RateLimit};
pub use log::Log;
pub use mutation::{Change, Fence, Mutation};
pub use options::{InterruptedPolicy, PendingAtOpen, StoreOptions};
pub use query::{Cursor, Filter, Page, Query, SCAN_PAGE_TASKS, SortKey};
pub use recovery::{RecoveryReport, snapshot_dir, wal_dir};
pub use stats::{CleanupAge, CleanupRule, Health, KeyCounts, Stats};
pub use subscribe::{Committed, Subscription};
pub use view::ReadView;

use crate::error::{Error, Result};
use crate::task::{self, NewTask, OutputKind, Task, TaskState, TaskUpdate, Timestamp};
pub use crate::wal::Durability;
use commit::Staged;
use state::{State, TaskRef};

/// Reads of one history that may start again because a snapshot moved its events from the log
/// to its file meanwhile (each snapshot does it once; more in a row would mean a snapshot
/// per read).
const HISTORY_READ_ATTEMPTS: usize = 3;

/// The reason written when a crash interrupted a running task.
pub const INTERRUPTED_REASON: &str = "interrupted by restart";

/// A durable task store. Cheap to clone; all clones share one store. `Send + Sync`. It closes
/// when its last clone drops ([`Store::close`] closes it early, for every clone).
///
/// ```
/// use tasklog::{NewTask, Store, TaskState};
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let t = store.submit(NewTask::new("resize images"))?;
/// store.start(&t.id)?;
/// assert_eq!(store.complete(&t.id, None)?.state, TaskState::Completed);
/// assert_eq!(store.history(&t.id)?.len(), 3); // created, started, completed
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    options: StoreOptions,
    log: Arc<dyn Log>,
    subscribers: Mutex<Vec<subscribe::Feed>>,
    state: RwLock<State>,
    session: u64,
    /// The first I/O failure: its text and a copy of it (`Error::Poisoned`'s source).
    poisoned: Mutex<Option<(String, Arc<Error>)>>,
    closed: AtomicBool,
    report: RecoveryReport,
    snapshot_lock: Mutex<SnapshotProgress>,
    snapshotter: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    /// Per-kind admission rules, checked at every start under the state lock (taken after
    /// it, never before).
    gate: Mutex<kinds::Gate>,
    /// Unique keys -> their tasks, changed under the state lock (taken after it).
    unique: Mutex<unique::UniqueIndex>,
    /// Held by `Store::follow` (a replica), so that one follower reads at a time.
    follow_lock: Mutex<()>,
}

#[derive(Default)]
struct SnapshotProgress {
    last_lsn: u64,
}

/// What a snapshot wrote.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The snapshot file.
    pub path: PathBuf,
    /// The last LSN it covers.
    pub lsn: u64,
    /// Its size.
    pub bytes: u64,
    /// Log segments removed because the kept snapshots cover them.
    pub segments_removed: usize,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let (wal, state, report) = recovery::recover(&dir, &options)?;
        Store::finish_open(dir, options, Arc::new(wal), state, report)
    }

    /// Opens the store in `dir` over a caller-supplied log (see
    /// [`StoreOptions::open_with_log`]).
    fn open_over(dir: &Path, options: StoreOptions, log: Arc<dyn Log>) -> Result<Store> {
        let dir = dir.to_path_buf();
        let (log, state, report) = recovery::recover_over(&dir, &options, log)?;
        Store::finish_open(dir, options, Arc::new(log), state, report)
    }

    /// The rest of an open, once the state is rebuilt from the log: the same for every log.
    fn finish_open(
        dir: PathBuf,
        options: StoreOptions,
        log: Arc<dyn Log>,
        state: State,
        mut report: RecoveryReport,
    ) -> Result<Store> {
        let last_snapshot = report.snapshot_lsn;
        let session = fastrand::u64(1..);
        let gate = load_kind_rules(&options, &dir, log.as_ref())?;
        if !options.read_only {
            let mut ids = state.orphaned_running(session);
            ids.extend(state.expired_leases(Timestamp::now()));
            ids.sort();
            ids.dedup();
            report.tasks_interrupted = ids;
            report.interrupted_policy = format!("{:?}", options.interrupted_policy);
        }
        let store = Store {
            inner: Arc::new(Inner {
                dir,
                session,
                log,
                subscribers: Mutex::new(Vec::new()),
                state: RwLock::new(state),
                poisoned: Mutex::new(None),
                closed: AtomicBool::new(false),
                report,
                snapshot_lock: Mutex::new(SnapshotProgress {
                    last_lsn: last_snapshot,
                }),
                snapshotter: Mutex::new(None),
                gate: Mutex::new(gate),
                unique: Mutex::new(unique::UniqueIndex::default()),
                follow_lock: Mutex::new(()),
                options,
            }),
        };
        if !store.inner.options.read_only {
            store.recover_interrupted()?;
            store.start_snapshotter();
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What opening found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    // ----- mutations -------------------------------------------------------------------------

    /// Applies mutations atomically: all are validated first; then they are written as one
    /// batch, which after any crash is either wholly present or wholly absent. Returns each
    /// mutation's task as it stands after the batch (a removed task as it was before).
    pub fn batch(&self, mutations: Vec<Mutation>) -> Result<Vec<Task>> {
        Ok(self
            .batch_results(mutations)?
            .into_iter()
            .filter_map(|(_, t)| t)
            .collect())
    }

    /// Applies mutations atomically like [`Store::batch`], without handing the tasks back:
    /// the path for bulk writers (no copy of each task is made). Returns the LSN of the last
    /// event written, durable under the store's durability mode (0 when nothing was written,
    /// e.g. only repeated submits).
    pub fn write_batch(&self, mutations: Vec<Mutation>) -> Result<u64> {
        let (_, last_lsn) = self.commit(mutations, false, Stale::Refuse)?;
        Ok(last_lsn)
    }

    /// [`Store::batch`], with each mutation's task id and its task (`None` when a repeated
    /// submit's task has since been removed).
    fn batch_results(&self, mutations: Vec<Mutation>) -> Result<Vec<(String, Option<Task>)>> {
        Ok(self.commit(mutations, true, Stale::Refuse)?.0)
    }

    /// Validates, logs, applies and waits for durability; with `want_results`, also returns
    /// each mutation's task id and task. With [`Stale::Skip`], a mutation whose expected version
    /// no longer matches is left out instead of failing the batch.
    fn commit(
        &self,
        mut mutations: Vec<Mutation>,
        want_results: bool,
        stale: Stale,
    ) -> Result<(Vec<TaskResult>, u64)> {
        self.check_writable()?;
        let now = Timestamp::now();
        let mut st = self.inner.state.write();
        let base = self.inner.log.next_lsn();
        let mut staged = Staged::new(&mutations);
        let mut unique = self.inner.unique.lock();
        let check_unique = unique::UniqueIndex::wanted_by(&mutations);
        // By reference: staging takes each mutation's contents (see `Staged::stage`).
        for m in &mut mutations {
            let holder = if check_unique {
                unique.holder(&st, &staged.events, m, now)
            } else {
                Ok(None)
            };
            let staged_one = match holder {
                // The key is held: the submit returns the holder and writes nothing.
                Ok(Some(id)) => {
                    staged.push_existing(id);
                    Ok(())
                }
                Ok(None) => staged.stage(&st, m, now, self.inner.session, base),
                Err(e) => Err(e),
            };
            match staged_one {
                Ok(()) => {}
                Err(Error::Conflict { .. }) if stale == Stale::Skip => {}
                Err(e) => {
                    // A refusal reveals the state it was judged against: answer only once
                    // that state is durable, or a crash could take back what it revealed.
                    let applied = st.applied_lsn;
                    drop(unique);
                    drop(st);
                    self.settle(applied)?;
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.admit(&st, &staged, now) {
            let applied = st.applied_lsn;
            drop(unique);
            drop(st);
            self.settle(applied)?;
            return Err(e);
        }
        if staged.events.is_empty() {
            drop(unique);
            let results = results_of(&staged, &st);
            drop(st);
            return Ok((self.settle_all(results)?, 0));
        }
        // All records in one buffer: one allocation per batch, not one per event.
        let mut buf = Vec::with_capacity(staged.events.len() * 160);
        let mut ends = Vec::with_capacity(staged.events.len());
        for e in &staged.events {
            record::encode_event_into(&mut buf, e)?;
            ends.push(buf.len());
        }
        let mut refs: Vec<&[u8]> = Vec::with_capacity(ends.len());
        let mut start = 0;
        for &end in &ends {
            refs.push(&buf[start..end]);
            start = end;
        }
        // NOTE: an event over the log's record limit is the caller's input, refused before any
        // I/O: it must not poison the store (the log refuses it the same way, as a backstop).
        if let Some(big) = refs.iter().find(|r| r.len() > crate::wal::RECORD_BYTES_MAX) {
            return Err(Error::TooLarge {
                what: "event",
                len: big.len() as u64,
                max: crate::wal::RECORD_BYTES_MAX as u64,
            });
        }
        let ticket = self
            .inner
            .log
            .submit(&refs)
            .map_err(|e| self.poison_unless_input(e))?;
        if ticket.first_lsn() != base {
            // Only a caller-supplied log can get here (the local one assigns LSNs under the
            // same lock). Memory and log would disagree: refuse every later write.
            return Err(self.poison(Error::corrupt(
                self.inner.dir.clone(),
                None,
                Some(ticket.first_lsn()),
                format!(
                    "the log assigned LSN {} to a batch that must start at LSN {base}: LSNs must be contiguous",
                    ticket.first_lsn()
                ),
            )));
        }
        let ids = if want_results {
            staged.ids()
        } else {
            Vec::new()
        };
        let removed = std::mem::take(&mut staged.removed);
        let keyed: Vec<String> = if unique.is_built() {
            staged
                .events
                .iter()
                .filter(|e| unique::UniqueIndex::may_key(e))
                .map(|e| e.task_id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut subscribers = self.inner.subscribers.lock();
        let mut last_lsn = base;
        // By reference: an event moved out of the vector and down the calls by value would be
        // copied at each step (see `task::apply::apply`).
        let events = staged.events.iter_mut().zip(&staged.event_slots);
        for (i, ((event, &slot), bytes)) in events.zip(&refs).enumerate() {
            let lsn = base + i as u64;
            let published = (!subscribers.is_empty()).then(|| event.clone());
            // The batch is in the log already: if memory cannot follow, stop accepting
            // writes (poison) rather than diverge from the log.
            install_staged(&mut st, lsn, event, record::event_body(bytes), slot)
                .map_err(|e| self.poison(e))?;
            st.mark_applied(lsn, bytes.len());
            last_lsn = lsn;
            if let Some(event) = published {
                // Published in LSN order under the state lock; subscribers deliver an event
                // only after it is durable.
                let c = Arc::new(subscribe::Committed { lsn, event });
                subscribers.retain(|tx| tx.send(c.clone()).is_ok());
            }
        }
        drop(subscribers);
        unique.after_commit(&st, &keyed);
        drop(unique);
        let results: Vec<(String, Option<Task>)> = ids
            .into_iter()
            .map(|id| {
                let task = st
                    .task(&id)
                    .map(TaskRef::into_owned)
                    .or_else(|| removed.get(&id).cloned());
                (id, task)
            })
            .collect();
        let snapshot_due = self.snapshot_due(&st);
        drop(st);
        log::wait(self.inner.log.as_ref(), ticket).map_err(|e| self.poison(e))?;
        if snapshot_due {
            self.request_snapshot();
        }
        Ok((results, last_lsn))
    }

    /// Checks the batch's starts against the kinds' admission rules.
    fn admit(&self, st: &State, staged: &Staged, now: Timestamp) -> Result<()> {
        let mut gate = self.inner.gate.lock();
        if gate.is_open() {
            return Ok(());
        }
        let events = &staged.events;
        // The metadata of a task this batch starts: as the batch leaves it while it is still
        // active; for a task this batch creates, its `created` event's (so a submit and start
        // together are checked); for a task the batch starts and also finishes, as it was
        // before the batch (it was pending then, or the start would have been refused).
        let meta_of = |id: &str| {
            staged
                .current_active(st, id)
                .map(|t| &t.metadata)
                .or_else(|| {
                    events.iter().find_map(|e| match &e.kind {
                        task::EventKind::Created { metadata, .. } if e.task_id == id => {
                            Some(metadata)
                        }
                        _ => None,
                    })
                })
                .or_else(|| st.active_task(id).map(|t| &t.metadata))
        };
        gate.admit(st, events, meta_of, now.0)
    }

    // ----- kinds -----------------------------------------------------------------------------

    /// The admission rules of every kind that has some (pause, concurrency and rate limits).
    pub fn kind_settings(&self) -> std::collections::BTreeMap<String, KindSettings> {
        self.inner.gate.lock().settings().clone()
    }

    /// True when some kind has admission rules.
    pub fn has_kind_rules(&self) -> bool {
        !self.inner.gate.lock().is_open()
    }

    /// Sets the admission rules of `kind` (the default settings remove its entry). Durable
    /// when it returns: written to `kinds.json` before it takes effect.
    pub fn set_kind_settings(&self, kind: &str, settings: KindSettings) -> Result<()> {
        self.check_writable()?;
        // The state lock first, as in a commit: a start is judged wholly under the old
        // settings or wholly under the new.
        let _st = self.inner.state.write();
        let mut gate = self.inner.gate.lock();
        let all = gate.with(kind, settings)?;
        let bytes = kinds::Gate::encode(&all)?;
        // Beside a shared log first: a change that could not be kept there applies nowhere.
        self.inner.log.keep_setting(kinds::KINDS_FILE, &bytes)?;
        kinds::Gate::save(self.inner.options.storage.as_ref(), &self.inner.dir, &bytes)?;
        tracing::info!(kind, "kind settings changed");
        gate.install(all);
        Ok(())
    }

    /// Pauses a kind: no task of it starts until it is resumed; running ones finish. Durable.
    pub fn pause_kind(&self, kind: &str) -> Result<KindSettings> {
        let s = self
            .kind_settings()
            .remove(kind)
            .unwrap_or_default()
            .paused(true);
        self.set_kind_settings(kind, s.clone())?;
        Ok(s)
    }

    /// Resumes a paused kind. Durable.
    pub fn resume_kind(&self, kind: &str) -> Result<KindSettings> {
        let s = self
            .kind_settings()
            .remove(kind)
            .unwrap_or_default()
            .paused(false);
        self.set_kind_settings(kind, s.clone())?;
        Ok(s)
    }

    /// Applies one mutation.
    pub fn apply(&self, m: Mutation) -> Result<Task> {
        let (id, task) = self.batch_results(vec![m])?.pop().ok_or(Error::Closed)?;
        // A repeated submit whose task was removed since: nothing to return.
        task.ok_or(Error::NotFound { id })
    }

    /// Creates a task. With a request id already seen, returns the task created then.
    pub fn submit(&self, new: NewTask) -> Result<Task> {
        self.apply(Mutation::submit(new))
    }

    /// pending -> running.
    pub fn start(&self, id: &str) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Start {
                owner: None,
                lease_ms: None,
            },
        ))
    }

    /// Reports progress of a running task.
    pub fn progress(
        &self,
        id: &str,
        percent: u8,
        step: Option<&str>,
        message: Option<&str>,
    ) -> Result<Task> {
        let change = Change::Progress {
            percent,
            step: step.map(Into::into),
            message: message.map(Into::into),
        };
        self.apply(Mutation::new(id, change))
    }

    /// Takes a checkpoint of a running task.
    pub fn checkpoint(&self, id: &str, name: &str, data: Value) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Checkpoint {
                name: name.into(),
                data,
                progress: None,
            },
        ))
    }

    /// Records an output entry.
    pub fn output(&self, id: &str, kind: OutputKind, content: &str) -> Result<Task> {
        let change = Change::Output {
            kind,
            content: content.into(),
            path: None,
            size_bytes: None,
            mime: None,
        };
        self.apply(Mutation::new(id, change))
    }

    /// running -> completed.
    pub fn complete(&self, id: &str, result: Option<Value>) -> Result<Task> {
        self.apply(Mutation::new(id, Change::Complete { result }))
    }

    /// running -> failed.
    pub fn fail(&self, id: &str, error: &str) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Fail {
                error: error.into(),
            },
        ))
    }

    /// pending|running -> cancelled.
    pub fn cancel(&self, id: &str, reason: Option<&str>) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Cancel {
                reason: reason.map(Into::into),
            },
        ))
    }

    /// running -> pending.
    pub fn requeue(&self, id: &str, reason: Option<&str>) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Requeue {
                reason: reason.map(Into::into),
            },
        ))
    }

    /// failed|cancelled|discarded -> pending, with the attempt number one higher.
    pub fn retry(&self, id: &str) -> Result<Task> {
        self.apply(Mutation::new(id, Change::Retry))
    }

    /// failed -> discarded: records that nothing will retry the task (a retry by hand still
    /// can).
    pub fn discard(&self, id: &str, reason: Option<&str>) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Discard {
                reason: reason.map(Into::into),
            },
        ))
    }

    /// Changes descriptive fields.
    pub fn update(&self, id: &str, update: TaskUpdate) -> Result<Task> {
        self.apply(Mutation::new(id, Change::Update(update)))
    }

    /// Removes a task. Its history stays readable through [`Store::history`].
    pub fn remove(&self, id: &str, reason: Option<&str>) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Remove {
                reason: reason.map(Into::into),
            },
        ))
    }

    // ----- reads -----------------------------------------------------------------------------

    /// The task with this id.
    pub fn get(&self, id: &str) -> Result<Task> {
        let (task, applied) = {
            let st = self.inner.state.read_recursive();
            (st.task(id).map(TaskRef::into_owned), st.applied_lsn)
        };
        self.found(id, task, applied, |t| t.last_lsn)
    }

    /// Answers a read of one task: once the task's last change is durable, or, when there is
    /// no such task, once everything applied when it was looked up is durable (a removal
    /// could otherwise be revealed before a crash takes it back).
    fn found<T>(
        &self,
        id: &str,
        value: Option<T>,
        applied: u64,
        lsn_of: impl FnOnce(&T) -> u64,
    ) -> Result<T> {
        match value {
            Some(v) => {
                self.settle(lsn_of(&v))?;
                Ok(v)
            }
            None => {
                self.settle(applied)?;
                Err(Error::NotFound { id: id.to_string() })
            }
        }
    }

    /// The task with this id, shared rather than copied (`get` copies a task's strings).
    ///
    /// NOTE: the store changes a task in place while nobody else holds it; the first change
    /// after this call while the `Arc` is still held copies the task once. Hold it briefly.
    /// A finished task (completed, failed, cancelled, discarded) is held encoded and decoded
    /// for each call, so for it this costs what `get` costs.
    pub fn get_shared(&self, id: &str) -> Result<Arc<Task>> {
        let (task, applied) = {
            let st = self.inner.state.read_recursive();
            (st.task_shared(id), st.applied_lsn)
        };
        self.found(id, task, applied, |t| t.last_lsn)
    }

    /// Recounts the statistics counters and query indexes from the tasks and compares them
    /// with those kept as events apply. For tests; `Err` describes the first difference.
    #[doc(hidden)]
    pub fn check_indexes(&self) -> std::result::Result<(), String> {
        self.inner.state.read_recursive().check_indexes()
    }

    /// Bytes of history events held in memory: those not yet in a snapshot on disk. For tests
    /// and benchmarks.
    #[doc(hidden)]
    pub fn history_heap_bytes(&self) -> usize {
        self.inner.state.read().history_heap_bytes()
    }

    /// Runs `f` on the state under the write lock. For measurements (`examples/open_store
    /// --memory` drops and rebuilds the indexes to weigh them); `f` must leave the state as it
    /// found it.
    #[doc(hidden)]
    #[cfg(feature = "testing")]
    pub fn with_state_mut<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.state.write())
    }

    /// Every event of the task, in order; also for tasks that were removed.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEvent>> {
        let mut attempt = 0;
        loop {
            let (history, applied) = {
                let st = self.inner.state.read_recursive();
                (st.history(id).cloned(), st.applied_lsn)
            };
            let history = self.found(id, history, applied, |_| 0)?;
            let events = match history.events_from(Some(self.inner.log.as_ref())) {
                Ok(events) => events,
                // NOTE: the copy was taken under the lock and read after it: a snapshot may
                // have moved its events from the log into the snapshot file and compacted the
                // log meanwhile. The history in the state then points at the snapshot: read
                // again. A failure with the history unchanged is reported.
                Err(e) if history.reads_log() && attempt < HISTORY_READ_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, id, attempt, "history moved while read; reading again");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(last) = events.last() {
                self.settle(last.lsn)?;
            }
            return Ok(events);
        }
    }

    /// The states before and after each event of the task, oldest first; also for tasks that
    /// were removed. Unlike [`Store::history`] no event is decoded and nothing is read from
    /// the log (the entry headers are in memory, or in one read of the snapshot file), so a
    /// walk over every task's steps costs a fraction of one over their histories: the runtime's
    /// figures use it to find the few tasks whose history they must read.
    pub fn history_steps(&self, id: &str) -> Result<Vec<HistoryStep>> {
        let (history, applied) = {
            let st = self.inner.state.read_recursive();
            (st.history(id).cloned(), st.applied_lsn)
        };
        let steps = self.found(id, history, applied, |_| 0)?.steps()?;
        if let Some(last) = steps.last() {
            self.settle(last.lsn)?;
        }
        Ok(steps)
    }

    /// Runs `f` on the current state under the read lock, after waiting until everything
    /// applied so far is durable.
    pub(crate) fn read_state<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        let (out, lsn) = {
            let st = self.inner.state.read_recursive();
            (f(&st), st.applied_lsn)
        };
        self.settle(lsn)?;
        Ok(out)
    }

    /// Lists tasks matching a query: a [`Query`], a [`Filter`] (all matches, oldest first), or
    /// a reference to either.
    ///
    /// ```
    /// use tasklog::{NewTask, Query, Store, TaskState};
    ///
    /// # fn main() -> tasklog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// for n in 0..3 {
    ///     store.submit(NewTask::new(format!("job {n}")).tag("nightly"))?;
    /// }
    /// let page = store.list(Query::new().state(TaskState::Pending).tag("nightly").limit(2))?;
    /// assert_eq!(page.tasks.len(), 2);
    /// let rest = store.list(Query::new().tag("nightly").after(page.next_cursor.unwrap()))?;
    /// assert_eq!(rest.tasks.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(&self, query: impl Into<Query>) -> Result<Page> {
        let query = query.into();
        self.read_state(|st| query::run(st, &query))
    }

    /// Calls `f` with every task matching `filter`, in creation order, a page of
    /// [`SCAN_PAGE_TASKS`] at a time: memory holds one page, not every
    /// match (a million finished tasks are about 1 GB as `Task` values), and the state lock is
    /// taken once per page, not for the whole walk. The pages follow a cursor on creation time
    /// and id, which never change, so a task that lives through the walk is seen once; one
    /// created or removed meanwhile may be seen or not. Stops at `f`'s first error.
    pub fn for_each_task(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(Task) -> Result<()>,
    ) -> Result<()> {
        let mut query = Query {
            filter: filter.clone(),
            limit: Some(query::SCAN_PAGE_TASKS),
            ..Query::default()
        };
        loop {
            let page = self.list(&query)?;
            for t in page.tasks {
                f(t)?;
            }
            match page.next_cursor {
                Some(c) => query.after = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Counts tasks matching a query's filter (its order and page are ignored): takes the same
    /// things as [`Store::list`].
    pub fn count(&self, query: impl Into<Query>) -> Result<usize> {
        let query = query.into();
        self.read_state(|st| query::count(st, &query.filter))
    }

    /// Statistics over all tasks, with counts by the metadata key `by_key` when given, and the
    /// store's health figures.
    pub fn stats(&self, by_key: Option<&str>) -> Result<Stats> {
        let mut stats = self.read_state(|st| stats::count(st, by_key))?;
        self.add_health(&mut stats)?;
        Ok(stats)
    }

    /// Adds the store's health figures (log, snapshots) to counted statistics.
    fn add_health(&self, stats: &mut Stats) -> Result<()> {
        stats::add_log(&mut stats.health, &self.inner.log.stats());
        let storage = self.inner.options.storage.as_ref();
        let snaps = snapshot::list(storage, &recovery::snapshot_dir(&self.inner.dir))?;
        stats.health.snapshots = snaps.len();
        if let Some(newest) = snaps.first() {
            stats.health.snapshot_lsn = newest.lsn;
            stats.health.snapshot_age_secs = stats::age_secs(
                std::fs::metadata(&newest.path)
                    .and_then(|m| m.modified())
                    .ok(),
            );
        }
        Ok(())
    }

    /// [`Store::stats`] with counts by each of several metadata keys at once (seed 000's
    /// `by_operation_type` and `by_cost_center` in one call): `by_key` holds the first,
    /// `by_keys` all of them in order. At most 16 keys, each non-empty.
    pub fn stats_by(&self, keys: &[&str]) -> Result<Stats> {
        if keys.len() > stats::STATS_KEYS_MAX || keys.iter().any(|k| k.is_empty()) {
            return Err(Error::InvalidInput {
                at: Some("by".into()),
                reason: format!(
                    "statistics take 1 to {} non-empty metadata keys, got {}",
                    stats::STATS_KEYS_MAX,
                    keys.len()
                ),
            });
        }
        let mut out = self.stats(keys.first().copied())?;
        if keys.len() > 1 {
            out.by_keys =
                self.read_state(|st| keys.iter().map(|k| stats::by_key(st, k)).collect())?;
        }
        Ok(out)
    }

    /// Every committed event from `from` (an LSN) onward: first those already in the log, then
    /// live ones as they commit. Each is delivered once, in LSN order, once durable.
    pub fn subscribe(&self, from: u64) -> Result<Subscription> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let applied = {
            let st = self.inner.state.read_recursive();
            self.inner.subscribers.lock().push(tx);
            st.applied_lsn
        };
        Subscription::new(self.inner.log.clone(), from, applied, rx)
    }

    /// Retention: removes terminal tasks (completed, failed, cancelled) that finished more than
    /// `older_than` ago, in one atomic batch. Pending and running tasks are never touched. Each
    /// removal is an event, so the tasks' histories stay readable. Returns how many went.
    pub fn cleanup(&self, older_than: std::time::Duration) -> Result<usize> {
        let cutoff =
            Timestamp::now().plus_millis(-(older_than.as_millis().min(i64::MAX as u128) as i64));
        let ids = self.read_state(|st| stats::expired(st, cutoff))?;
        let reason = format!(
            "retention: finished more than {} s ago",
            older_than.as_secs()
        );
        self.remove_expired(ids, reason)
    }

    /// Retention by a rule: the tasks in `rule.states` (terminal states only) whose finish or
    /// last run is older than `rule.older_than`, removed in one atomic batch, histories kept.
    /// `CleanupRule::default()` is seed 000's: completed, failed and discarded, 30 days, by finish time.
    pub fn cleanup_by(&self, rule: &CleanupRule) -> Result<usize> {
        if let Some(s) = rule.states.iter().find(|s| !s.is_terminal()) {
            return Err(Error::InvalidInput {
                at: Some("states".into()),
                reason: format!(
                    "retention never removes {s} tasks (only completed, failed, cancelled)"
                ),
            });
        }
        let ms = rule.older_than.as_millis().min(i64::MAX as u128) as i64;
        let cutoff = Timestamp::now().plus_millis(-ms);
        let ids = self.read_state(|st| stats::expired_by(st, rule, cutoff))?;
        let what = match rule.age {
            CleanupAge::LastRun => "last ran",
            _ => "finished",
        };
        let reason = format!(
            "retention: {what} more than {} s ago",
            rule.older_than.as_secs()
        );
        self.remove_expired(ids, reason)
    }

    fn remove_expired(&self, ids: Vec<(String, u64)>, reason: String) -> Result<usize> {
        // IMPORTANT: the candidates were chosen under a read lock since released. Each removal
        // holds the version it was chosen at, and a task changed since (retried, say) is
        // skipped rather than removed in a state retention never judged.
        let muts: Vec<Mutation> = ids
            .into_iter()
            .map(|(id, version)| {
                Mutation::new(
                    id,
                    Change::Remove {
                        reason: Some(reason.clone()),
                    },
                )
                .expect_version(version)
            })
            .collect();
        if muts.is_empty() {
            return Ok(0);
        }
        let (removed, _) = self.commit(muts, true, Stale::Skip)?;
        Ok(removed.len())
    }

    /// pending -> running under a lease held by `owner` for `lease_ms` milliseconds.
    pub fn claim(&self, id: &str, owner: &str, lease_ms: u64) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Start {
                owner: Some(owner.into()),
                lease_ms: Some(lease_ms),
            },
        ))
    }

    /// Extends `owner`'s lease on a running task by `lease_ms` from now.
    pub fn heartbeat(&self, id: &str, owner: &str, lease_ms: u64) -> Result<Task> {
        self.apply(Mutation::new(
            id,
            Change::Heartbeat {
                owner: owner.into(),
                lease_ms,
            },
        ))
    }

    /// Treats running tasks whose lease expired as interrupted, under the store's policy
    /// (failed, or back to pending keeping the checkpoint). Returns their ids.
    pub fn recover_expired_leases(&self) -> Result<Vec<String>> {
        let now = Timestamp::now();
        let ids = self.read_state(|st| st.expired_leases(now))?;
        self.interrupt(&ids, "lease expired")?;
        Ok(ids)
    }

    fn interrupt(&self, ids: &[String], reason: &str) -> Result<()> {
        let to = match self.inner.options.interrupted_policy {
            InterruptedPolicy::MarkFailed => TaskState::Failed,
            InterruptedPolicy::Requeue => TaskState::Pending,
            InterruptedPolicy::Leave => return Ok(()),
        };
        if ids.is_empty() {
            return Ok(());
        }
        let muts = ids
            .iter()
            .map(|id| {
                Mutation::new(
                    id.clone(),
                    Change::Interrupt {
                        reason: reason.into(),
                        to,
                    },
                )
                .actor("tasklog-recovery")
            })
            .collect();
        self.batch(muts)?;
        Ok(())
    }

    /// All tasks (unordered clone).
    pub fn all_tasks(&self) -> Result<Vec<Task>> {
        self.read_state(|st| st.tasks().map(TaskRef::into_owned).collect())
    }

    /// Number of live tasks.
    pub fn len(&self) -> usize {
        self.inner.state.read_recursive().len()
    }

    /// True when there are no live tasks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The LSN of the last applied record.
    pub fn last_lsn(&self) -> u64 {
        self.inner.state.read_recursive().applied_lsn
    }

    // ----- snapshots -------------------------------------------------------------------------

    /// Writes a snapshot now, prunes old ones, and removes log segments wholly covered by the
    /// oldest kept snapshot.
    pub fn snapshot(&self) -> Result<SnapshotInfo> {
        self.check_writable()?;
        let mut progress = self.inner.snapshot_lock.lock();
        let storage = self.inner.options.storage.as_ref();
        let dir = recovery::snapshot_dir(&self.inner.dir);
        // Encoded straight into its temporary file under the lock (issue #20: building the
        // image in memory first held a second copy of the store, 800 MB at 1,000,000 tasks).
        let (mut pending, lsn) = {
            let mut st = self.inner.state.write();
            st.prune_sessions();
            let pending =
                snapshot::encode_to_temp_file(storage, &dir, &st, self.inner.log.as_ref())?;
            st.records_since_snapshot = 0;
            st.bytes_since_snapshot = 0;
            (pending, st.applied_lsn)
        };
        // A snapshot must never hold an event the log could still lose. `wait_durable` is not
        // enough: in the Interval and Buffered modes an acknowledged record may not be on disk
        // yet, and a snapshot ahead of the log would make the store refuse to open after a
        // crash. So force an fdatasync of everything submitted, whatever the mode, before the
        // snapshot is renamed into place (until then it is a temporary file an open ignores).
        self.inner.log.sync().map_err(|e| self.poison(e))?;
        let bytes = pending.bytes;
        let layout = std::mem::take(&mut pending.layout);
        let path = pending.commit(storage)?;
        progress.last_lsn = lsn;
        let moved = self.histories_to_disk(storage, &path, &layout);
        // A log shared by several machines keeps a copy first: the log is cut below a
        // snapshot only once a store elsewhere could find it.
        let kept = match self.inner.log.keep_snapshot(lsn, &path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(lsn, error = %e, "the log kept no copy of the snapshot; it is not compacted");
                false
            }
        };
        let segments_removed = self.prune_snapshots(storage, &dir, moved && kept)?;
        tracing::info!(lsn, bytes, "snapshot written");
        Ok(SnapshotInfo {
            path,
            lsn,
            bytes,
            segments_removed,
        })
    }

    /// Points the histories at the snapshot just written, so that their events leave memory
    /// (see `history::Arena`). A failure only costs memory: every history stays readable,
    /// either in memory or from the file, so it is logged, not returned.
    ///
    /// Returns false when they could not be moved: histories that keep their events in the
    /// log then still point there, so the log must not be compacted.
    fn histories_to_disk(
        &self,
        storage: &dyn crate::wal::Storage,
        path: &Path,
        layout: &snapshot::Layout,
    ) -> bool {
        let done = snapshot::open_history_section(storage, path, layout)
            .and_then(|arena| self.inner.state.write().rebase_histories(&arena, layout));
        match done {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "histories stay where they were; the log is not compacted");
                false
            }
        }
    }

    /// Removes snapshots beyond the number kept and, when `compact`, the log below the oldest
    /// kept one.
    fn prune_snapshots(
        &self,
        storage: &dyn crate::wal::Storage,
        dir: &Path,
        compact: bool,
    ) -> Result<usize> {
        let files = snapshot::list(storage, dir)?;
        let keep = self.inner.options.snapshots_kept;
        for old in files.iter().skip(keep) {
            storage
                .remove_file(&old.path)
                .map_err(|e| Error::io("remove", &old.path, e))?;
        }
        if files.len() > keep {
            storage
                .sync_dir(dir)
                .map_err(|e| Error::io("fsync directory", dir, e))?;
        }
        let Some(oldest) = files.iter().take(keep).next_back().filter(|_| compact) else {
            return Ok(0);
        };
        // Histories live in every snapshot, so the log below the oldest kept one holds nothing
        // that is not preserved elsewhere.
        Ok(self
            .inner
            .log
            .truncate_before(oldest.lsn + 1)?
            .segments_removed)
    }

    fn snapshot_due(&self, st: &State) -> bool {
        let o = &self.inner.options;
        (o.snapshot_every_records > 0 && st.records_since_snapshot >= o.snapshot_every_records)
            || (o.snapshot_every_bytes > 0 && st.bytes_since_snapshot >= o.snapshot_every_bytes)
    }

    fn request_snapshot(&self) {
        if let Some((tx, _)) = self.inner.snapshotter.lock().as_ref() {
            let _ = tx.try_send(());
        }
    }

    fn start_snapshotter(&self) {
        let (tx, rx): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(1);
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let handle = std::thread::Builder::new()
            .name("tasklog-snapshot".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let Some(inner) = weak.upgrade() else { break };
                    let store = Store { inner };
                    if let Err(e) = store.snapshot() {
                        tracing::warn!(error = %e, "background snapshot failed");
                    }
                }
            });
        match handle {
            Ok(h) => *self.inner.snapshotter.lock() = Some((tx, h)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the snapshot thread; snapshots only on demand")
            }
        }
    }

    // ----- lifecycle -------------------------------------------------------------------------

    /// Closes the store cleanly: records that this session ended (so tasks it left running
    /// stay running), syncs the log and releases the lock, and reports any failure doing so.
    ///
    /// The store closes itself the same way when its last clone drops (a failure then is only
    /// logged), so `close` is needed only to see that error or to close early. It closes the
    /// store for **every clone**, like closing a shared file: later writes and reads on any clone
    /// fail with [`Error::Closed`], live subscriptions end, and a second `close` is a no-op.
    /// Fails with [`Error::InvalidInput`] when this thread holds a [`ReadView`].
    pub fn close(&self) -> Result<()> {
        view::check_no_view(self.view_key())?;
        self.inner.close()
    }

    /// Forces every acknowledged change onto stable storage and returns once it is there. Under
    /// [`Durability::Sync`] (the default) there is nothing to do; under
    /// [`Durability::Interval`] and [`Durability::Buffered`] it is the way to make the
    /// changes acknowledged so far survive a power loss (a bulk load ends with it).
    ///
    /// ```
    /// use tasklog::{Durability, NewTask, StoreOptions};
    ///
    /// # fn main() -> tasklog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = StoreOptions::new().durability(Durability::Buffered).open(dir.path())?;
    /// for n in 0..100 {
    ///     store.submit(NewTask::new(format!("row {n}")))?;
    /// }
    /// store.sync()?; // all 100 now survive a power cut
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Fails with [`Error::Closed`] after `close`, [`Error::ReadOnly`] on a read-only store,
    /// and [`Error::Poisoned`] after an earlier write failure (a failure here poisons the
    /// store: what it could not sync cannot be trusted to be on disk).
    pub fn sync(&self) -> Result<()> {
        self.check_writable()?;
        self.inner.log.sync().map_err(|e| self.poison(e))
    }

    /// Figures about the log, for statistics.
    pub fn log_stats(&self) -> crate::wal::WalStats {
        self.inner.log.stats()
    }

    /// The policy applied to interrupted work.
    pub fn interrupted_policy(&self) -> InterruptedPolicy {
        self.inner.options.interrupted_policy
    }

    /// The error (or reason) recorded on work a crash interrupted.
    pub fn interrupted_message(&self) -> &str {
        &self.inner.options.interrupted_message
    }

    /// This session's id (written in `Started` events).
    pub fn session(&self) -> u64 {
        self.inner.session
    }

    /// Why the store refuses writes after a failed log write (`None` while healthy). Every
    /// later write fails with [`Error::Poisoned`] until the store is reopened.
    pub fn poisoned(&self) -> Option<String> {
        self.inner
            .poisoned
            .lock()
            .as_ref()
            .map(|(cause, _)| cause.clone())
    }

    /// True once [`Store::close`] ran (on any clone).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// True when the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.options.read_only
    }

    /// Identifies this store (all its clones) to [`ReadView`]'s same-thread write guard.
    fn view_key(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    fn check_writable(&self) -> Result<()> {
        view::check_no_view(self.view_key())?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.inner.options.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(first) = self.inner.poisoned.lock().as_ref() {
            return Err(Error::poisoned_by(first));
        }
        Ok(())
    }

    /// [`Store::poison`], except for errors the log raises before any I/O because of the
    /// caller's input (too large, no LSNs left): those leave the store writable.
    fn poison_unless_input(&self, e: Error) -> Error {
        match e {
            Error::TooLarge { .. } | Error::InvalidInput { .. } | Error::ReadOnly => e,
            e => self.poison(e),
        }
    }

    /// Records the first I/O failure; the store refuses all writes until reopened.
    fn poison(&self, e: Error) -> Error {
        let mut p = self.inner.poisoned.lock();
        if p.is_none() {
            tracing::error!(error = %e, "log write failed; the store is poisoned until reopened");
            // A failure the log already reported as poison keeps its first cause, not a
            // "poisoned by poisoned by ..." nest.
            *p = Some(match &e {
                Error::Poisoned {
                    cause,
                    source: Some(first),
                } => (cause.clone(), first.clone()),
                e => (e.to_string(), Arc::new(e.duplicate())),
            });
        }
        e
    }

    fn settle(&self, lsn: u64) -> Result<()> {
        // A read-only store holds only what it read back from the log (at open, or following
        // a writer elsewhere): durable already, and never submitted through this handle.
        if self.inner.options.read_only {
            return Ok(());
        }
        if lsn > self.inner.log.durable_lsn() {
            self.inner
                .log
                .wait_durable(lsn)
                .map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    fn settle_all(
        &self,
        tasks: Vec<(String, Option<Task>)>,
    ) -> Result<Vec<(String, Option<Task>)>> {
        if let Some(max) = tasks
            .iter()
            .filter_map(|(_, t)| t.as_ref())
            .map(|t| t.last_lsn)
            .max()
        {
            self.settle(max)?;
        }
        Ok(tasks)
    }

    /// Applies the interrupted-work policy to tasks whose owner died.
    fn recover_interrupted(&self) -> Result<()> {
        let orphans = self.inner.report.tasks_interrupted.clone();
        if !orphans.is_empty() {
            tracing::warn!(count = orphans.len(), policy = ?self.inner.options.interrupted_policy, "tasks interrupted by a crash");
        }
        let message = self.inner.options.interrupted_message.clone();
        self.interrupt(&orphans, &message)?;
        if self.inner.options.pending_at_open == PendingAtOpen::Cancel {
            // Not the running tasks the policy above requeued: running work follows
            // `interrupted_policy`.
            let requeued: std::collections::HashSet<&String> = orphans.iter().collect();
            let pending: Vec<(String, u64)> = self.read_state(|st| {
                st.tasks_in(TaskState::Pending)
                    .filter(|t| !requeued.contains(&t.id))
                    .map(|t| (t.id.clone(), t.version))
                    .collect()
            })?;
            if !pending.is_empty() {
                tracing::warn!(count = pending.len(), "pending tasks cancelled at open");
                let muts = pending
                    .into_iter()
                    .map(|(id, version)| {
                        Mutation::new(
                            id,
                            Change::Cancel {
                                reason: Some(message.clone()),
                            },
                        )
                        .expect_version(version)
                        .actor("tasklog-recovery")
                    })
                    .collect();
                self.commit(muts, false, Stale::Skip)?;
            }
        }
        Ok(())
    }
}

/// A mutation's task id and its task after the batch.
type TaskResult = (String, Option<Task>);

/// What a batch does with a mutation whose expected version no longer matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stale {
    /// Fail the whole batch with `Conflict` (the public API).
    Refuse,
    /// Leave the mutation out (retention, which chose its tasks under a lock since released).
    Skip,
}

/// Results of a batch that wrote nothing (only repeated submits).
fn results_of(staged: &Staged, st: &State) -> Vec<(String, Option<Task>)> {
    staged
        .ids()
        .into_iter()
        .map(|id| {
            let task = st.task(&id).map(TaskRef::into_owned);
            (id, task)
        })
        .collect()
}

/// Applies one staged event to the state: in place, unless it creates, replaces or removes
/// its task. `slot` is its task id's slot when it was staged (`Staged::event_slots`; `None`
/// looks it up).
fn install_staged(
    st: &mut State,
    lsn: u64,
    event: &mut task::Event,
    body: &[u8],
    slot: Option<u32>,
) -> Result<()> {
    if task::apply::reshapes(&event.kind) {
        if st.install_new(lsn, event, body) {
            return Ok(());
        }
        let updated = st.next_task_state(st.task(&event.task_id), event, lsn);
        st.install(lsn, event, updated, body);
    } else if !st.apply_in_place_at(
        slot.or_else(|| st.slot_of(&event.task_id)),
        lsn,
        event,
        body,
    )? {
        return Err(Error::corrupt(
            "state",
            None,
            Some(lsn),
            "a staged event did not apply in place",
        ));
    }
    Ok(())
}

impl Inner {
    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some((tx, handle)) = self.snapshotter.lock().take() {
            drop(tx);
            // The snapshot thread holds only a weak reference; it ends when the channel closes.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        // Ends every subscription: their live feeds disconnect.
        self.subscribers.lock().clear();
        if self.options.read_only {
            return Ok(());
        }
        let poisoned = self.poisoned.lock().is_some();
        let recorded = if poisoned {
            Ok(())
        } else {
            self.record_session_closed()
        };
        // Release the log (and its lock) even when the last record failed.
        let closed = self.log.close();
        recorded.and(closed)
    }

    fn record_session_closed(&self) -> Result<()> {
        let st = self.state.write();
        let payload = record::encode_session_closed(self.session);
        let ticket = self.log.submit(&[&payload])?;
        drop(st);
        log::wait(self.log.as_ref(), ticket)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the store on drop failed");
        }
    }
}

/// The per-kind admission rules an open starts with: those kept beside the log when it keeps
/// any (a log shared by several machines: the rules follow the writer; a writable open also
/// replaces its own copy with them), else those in `<dir>/kinds.json`.
fn load_kind_rules(options: &StoreOptions, dir: &Path, log: &dyn Log) -> Result<kinds::Gate> {
    let storage = options.storage.as_ref();
    let Some(bytes) = log.fetch_setting(kinds::KINDS_FILE, kinds::KINDS_FILE_BYTES_MAX)? else {
        return kinds::Gate::load(storage, dir);
    };
    let gate = kinds::Gate::parse(&bytes, Path::new("kinds.json kept beside the log"))?;
    if !options.read_only {
        kinds::Gate::save(storage, dir, &bytes)?;
    }
    tracing::debug!(
        kinds = gate.settings().len(),
        "kind rules fetched from beside the log"
    );
    Ok(gate)
}
