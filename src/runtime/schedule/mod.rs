//! Schedules: recurring tasks that fire on a cron expression in a time zone or on a fixed
//! interval, each firing creating exactly one task however many processes fire the same
//! store's schedules, and however often they crash.
//!
//! A schedule is stored as a task of its own, `schedule:<name>` (tag `tasklog:schedule`),
//! which no worker ever runs: its metadata holds the definition and the firing state (see
//! [`record`]). So schedules need no new on-disk record type, and their whole life (creation,
//! every firing, pause, removal) is in the audit trail. Each firing creates a task
//! `<name>@<fire time>` tagged `tasklog:schedule:<name>`. A [`Scheduler`] fires them: call
//! [`Scheduler::tick`] or let [`Scheduler::spawn`] (or the runtime, or the server) call it.
//! See `fire.rs` for why a firing is exactly-once.
//!
//! Time comes from a [`Clock`], so that tests can cross a DST change or a week of downtime.

mod adopt;
mod clock;
mod fire;
pub mod record;
mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use adopt::{AdoptReport, META_IMPORTED_SCHEDULE, adopt_imported};
pub use clock::{Clock, ManualClock, SystemClock};
pub use fire::{Scheduler, SchedulerThread, TickReport, records, runs_of};
pub use record::{FireState, Record, is_record, record_id, run_id, run_tag};
pub use spec::{
    CATCH_UP_MAX_LIMIT, CatchUp, Compiled, EVERY_MS_MIN, ON_TIME_GRACE_MS, Overlap, ScheduleSpec,
    TaskTemplate, check_name,
};

use crate::error::{Error, Result};
use crate::store::{Change, Mutation, Store};
use crate::task::{Task, TaskState, Timestamp};

/// How many upcoming fire times a view lists.
pub const NEXT_FIRES_SHOWN: usize = 3;
/// Retries of a pause or resume that lost a race with a scheduler.
const RACE_RETRIES: usize = 20;

/// A schedule's runs and their outcomes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Runs created (imported counts included).
    pub runs: u64,
    /// Runs that completed.
    pub successes: u64,
    /// Runs that failed.
    pub failures: u64,
    /// Firings dropped by the overlap or catch-up policy.
    pub skipped: u64,
    /// Runs pending or running now.
    pub active: u64,
}

/// A schedule as `list` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScheduleView {
    /// The name.
    pub name: String,
    /// The id of the task that records it.
    pub task_id: String,
    /// The record's version (changes at every firing).
    pub version: u64,
    /// The definition.
    pub definition: ScheduleSpec,
    /// True when paused.
    pub paused: bool,
    /// The next fire time (none when paused or past its end date).
    pub next_fire_at: Option<Timestamp>,
    /// The next few fire times.
    pub next_fires: Vec<Timestamp>,
    /// The newest fire time that created a run.
    pub last_fire_at: Option<Timestamp>,
    /// Every fire time up to this one has been handled (fired or dropped by policy).
    pub fired_through: Timestamp,
    /// A fire time held back by `overlap: queue_one` until the active run ends.
    pub buffered_fire_at: Option<Timestamp>,
    /// Runs and outcomes.
    pub counts: RunCounts,
}

/// Schedule statistics, in the shape of seed 000's (`scheduled`, `one_time`, `total_*`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScheduleStats {
    /// Schedules.
    pub scheduled: usize,
    /// Live tasks that are neither a schedule nor a schedule's run.
    pub one_time: usize,
    /// Runs created over all schedules.
    pub total_runs: u64,
    /// Runs completed.
    pub total_successes: u64,
    /// Runs failed.
    pub total_failures: u64,
    /// Per schedule name.
    pub schedules: BTreeMap<String, RunCounts>,
    /// Live runs that completed (for figures that count tasks, such as seed 000's).
    #[serde(skip)]
    pub run_tasks_completed: u64,
    /// The error counts of live runs, summed.
    #[serde(skip)]
    pub run_tasks_error_count: u64,
    /// Live runs that were imported scheduled tasks (they keep their `schedule` metadata).
    #[serde(skip)]
    pub adopted_live: usize,
}

/// Creates a schedule; nothing before `now` fires. `AlreadyExists` names `schedule:<name>`.
pub fn add(store: &Store, spec: &ScheduleSpec, now: Timestamp) -> Result<ScheduleView> {
    let state = FireState {
        fired_through: now.as_millis(),
        ..FireState::default()
    };
    add_with_state(store, spec, now, &state)
}

/// Creates a schedule with a given firing state (an import keeps its run counters).
pub fn add_with_state(
    store: &Store,
    spec: &ScheduleSpec,
    now: Timestamp,
    state: &FireState,
) -> Result<ScheduleView> {
    let new = record::new_record(spec, now.as_millis(), state)?;
    let task = store.submit(new)?;
    view(store, &task, now)
}

fn record_task(store: &Store, name: &str) -> Result<Task> {
    check_name(name)?;
    let task = store.get(&record_id(name))?;
    if !is_record(&task) {
        return Err(Error::NotFound { id: task.id });
    }
    Ok(task)
}

/// One schedule.
pub fn get(store: &Store, name: &str, now: Timestamp) -> Result<ScheduleView> {
    view(store, &record_task(store, name)?, now)
}

