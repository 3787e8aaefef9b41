//! How a schedule lives in the store: as a task of its own, `schedule:<name>`, which is never
//! run. Its metadata holds the definition and the firing state; every change to that state is
//! an ordinary task event, guarded by the record's version, so that it is durable, audited
//! and exported like everything else, and needs no new on-disk record type.

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::{Compiled, ScheduleSpec};
use crate::error::{Error, Result};
use crate::task::{NewTask, Task, TaskUpdate};

/// The id prefix of schedule records.
pub const RECORD_PREFIX: &str = "schedule:";
/// The tag every schedule record carries.
pub const RECORD_TAG: &str = "tasklog:schedule";
/// The tag every run of every schedule carries (lets a tick find the active runs among the
/// pending and running tasks without copying the others).
pub const ANY_RUN_TAG: &str = "tasklog:run";
/// The tag a run carries until its outcome is counted into its schedule's record: keeps the
/// scheduler's search for uncounted runs small.
pub const UNCOUNTED_TAG: &str = "tasklog:uncounted";
/// Metadata: the definition (JSON).
pub const META_DEFINITION: &str = "schedule.definition";
/// Metadata: where an interval counts from (ms).
pub const META_ANCHOR: &str = "schedule.anchor_ms";
/// Metadata: the newest fire time handled, fired or dropped by policy (ms).
pub const META_FIRED_THROUGH: &str = "schedule.fired_through";
/// Metadata: a fire time held back by `overlap: queue_one` (ms).
pub const META_BUFFERED: &str = "schedule.buffered";
/// Metadata: the newest fire time that created a run (ms).
pub const META_LAST_FIRE: &str = "schedule.last_fire";
/// Metadata counters on the record: runs created, runs completed, runs failed, firings dropped.
pub const META_RUNS: &str = "schedule.runs";
/// See [`META_RUNS`].
pub const META_SUCCESSES: &str = "schedule.successes";
/// See [`META_RUNS`].
pub const META_FAILURES: &str = "schedule.failures";
/// See [`META_RUNS`].
pub const META_SKIPPED: &str = "schedule.skipped";
/// Metadata on a run: its schedule's name.
pub const META_RUN_OF: &str = "schedule.name";
/// Metadata on a run: its fire time (ms).
pub const META_FIRE_AT: &str = "schedule.fire_at";
/// Metadata on a run: its outcome once counted in the record's counters.
pub const META_COUNTED: &str = "schedule.counted";

/// The record's task id for a schedule name.
pub fn record_id(name: &str) -> String {
    format!("{RECORD_PREFIX}{name}")
}

/// The tag every run of a schedule carries.
pub fn run_tag(name: &str) -> String {
    format!("{RECORD_TAG}:{name}")
}

/// A run's task id: the schedule's name and the fire time, so that one fire time can only
/// ever create one task.
pub fn run_id(name: &str, fire_ms: i64) -> String {
    format!("{name}@{}", crate::task::Timestamp(fire_ms).to_rfc3339())
}

/// True for a schedule record (which no worker must run).
pub fn is_record(task: &Task) -> bool {
    task.id.starts_with(RECORD_PREFIX) && task.metadata.contains_key(META_DEFINITION)
}

/// The firing state kept on the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FireState {
    /// Newest fire time handled.
    pub fired_through: i64,
    /// Held back by `queue_one`.
    pub buffered: Option<i64>,
    /// Newest fire time that created a run.
    pub last_fire: Option<i64>,
    /// Runs created.
    pub runs: u64,
    /// Runs completed.
    pub successes: u64,
    /// Runs failed.
    pub failures: u64,
    /// Firings dropped by the overlap or catch-up policy.
    pub skipped: u64,
}

/// A schedule record read back from its task.
#[derive(Clone, Debug)]
pub struct Record {
    /// The record task's id.
    pub task_id: String,
    /// Its version (the firing's optimistic-concurrency guard).
    pub version: u64,
    /// The validated definition.
    pub compiled: Compiled,
    /// Where an interval counts from.
    pub anchor_ms: i64,
    /// The firing state.
    pub state: FireState,
}

fn int(meta: &BTreeMap<String, Value>, key: &str) -> Option<i64> {
    meta.get(key).and_then(Value::as_i64)
}

