//! Statistics: counts by state, role, provider or any metadata key, and the store's health.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::state::State;
use crate::task::{TaskState, Timestamp};
use crate::wal::WalStats;

/// Counts over the tasks, plus the store's health.
///
/// ```
/// use tasklog::{NewTask, Store};
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.submit(NewTask::new("a").meta("team", "web".into()))?;
/// store.submit(NewTask::new("b").meta("team", "ops".into()))?;
/// let stats = store.stats(Some("team"))?;
/// assert_eq!(stats.total, 2);
/// assert_eq!(stats.by_state["pending"], 2);
/// assert_eq!(stats.by_key.unwrap().counts["web"], 1);
/// # Ok(())
/// # }
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Live tasks.
    pub total: usize,
    /// Lowercase state -> count (every state is present, zero included).
    pub by_state: BTreeMap<String, usize>,
    /// Role -> count (`(none)` for tasks without one).
    pub by_role: BTreeMap<String, usize>,
    /// Provider -> count.
    pub by_provider: BTreeMap<String, usize>,
    /// When asked for a metadata key: its value (as text) -> count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_key: Option<KeyCounts>,
    /// When asked for several metadata keys at once (`Store::stats_by`): counts by each, in
    /// the order asked.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub by_keys: Vec<KeyCounts>,
    /// Sum of attempt numbers over live tasks.
    pub attempts: u64,
    /// Completed tasks.
    pub successes: usize,
    /// Failures recorded (sum of error counts).
    pub failures: u64,
    /// Tasks removed whose history is kept.
    pub removed: usize,
    /// Events in the audit trail (live and removed tasks).
    pub events: u64,
    /// The store's own figures.
    pub health: Health,
}

/// Counts by one metadata key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct KeyCounts {
    /// The key.
    pub key: String,
    /// Value -> count (`(none)` for tasks without the key).
    pub counts: BTreeMap<String, usize>,
}

/// How the store itself is doing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Bytes in log segments.
    pub log_bytes: u64,
    /// Number of log segments.
    pub log_segments: usize,
    /// Lowest LSN still in the log.
    pub first_lsn: u64,
    /// Last LSN applied.
    pub last_lsn: u64,
    /// Highest LSN known durable.
    pub durable_lsn: u64,
    /// Snapshot files on disk.
    pub snapshots: usize,
    /// LSN of the newest snapshot (0: none).
    pub snapshot_lsn: u64,
    /// Age of the newest snapshot in seconds, if any.
    pub snapshot_age_secs: Option<f64>,
    /// Records applied since the newest snapshot.
    pub events_since_snapshot: u64,
    /// Appends and fsyncs since open.
    pub appends: u64,
    /// fdatasync calls since open.
    pub fsyncs: u64,
    /// fdatasync latency percentiles (µs).
    pub fsync_p50_us: u64,
    /// 90th percentile.
    pub fsync_p90_us: u64,
    /// 99th percentile.
    pub fsync_p99_us: u64,
    /// Slowest.
    pub fsync_max_us: u64,
}

fn name_or_none(v: Option<&str>) -> String {
    v.map_or_else(|| "(none)".to_string(), str::to_string)
}

/// FNV-1a: the metadata-key breakdown hashes a short value once per task, where SipHash
/// dominated the whole pass (and no flooding concern applies to counting our own tasks).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Counts the tasks in `state`; `key` adds counts by one metadata key.
///
/// Everything but the metadata-key breakdown comes from counters the state keeps as events
/// apply. The breakdown is one pass over the tasks that allocates nothing per task: counts
/// are kept under the borrowed JSON value and turned into owned text once at the end.
pub fn count(state: &State, key: Option<&str>) -> Stats {
    let owned = |counts: &mut dyn Iterator<Item = (Option<&str>, usize)>| {
        let mut out = BTreeMap::new();
        for (name, n) in counts {
            // A task without a name and one named "(none)" share a line.
            *out.entry(name_or_none(name)).or_default() += n;
        }
        out
    };
    Stats {
        total: state.len(),
        by_state: TaskState::ALL
            .iter()
            .map(|&st| (st.as_str().to_string(), state.count_in(st)))
            .collect(),
        by_role: owned(&mut state.role_counts()),
        by_provider: owned(&mut state.provider_counts()),
        by_key: key.map(|k| by_key(state, k)),
        by_keys: Vec::new(),
        attempts: state.attempts(),
        successes: state.count_in(TaskState::Completed),
        failures: state.failures(),
        removed: state.removed_len(),
        events: state.events(),
        health: Health {
            last_lsn: state.applied_lsn,
            events_since_snapshot: state.records_since_snapshot,
            ..Health::default()
        },
    }
}

/// Most metadata keys one statistics call may break the tasks down by.
pub const STATS_KEYS_MAX: usize = 16;

