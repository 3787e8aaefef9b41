//! Firing: one pass over the schedules ("a tick") creates the runs that are due and counts the
//! outcomes of finished runs.
//!
//! IMPORTANT: each schedule's firing is written in ONE `Store::batch` with nothing else or with
//! the other schedules' firings of the same tick: the runs it creates (each with the id
//! `<name>@<fire time>`), the counting marks on finished runs, and the record's new state, the
//! last guarded by the record's version. The batch is wholly present or wholly absent
//! after any crash, and a scheduler that read an older version of the record (another process,
//! another thread, a user's pause) has its whole batch refused with `Conflict`. So a fire time
//! creates at most one task, however many schedulers race; and since the record's high-water
//! mark moves only together with the runs it accounts for, a crash never loses a firing that
//! the catch-up policy would have run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::clock::Clock;
use super::record::{self, FireState, Record};
use super::spec::Overlap;
use crate::error::{Error, Result};
use crate::store::{Change, Filter, Mutation, Query, Store};
use crate::task::{Task, TaskState, TaskUpdate};

/// Most finished runs whose outcome one pass counts per schedule (the rest wait for the next).
const COUNT_PER_TICK_MAX: usize = 256;

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Ids of the runs created.
    pub fired: Vec<String>,
    /// Firings dropped by the overlap or catch-up policy.
    pub skipped: u64,
    /// Finished runs whose outcome was counted.
    pub counted: usize,
    /// Schedules another writer changed first (left for the next tick).
    pub lost_races: usize,
    /// Schedules whose firing the store refused (logged; tried again next tick).
    pub failed: Vec<String>,
}

/// Fires the schedules of one store.
#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    clock: Arc<dyn Clock>,
    actor: String,
}

