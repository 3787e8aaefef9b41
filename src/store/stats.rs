//! Statistics: counts by state, role, provider or any metadata key, and the store's health.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::state::State;
use crate::task::{TaskState, Timestamp};
use crate::wal::WalStats;

/// Counts over the tasks, plus the store's health.
#[derive(Clone, Debug, Default, Serialize)]
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
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeyCounts {
    /// The key.
    pub key: String,
    /// Value -> count (`(none)` for tasks without the key).
    pub counts: BTreeMap<String, usize>,
}

/// How the store itself is doing.
#[derive(Clone, Debug, Default, Serialize)]
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

/// FNV-1a: the counting maps hash short names once per task, where SipHash dominated the
/// whole pass (and no flooding concern applies to counting our own tasks).
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
/// One pass over the tasks that allocates nothing per task: counts are kept under borrowed
/// names (and, for metadata values, under the borrowed JSON value) and turned into owned
/// text once at the end.
pub fn count(state: &State, key: Option<&str>) -> Stats {
    let mut s = Stats {
        total: state.len(),
        removed: state.removed_len(),
        ..Stats::default()
    };
    let mut by_state = [0usize; TaskState::ALL.len()];
    let mut by_role: FnvMap<Option<&str>, usize> = FnvMap::default();
    let mut by_provider: FnvMap<Option<&str>, usize> = FnvMap::default();
    let mut by_value: FnvMap<Option<&serde_json::Value>, usize> = FnvMap::default();
    for t in state.tasks() {
        if let Some(i) = TaskState::ALL.iter().position(|st| *st == t.state) {
            by_state[i] += 1;
        }
        *by_role.entry(t.role.as_deref()).or_default() += 1;
        *by_provider.entry(t.provider.as_deref()).or_default() += 1;
        s.attempts += u64::from(t.attempt);
        s.failures += u64::from(t.error_count);
        if t.state == TaskState::Completed {
            s.successes += 1;
        }
        if let Some(k) = key {
            *by_value.entry(t.metadata.get(k)).or_default() += 1;
        }
    }
    for (st, n) in TaskState::ALL.iter().zip(by_state) {
        s.by_state.insert(st.as_str().to_string(), n);
    }
    let owned = |m: FnvMap<Option<&str>, usize>| -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (k, n) in m {
            *out.entry(name_or_none(k)).or_default() += n;
        }
        out
    };
    s.by_role = owned(by_role);
    s.by_provider = owned(by_provider);
    s.by_key = key.map(|k| {
        let mut counts = BTreeMap::new();
        for (v, n) in by_value {
            let text = v.map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            // Different values can share a text (the string "5" and the number 5).
            *counts.entry(name_or_none(text.as_deref())).or_default() += n;
        }
        KeyCounts {
            key: k.to_string(),
            counts,
        }
    });
    s.events = state.events();
    s.health.last_lsn = state.applied_lsn;
    s.health.events_since_snapshot = state.records_since_snapshot;
    s
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

/// Terminal tasks last changed before `cutoff` (candidates for retention).
pub fn expired(state: &State, cutoff: Timestamp) -> Vec<String> {
    let mut ids: Vec<String> = state
        .tasks()
        .filter(|t| t.state.is_terminal() && t.completed_at.unwrap_or(t.updated_at) < cutoff)
        .map(|t| t.id.clone())
        .collect();
    ids.sort();
    ids
}
