//! Imported scheduled tasks become schedules. The JSON-file schedulers tasklog replaces (seed
//! 000) keep a cron expression in a task's `schedule` field and its run counters beside it; an
//! import puts both in the task's metadata, and [`adopt_imported`] turns each such task into a
//! schedule that keeps those counters, the task itself becoming the schedule's first run.

use serde::Serialize;
use serde_json::Value;

use super::record::{self, FireState};
use super::spec::{ScheduleSpec, TaskTemplate, check_name};
use crate::error::Result;
use crate::store::{Change, Mutation, Store};
use crate::task::{Task, TaskState, TaskUpdate, Timestamp};

/// Metadata key holding an imported task's cron expression.
pub const META_IMPORTED_SCHEDULE: &str = "schedule";
/// Metadata key holding an imported task's time zone (default UTC).
const META_IMPORTED_TIMEZONE: &str = "timezone";
/// Spellings of the imported run counters, first found wins.
const RUNS_KEYS: [&str; 3] = ["run_count", "runs", "total_runs"];
const SUCCESS_KEYS: [&str; 3] = ["success_count", "successes", "total_successes"];
const FAILURE_KEYS: [&str; 3] = ["failure_count", "failures", "total_failures"];

/// What [`adopt_imported`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdoptReport {
    /// `(task id, schedule name)` of each task that became a schedule.
    pub adopted: Vec<(String, String)>,
    /// `(task id, why)` of each scheduled task left as it was (an invalid cron, ...).
    pub refused: Vec<(String, String)>,
}

fn counter(task: &Task, keys: &[&str]) -> Option<u64> {
    keys.iter()
        .find_map(|k| task.metadata.get(*k).and_then(Value::as_u64))
}

/// A schedule name from a task id: the allowed characters kept, others as `-`.
fn name_for(id: &str) -> String {
    let mut name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(super::spec::NAME_BYTES_MAX - 4)
        .collect();
    if name.is_empty() {
        name.push_str("task");
    }
    name
}

fn spec_for(task: &Task, name: String, cron: &str) -> ScheduleSpec {
    let mut metadata = task.metadata.clone();
    let kind = metadata
        .remove(crate::runtime::META_KIND)
        .and_then(|v| v.as_str().map(str::to_string));
    let input = metadata.remove(crate::runtime::META_INPUT);
    for k in [
        META_IMPORTED_SCHEDULE,
        META_IMPORTED_TIMEZONE,
        crate::task::META_NOT_BEFORE,
    ]
    .iter()
    .chain(&RUNS_KEYS)
    .chain(&SUCCESS_KEYS)
    .chain(&FAILURE_KEYS)
    {
        metadata.remove(*k);
    }
    ScheduleSpec {
        name,
        cron: Some(cron.to_string()),
        timezone: task
            .metadata
            .get(META_IMPORTED_TIMEZONE)
            .and_then(Value::as_str)
            .map(str::to_string),
        task: TaskTemplate {
            title: Some(task.title.clone()),
            description: task.description.clone(),
            role: task.role.clone(),
            provider: task.provider.clone(),
            model: task.model.clone(),
            tags: task.tags.clone(),
            metadata,
            priority: task.priority,
            kind: kind.clone(),
            input: kind.and(input),
        },
        ..ScheduleSpec::default()
    }
}

/// Turns every live task with a string metadata `schedule` (and not a schedule's record or
/// run already) into a schedule named after the task id, keeping its run counters
/// (`run_count`/`success_count`/`failure_count`, or `runs`/`successes`/`failures`; without
/// them, the task's own outcome). Each task and its schedule are written in one batch guarded
/// by the task's version, so running this again (after a crash, a second import) adopts only
/// what is left. Nothing before `now` fires.
pub fn adopt_imported(store: &Store, now: Timestamp) -> Result<AdoptReport> {
    let mut report = AdoptReport::default();
    // Only the tasks that carry a schedule are copied: cloning every task (`all_tasks`) after
    // an import of 1,000,000 tasks took 9 % of its CPU time and 700 MB.
    let candidates: Vec<Task> = store.read_state(|st| {
        st.tasks()
            .filter(|t| t.metadata.contains_key(META_IMPORTED_SCHEDULE))
            .map(|t| t.into_owned())
            .collect()
    })?;
    for task in candidates {
        let Some(cron) = task
            .metadata
            .get(META_IMPORTED_SCHEDULE)
            .and_then(Value::as_str)
        else {
            continue;
        };
        if record::is_record(&task) || task.metadata.contains_key(record::META_RUN_OF) {
            continue;
        }
        let mut name = name_for(&task.id);
        let mut n = 1;
        while store.get(&record::record_id(&name)).is_ok() {
            n += 1;
            name = format!("{}-{n}", name_for(&task.id));
        }
        if let Err(e) = check_name(&name) {
            report.refused.push((task.id.clone(), e.to_string()));
            continue;
        }
        let spec = spec_for(&task, name.clone(), cron);
        let finished = task.state.is_terminal();
        let own = |s: TaskState| u64::from(task.state == s);
        let state = FireState {
            fired_through: now.as_millis(),
            runs: counter(&task, &RUNS_KEYS).unwrap_or(u64::from(finished)) + u64::from(!finished),
            successes: counter(&task, &SUCCESS_KEYS).unwrap_or(own(TaskState::Completed)),
            failures: counter(&task, &FAILURE_KEYS).unwrap_or(own(TaskState::Failed)),
            ..FireState::default()
        };
        let new = match record::new_record(&spec, now.as_millis(), &state) {
            Ok(n) => n,
            Err(e) => {
                report.refused.push((task.id.clone(), e.to_string()));
                continue;
            }
        };
        // The task becomes the schedule's run. A finished one is marked counted: its outcome
        // is in the imported counters already; an unfinished one is counted when it ends.
        let mut u = TaskUpdate {
            add_tags: vec![record::run_tag(&name), record::ANY_RUN_TAG.into()],
            ..TaskUpdate::default()
        };
        u.set_metadata
            .insert(record::META_RUN_OF.into(), Value::String(name.clone()));
        if !finished {
            u.add_tags.push(record::UNCOUNTED_TAG.into());
        }
        if finished {
            u.set_metadata.insert(
                record::META_COUNTED.into(),
                Value::String(task.state.as_str().into()),
            );
        }
        let batch = vec![
            Mutation::submit(new).actor("import"),
            Mutation::new(task.id.clone(), Change::Update(u))
                .expect_version(task.version)
                .actor("import"),
        ];
        store.batch(batch)?;
        report.adopted.push((task.id.clone(), name));
    }
    Ok(report)
}