impl Scheduler {
    /// A scheduler over `store`, reading the time from `clock`.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Scheduler {
        Scheduler {
            store,
            clock,
            actor: "scheduler".into(),
        }
    }

    /// Names the scheduler in the history of what it changes (default `scheduler`).
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Scheduler {
        self.actor = actor.into();
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One pass over every schedule. A schedule whose record another writer changed in the
    /// meantime is left for the next pass; a damaged record is logged and skipped.
    pub fn tick(&self) -> Result<TickReport> {
        let now = self.clock.now_ms();
        let mut report = TickReport::default();
        let mut work = RunIndex::read(&self.store)?;
        let mut plans = Vec::new();
        for task in records(&self.store)? {
            let rec = match Record::from_task(&task) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(task = %task.id, error = %e, "schedule record skipped");
                    continue;
                }
            };
            let active = work.active.contains(rec.name());
            let to_count = work.uncounted.remove(rec.name()).unwrap_or_default();
            if let Some(plan) = self.plan_one(&rec, now, active, &to_count) {
                plans.push(plan);
            }
        }
        if plans.is_empty() {
            return Ok(report);
        }
        // All schedules in one batch (one fsync per tick), each still guarded by its own
        // record's version. If the store refuses it (a lost race, a bad template), each
        // schedule is committed on its own, so that one schedule cannot hold back the others.
        let all: Vec<Mutation> = plans.iter().flat_map(|p| p.muts.iter().cloned()).collect();
        match self.store.batch(all) {
            Ok(_) => {
                for plan in plans {
                    plan.done(&mut report);
                }
                return Ok(report);
            }
            Err(e) if !refusal(&e) => return Err(e),
            Err(_) => {}
        }
        for plan in plans {
            match self.store.batch(plan.muts.clone()) {
                Ok(_) => plan.done(&mut report),
                Err(Error::Conflict { .. } | Error::AlreadyExists { .. }) => {
                    report.lost_races += 1;
                }
                // This schedule's runs are refused (a template the store will not take, a run
                // removed mid-pass): the others still fire; this one is tried again next tick.
                Err(e) if refusal(&e) => {
                    tracing::warn!(schedule = %plan.name, error = %e, "schedule not fired");
                    report.failed.push(plan.name);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// What one schedule's firing writes now (None: nothing).
    fn plan_one(&self, rec: &Record, now: i64, active: bool, to_count: &[Task]) -> Option<Plan> {
        let name = rec.name();
        let mut st = rec.state.clone();
        let mut muts = Vec::new();
        let mut counted = 0;
        for run in to_count.iter().take(COUNT_PER_TICK_MAX) {
            match run.state {
                TaskState::Completed => st.successes += 1,
                TaskState::Failed | TaskState::Discarded => st.failures += 1,
                _ => {}
            }
            let mut u = TaskUpdate {
                remove_tags: vec![record::UNCOUNTED_TAG.into()],
                ..TaskUpdate::default()
            };
            u.set_metadata.insert(
                record::META_COUNTED.into(),
                Value::String(run.state.as_str().into()),
            );
            muts.push(
                self.mutation(&run.id, Change::Update(u))
                    .expect_version(run.version),
            );
            counted += 1;
        }
        let (fire, skipped) = if rec.compiled.spec().paused {
            (Vec::new(), 0)
        } else {
            plan(rec, &mut st, now, active)
        };
        let mut fired = Vec::new();
        for t in fire {
            let new = record::run_task(&rec.compiled, t);
            let id = new.id.clone().unwrap_or_default();
            st.last_fire = Some(st.last_fire.map_or(t, |l| l.max(t)));
            // A task with this id already there (an import, a user) stands for this firing:
            // creating it again would fail the whole batch on every tick.
            if self.store.get(&id).is_ok() {
                continue;
            }
            st.runs += 1;
            muts.push(Mutation::submit(new).actor(self.actor.clone()));
            fired.push(id);
        }
        st.skipped += skipped;
        if muts.is_empty() && st == rec.state {
            return None;
        }
        muts.push(
            self.mutation(&rec.task_id, Change::Update(record::state_update(&st)))
                .expect_version(rec.version),
        );
        Some(Plan {
            name: name.to_string(),
            muts,
            fired,
            skipped,
            counted,
        })
    }

    fn mutation(&self, id: &str, change: Change) -> Mutation {
        Mutation::new(id, change).actor(self.actor.clone())
    }

    /// Runs `tick` every `every` on a thread of its own until the handle is stopped or
    /// dropped. Errors are logged, and the next tick tries again.
    pub fn spawn(self, every: Duration) -> Result<SchedulerThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tasklog-scheduler".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    let started = Instant::now();
                    if let Err(e) = self.tick() {
                        if self.store.is_closed() {
                            return;
                        }
                        tracing::warn!(error = %e, "schedule tick failed");
                    }
                    let until = started + every;
                    while !flag.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::sleep(every.min(Duration::from_millis(20)));
                    }
                }
            })
            .map_err(|e| Error::io("spawn thread", "", e))?;
        Ok(SchedulerThread {
            stop,
            handle: Some(handle),
        })
    }
}

/// Decides which fire times in `(fired_through, now]` create runs, moving `st` on; returns them
/// (oldest first) and how many were dropped.
fn plan(rec: &Record, st: &mut FireState, now: i64, active: bool) -> (Vec<i64>, u64) {
    let compiled = &rec.compiled;
    let (due, newest, mut dropped) = compiled.due(st.fired_through, now);
    if let Some(n) = newest {
        st.fired_through = st.fired_through.max(n);
    }
    let n = due.len() as u64;
    let fire = match compiled.spec().overlap {
        Overlap::Allow => due,
        Overlap::Skip => match due.last() {
            Some(&t) if !active => {
                dropped += n - 1;
                vec![t]
            }
            _ => {
                dropped += n;
                Vec::new()
            }
        },
        Overlap::QueueOne => {
            for t in due {
                if st.buffered.replace(t).is_some() {
                    dropped += 1;
                }
            }
            match st.buffered {
                Some(t) if !active => {
                    st.buffered = None;
                    vec![t]
                }
                _ => Vec::new(),
            }
        }
    };
    (fire, dropped)
}