fn count(meta: &BTreeMap<String, Value>, key: &str) -> u64 {
    meta.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl Record {
    /// Reads a record; an error names the task and the field when it is not one.
    pub fn from_task(task: &Task) -> Result<Record> {
        let at = |field: &str| Some(format!("task {:?}: metadata.{field}", task.id));
        let def = task
            .metadata
            .get(META_DEFINITION)
            .ok_or_else(|| Error::InvalidInput {
                at: at(META_DEFINITION),
                reason: "not a schedule record".into(),
            })?;
        let spec: ScheduleSpec =
            serde_json::from_value(def.clone()).map_err(|e| Error::InvalidInput {
                at: at(META_DEFINITION),
                reason: format!("unreadable schedule definition: {e}"),
            })?;
        let anchor_ms = int(&task.metadata, META_ANCHOR).unwrap_or(task.created_at.as_millis());
        let compiled = spec.compile(anchor_ms)?;
        let m = &task.metadata;
        Ok(Record {
            task_id: task.id.clone(),
            version: task.version,
            compiled,
            anchor_ms,
            state: FireState {
                fired_through: int(m, META_FIRED_THROUGH).unwrap_or(anchor_ms),
                buffered: int(m, META_BUFFERED),
                last_fire: int(m, META_LAST_FIRE),
                runs: count(m, META_RUNS),
                successes: count(m, META_SUCCESSES),
                failures: count(m, META_FAILURES),
                skipped: count(m, META_SKIPPED),
            },
        })
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.compiled.spec.name
    }
}

/// The task that records a new schedule, its state starting at `now` (nothing before its
/// creation fires).
pub fn new_record(spec: &ScheduleSpec, now_ms: i64, state: &FireState) -> Result<NewTask> {
    spec.compile(now_ms)?;
    let def = serde_json::to_value(spec).map_err(|e| Error::Codec {
        what: "schedule definition".into(),
        reason: e.to_string(),
        source: Some(Box::new(e)),
    })?;
    let mut new = NewTask::new(format!("schedule {}", spec.name))
        .id(record_id(&spec.name))
        .description("A schedule's definition and state; never run itself.")
        .tag(RECORD_TAG)
        .meta(META_DEFINITION, def)
        .meta(META_ANCHOR, Value::from(now_ms));
    for (k, v) in state_meta(state) {
        new = new.meta(k, v);
    }
    Ok(new)
}

/// The metadata entries that hold `state`.
pub fn state_meta(state: &FireState) -> Vec<(String, Value)> {
    let mut out = vec![
        (
            META_FIRED_THROUGH.to_string(),
            Value::from(state.fired_through),
        ),
        (META_RUNS.to_string(), Value::from(state.runs)),
        (META_SUCCESSES.to_string(), Value::from(state.successes)),
        (META_FAILURES.to_string(), Value::from(state.failures)),
        (META_SKIPPED.to_string(), Value::from(state.skipped)),
    ];
    if let Some(b) = state.buffered {
        out.push((META_BUFFERED.to_string(), Value::from(b)));
    }
    if let Some(l) = state.last_fire {
        out.push((META_LAST_FIRE.to_string(), Value::from(l)));
    }
    out
}

/// The update that moves a record from its current state to `state`.
pub fn state_update(state: &FireState) -> TaskUpdate {
    let mut u = TaskUpdate::default();
    u.set_metadata.extend(state_meta(state));
    if state.buffered.is_none() {
        u.remove_metadata.push(META_BUFFERED.into());
    }
    u
}

/// The task a firing at `fire_ms` creates.
pub fn run_task(compiled: &Compiled, fire_ms: i64) -> NewTask {
    let spec = &compiled.spec;
    let t = &spec.task;
    let mut new = NewTask::new(t.title.clone().unwrap_or_else(|| spec.name.clone()))
        .id(run_id(&spec.name, fire_ms))
        .description(t.description.clone())
        .priority(t.priority);
    new.role.clone_from(&t.role);
    new.provider.clone_from(&t.provider);
    new.model.clone_from(&t.model);
    new.tags.clone_from(&t.tags);
    new.metadata.clone_from(&t.metadata);
    if let Some(kind) = &t.kind {
        new = new.meta(crate::runtime::META_KIND, Value::String(kind.clone()));
        new = new.meta(
            crate::runtime::META_INPUT,
            t.input.clone().unwrap_or(Value::Null),
        );
    }
    new.tag(run_tag(&spec.name))
        .tag(ANY_RUN_TAG)
        .tag(UNCOUNTED_TAG)
        .meta(META_RUN_OF, Value::String(spec.name.clone()))
        .meta(META_FIRE_AT, Value::from(fire_ms))
        .run_at(crate::task::Timestamp(
            fire_ms + compiled.jitter_for(fire_ms),
        ))
}