/// Counts the live tasks by the value of metadata key `key`.
pub fn by_key(state: &State, key: &str) -> KeyCounts {
    // Keyed by the value's text, not a borrowed value: a terminal task is decoded for the
    // count and dropped at once.
    let mut by_value: FnvMap<Option<String>, usize> = FnvMap::default();
    for t in state.tasks() {
        let text = t.metadata.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        *by_value.entry(text).or_default() += 1;
    }
    let mut counts = BTreeMap::new();
    for (text, n) in by_value {
        // Different values can share a text (the string "5" and the number 5).
        *counts.entry(name_or_none(text.as_deref())).or_default() += n;
    }
    KeyCounts {
        key: key.to_string(),
        counts,
    }
}

impl Health {
    /// Fills in the log's figures (from [`Store::log_stats`](crate::Store::log_stats)), for a
    /// health computed from a read view, which holds no log.
    pub fn add_log(&mut self, log: &WalStats) {
        add_log(self, log);
    }
}

/// Fills in the log's figures.
pub fn add_log(health: &mut Health, log: &WalStats) {
    health.log_bytes = log.bytes;
    health.log_segments = log.segments;
    health.first_lsn = log.first_lsn;
    health.durable_lsn = log.durable_lsn;
    health.appends = log.appends;
    health.fsyncs = log.fsyncs;
    health.fsync_p50_us = log.fsync_latency.p50_us;
    health.fsync_p90_us = log.fsync_latency.p90_us;
    health.fsync_p99_us = log.fsync_latency.p99_us;
    health.fsync_max_us = log.fsync_latency.max_us;
}

/// Seconds between a snapshot file's modification time and now.
pub fn age_secs(modified: Option<std::time::SystemTime>) -> Option<f64> {
    let m = modified?;
    Some(
        std::time::SystemTime::now()
            .duration_since(m)
            .ok()?
            .as_secs_f64(),
    )
}

/// Which time of a task retention compares with its cutoff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CleanupAge {
    /// When it finished (`completed_at`, else its last change). The default.
    #[default]
    Finished,
    /// When it last ran (`started_at` of its last attempt, else its creation): seed 000's
    /// `last_run`.
    LastRun,
}

/// What retention removes.
///
/// ## Defaults
/// - `states`: completed, failed and discarded (seed 000's rule, whose "failed" covers a failure
///   that ran out of attempts; cancelled tasks are kept).
/// - `age`: [`CleanupAge::Finished`].
/// - `older_than`: 30 days.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupRule {
    /// Terminal states whose tasks may go (pending and running never do).
    pub states: Vec<TaskState>,
    /// The time compared with the cutoff.
    pub age: CleanupAge,
    /// How old that time must be.
    pub older_than: std::time::Duration,
}

impl Default for CleanupRule {
    fn default() -> Self {
        CleanupRule {
            // Discarded is a failure that ran out of attempts: the seed's "failed" covers it.
            states: vec![
                TaskState::Completed,
                TaskState::Failed,
                TaskState::Discarded,
            ],
            age: CleanupAge::Finished,
            older_than: std::time::Duration::from_secs(30 * 86_400),
        }
    }
}

impl CleanupRule {
    /// Sets the states.
    #[must_use]
    pub fn states(mut self, states: Vec<TaskState>) -> Self {
        self.states = states;
        self
    }
    /// Sets the time compared.
    #[must_use]
    pub fn age(mut self, age: CleanupAge) -> Self {
        self.age = age;
        self
    }
    /// Sets the age.
    #[must_use]
    pub fn older_than(mut self, d: std::time::Duration) -> Self {
        self.older_than = d;
        self
    }
}

/// Tasks in `rule`'s states whose compared time is before `cutoff`.
pub fn expired_by(state: &State, rule: &CleanupRule, cutoff: Timestamp) -> Vec<(String, u64)> {
    let mut ids: Vec<(String, u64)> = TaskState::ALL
        .into_iter()
        .filter(|s| s.is_terminal() && rule.states.contains(s))
        .flat_map(|s| state.heads_in(s))
        .filter(|(_, t)| {
            let at = match rule.age {
                CleanupAge::Finished => t.completed_ms.unwrap_or(t.updated_ms),
                CleanupAge::LastRun => t.started_ms.unwrap_or(t.keys.created_ms),
            };
            at < cutoff.0
        })
        .map(|(id, t)| (id.to_string(), t.version))
        .collect();
    ids.sort();
    ids
}

/// Terminal tasks last changed before `cutoff` (candidates for retention).
pub fn expired(state: &State, cutoff: Timestamp) -> Vec<(String, u64)> {
    let mut ids: Vec<(String, u64)> = TaskState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .flat_map(|s| state.heads_in(s))
        .filter(|(_, t)| t.completed_ms.unwrap_or(t.updated_ms) < cutoff.0)
        .map(|(id, t)| (id.to_string(), t.version))
        .collect();
    ids.sort();
    ids
}