/// One schedule's share of a tick: what to write, and what to report once it is written.
struct Plan {
    name: String,
    muts: Vec<Mutation>,
    fired: Vec<String>,
    skipped: u64,
    counted: usize,
}

impl Plan {
    fn done(self, report: &mut TickReport) {
        if !self.fired.is_empty() {
            tracing::debug!(schedule = %self.name, runs = ?self.fired, "schedule fired");
        }
        report.fired.extend(self.fired);
        report.skipped += self.skipped;
        report.counted += self.counted;
    }
}

/// True when the store refused a batch for what it holds (a lost race, a bad template), not
/// because it cannot write (closed, poisoned, I/O): the former is retried schedule by schedule.
fn refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::Conflict { .. }
            | Error::AlreadyExists { .. }
            | Error::InvalidInput { .. }
            | Error::TooLarge { .. }
            | Error::NotFound { .. }
            | Error::InvalidTransition { .. }
    )
}

/// What one tick needs to know about the runs, read in two listings for all schedules (not
/// one per schedule): the schedules with a run pending or running (through the store's state
/// index, copying only the runs among those tasks), and the finished runs whose outcome is not counted yet (they carry
/// [`record::UNCOUNTED_TAG`] until counted, so this listing stays small however many runs
/// the store keeps).
struct RunIndex {
    active: HashSet<String>,
    uncounted: HashMap<String, Vec<Task>>,
}

impl RunIndex {
    fn read(store: &Store) -> Result<RunIndex> {
        let by_state = Query {
            filter: Filter {
                states: vec![TaskState::Pending, TaskState::Running],
                tags: vec![record::ANY_RUN_TAG.into()],
                ..Filter::default()
            },
            ..Query::default()
        };
        let active = store
            .list(&by_state)?
            .tasks
            .iter()
            .filter_map(run_of)
            .map(str::to_string)
            .collect();
        let by_tag = Query {
            filter: Filter {
                tags: vec![record::UNCOUNTED_TAG.into()],
                states: vec![
                    TaskState::Completed,
                    TaskState::Failed,
                    TaskState::Cancelled,
                    TaskState::Discarded,
                ],
                ..Filter::default()
            },
            ..Query::default()
        };
        let mut uncounted: HashMap<String, Vec<Task>> = HashMap::new();
        for run in store.list(&by_tag)?.tasks {
            if run.metadata.contains_key(record::META_COUNTED) {
                continue;
            }
            if let Some(name) = run_of(&run).map(str::to_string) {
                uncounted.entry(name).or_default().push(run);
            }
        }
        Ok(RunIndex { active, uncounted })
    }
}

/// The schedule a run belongs to.
fn run_of(task: &Task) -> Option<&str> {
    task.metadata
        .get(record::META_RUN_OF)
        .and_then(Value::as_str)
}

/// Every schedule record.
pub fn records(store: &Store) -> Result<Vec<Task>> {
    let q = Query {
        filter: Filter {
            tags: vec![record::RECORD_TAG.into()],
            ..Filter::default()
        },
        ..Query::default()
    };
    Ok(store
        .list(&q)?
        .tasks
        .into_iter()
        .filter(record::is_record)
        .collect())
}

/// Every live run of the schedule `name`, oldest first.
pub fn runs_of(store: &Store, name: &str) -> Result<Vec<Task>> {
    let q = Query {
        filter: Filter {
            tags: vec![record::run_tag(name)],
            ..Filter::default()
        },
        ..Query::default()
    };
    Ok(store.list(&q)?.tasks)
}

/// A scheduler running on its own thread.
pub struct SchedulerThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SchedulerThread {
    /// Stops the thread and waits for its current tick to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SchedulerThread {
    fn drop(&mut self) {
        self.halt();
    }
}