/// Every schedule, by name.
pub fn list(store: &Store, now: Timestamp) -> Result<Vec<ScheduleView>> {
    let mut out = Vec::new();
    for task in records(store)? {
        match view(store, &task, now) {
            Ok(v) => out.push(v),
            Err(e) => tracing::warn!(task = %task.id, error = %e, "schedule record skipped"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Pauses a schedule: it fires nothing until resumed.
pub fn pause(store: &Store, name: &str, now: Timestamp) -> Result<ScheduleView> {
    set_paused(store, name, true, now)
}

/// Resumes a schedule. Fire times that passed while it was paused are not caught up.
pub fn resume(store: &Store, name: &str, now: Timestamp) -> Result<ScheduleView> {
    set_paused(store, name, false, now)
}

fn set_paused(store: &Store, name: &str, paused: bool, now: Timestamp) -> Result<ScheduleView> {
    for _ in 0..RACE_RETRIES {
        let task = record_task(store, name)?;
        let rec = Record::from_task(&task)?;
        if rec.compiled.spec().paused == paused {
            return view(store, &task, now);
        }
        let mut spec = rec.compiled.spec().clone();
        spec.paused = paused;
        let mut st = rec.state.clone();
        if !paused {
            st.fired_through = st.fired_through.max(now.as_millis());
        }
        let mut u = record::state_update(&st);
        u.set_metadata.insert(
            record::META_DEFINITION.into(),
            serde_json::to_value(&spec).map_err(|e| Error::Codec {
                what: "schedule definition".into(),
                reason: e.to_string(),
                source: Some(Box::new(e)),
            })?,
        );
        let m = Mutation::new(task.id.clone(), Change::Update(u)).expect_version(task.version);
        match store.apply(m) {
            Ok(t) => return view(store, &t, now),
            // A scheduler fired in between: read the record again.
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    // Schedulers kept winning (a very short tick on a busy store): say so rather than spin.
    let task = record_task(store, name)?;
    Err(Error::Conflict {
        id: task.id,
        expected: task.version.saturating_sub(1),
        actual: task.version,
    })
}

/// Removes a schedule: it fires no more. Its record's history and its runs stay.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let task = record_task(store, name)?;
    store.remove(&task.id, Some("schedule removed"))?;
    Ok(())
}

/// A schedule's live runs, newest fire time first, at most `limit`. Works for a removed
/// schedule too.
pub fn runs(store: &Store, name: &str, limit: usize) -> Result<Vec<Task>> {
    check_name(name)?;
    let mut runs = runs_of(store, name)?;
    runs.sort_by_key(|t| {
        std::cmp::Reverse(
            t.metadata
                .get(record::META_FIRE_AT)
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(t.created_at.as_millis()),
        )
    });
    runs.truncate(limit);
    Ok(runs)
}

/// Counts of schedules, one-time tasks, and runs and their outcomes.
pub fn stats(store: &Store) -> Result<ScheduleStats> {
    let mut out = ScheduleStats::default();
    let mut live_runs = 0usize;
    for task in records(store)? {
        let Ok(rec) = Record::from_task(&task) else {
            continue;
        };
        let runs = runs_of(store, rec.name())?;
        live_runs += runs.len();
        for run in &runs {
            out.run_tasks_completed += u64::from(run.state == TaskState::Completed);
            out.run_tasks_error_count += u64::from(run.error_count);
            out.adopted_live += usize::from(run.metadata.contains_key(META_IMPORTED_SCHEDULE));
        }
        let c = counts(&rec, &runs);
        out.total_runs += c.runs;
        out.total_successes += c.successes;
        out.total_failures += c.failures;
        out.schedules.insert(rec.name().to_string(), c);
        out.scheduled += 1;
    }
    out.one_time = store.len().saturating_sub(out.scheduled + live_runs);
    Ok(out)
}

/// The record's counters plus the outcomes of finished runs not yet counted in them.
fn counts(rec: &Record, runs: &[Task]) -> RunCounts {
    let st = &rec.state;
    let mut c = RunCounts {
        runs: st.runs,
        successes: st.successes,
        failures: st.failures,
        skipped: st.skipped,
        active: 0,
    };
    for run in runs {
        match run.state {
            TaskState::Pending | TaskState::Running => c.active += 1,
            _ if run.metadata.contains_key(record::META_COUNTED) => {}
            TaskState::Completed => c.successes += 1,
            TaskState::Failed | TaskState::Discarded => c.failures += 1,
            TaskState::Cancelled => {}
        }
    }
    c
}

fn view(store: &Store, task: &Task, now: Timestamp) -> Result<ScheduleView> {
    let rec = Record::from_task(task)?;
    let runs = runs_of(store, rec.name())?;
    let spec = rec.compiled.spec().clone();
    let mut next_fires = Vec::new();
    if !spec.paused {
        let mut cursor = rec.state.fired_through.max(now.as_millis());
        while next_fires.len() < NEXT_FIRES_SHOWN {
            let Some(n) = rec.compiled.next_after(cursor) else {
                break;
            };
            next_fires.push(Timestamp(n));
            cursor = n;
        }
    }
    Ok(ScheduleView {
        name: spec.name.clone(),
        task_id: task.id.clone(),
        version: task.version,
        paused: spec.paused,
        next_fire_at: next_fires.first().copied(),
        next_fires,
        last_fire_at: rec.state.last_fire.map(Timestamp),
        fired_through: Timestamp(rec.state.fired_through),
        buffered_fire_at: rec.state.buffered.map(Timestamp),
        counts: counts(&rec, &runs),
        definition: spec,
    })
}
