//! Per-kind admission rules: pause, concurrency limits (per kind and per key) and rate limits,
//! checked when a task starts, under the store's state lock. Every start of a task goes
//! through one store's commit path (the runtime's workers, the server's HTTP workers, a
//! plain `Store::claim`), and a store has one writing process, so a rule checked there holds
//! across all of them, with no race between two workers counting the same slot.
//!
//! The rules are durable settings of the store, kept in `<dir>/kinds.json` (written with temp
//! file, fsync, rename, fsync of the directory; see docs/format.md), so a pause and every
//! limit survive a restart and apply to whichever process opens the store next.
//!
//! A task's kind is the string in its `runtime.kind` metadata; tasks without one are never
//! held back. What counts as running is the store's state (tasks in `running`), so a crash
//! loses no slot: interrupted tasks leave `running` through recovery like any other.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::State;
use crate::error::{Error, Result};
use crate::task::{Event, EventKind, Task, TaskState};
use crate::wal::storage::{OpenMode, Storage};

/// Metadata key holding a task's kind (the runtime's and the worker protocol's).
pub const META_KIND: &str = "runtime.kind";
/// The settings file in a store's directory.
pub const KINDS_FILE: &str = "kinds.json";
/// Largest settings file read (checked before reading it).
pub const KINDS_FILE_BYTES_MAX: u64 = 1 << 20;
/// Most kinds with settings.
pub const KINDS_MAX: usize = 4096;
/// Longest kind name, and longest per-key metadata field name, in bytes.
pub const KIND_BYTES_MAX: usize = 256;
/// Longest rate-limit window: one day, in milliseconds.
pub const RATE_WINDOW_MS_MAX: u64 = 86_400_000;
/// Most starts a rate limit may allow per window (the window keeps one time per start).
pub const RATE_STARTS_MAX: u32 = 100_000;

/// Admission rules of one kind.
///
/// ## Defaults
/// Not paused, no limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KindSettings {
    /// No task of the kind starts while paused; running ones finish.
    #[serde(default)]
    pub paused: bool,
    /// Most tasks of the kind running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Most tasks of the kind running at once with the same value of a metadata field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key: Option<PerKeyLimit>,
    /// Most starts of the kind per window of time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
}

impl KindSettings {
    /// No rules.
    pub fn new() -> Self {
        KindSettings::default()
    }
    /// Sets the concurrency limit.
    #[must_use]
    pub fn max_running(mut self, n: u32) -> Self {
        self.max_running = Some(n);
        self
    }
    /// Sets a concurrency limit per value of the metadata field `field` (a customer id, say).
    #[must_use]
    pub fn max_running_per_key(mut self, field: impl Into<String>, n: u32) -> Self {
        self.per_key = Some(PerKeyLimit {
            field: field.into(),
            max_running: n,
        });
        self
    }
    /// Sets a rate limit: at most `starts` starts in any window of `per_ms` milliseconds.
    #[must_use]
    pub fn rate(mut self, starts: u32, per_ms: u64) -> Self {
        self.rate = Some(RateLimit { starts, per_ms });
        self
    }
    /// Pauses (or resumes) the kind.
    #[must_use]
    pub fn paused(mut self, yes: bool) -> Self {
        self.paused = yes;
        self
    }

    /// True when the settings hold no rule (the kind needs no entry).
    pub fn is_empty(&self) -> bool {
        self == &KindSettings::default()
    }

    fn check(&self, kind: &str) -> Result<()> {
        let bad = |at: &str, reason: String| Error::InvalidInput {
            at: Some(format!("kinds.{kind}.{at}")),
            reason,
        };
        check_name(kind, "kind")?;
        if let Some(p) = &self.per_key {
            check_name(&p.field, "per_key.field")?;
            if p.max_running == 0 {
                return Err(bad("per_key.max_running", "must be at least 1".into()));
            }
        }
        if self.max_running == Some(0) {
            return Err(bad(
                "max_running",
                "must be at least 1 (pause the kind to stop it)".into(),
            ));
        }
        if let Some(r) = &self.rate {
            if !(1..=RATE_STARTS_MAX).contains(&r.starts) {
                return Err(bad(
                    "rate.starts",
                    format!("{} is out of range (1 to {RATE_STARTS_MAX})", r.starts),
                ));
            }
            if !(1..=RATE_WINDOW_MS_MAX).contains(&r.per_ms) {
                return Err(bad(
                    "rate.per_ms",
                    format!("{} is out of range (1 to {RATE_WINDOW_MS_MAX})", r.per_ms),
                ));
            }
        }
        Ok(())
    }
}

fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name.len() > KIND_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(Error::InvalidInput {
            at: Some(what.into()),
            reason: format!(
                "{name:?} must be 1 to {KIND_BYTES_MAX} bytes without control characters"
            ),
        });
    }
    Ok(())
}

/// A concurrency limit per value of a metadata field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerKeyLimit {
    /// The metadata field whose value is the key (tasks without it share one key, `null`).
    pub field: String,
    /// Most tasks of the kind running at once with one value.
    pub max_running: u32,
}

/// At most `starts` starts in any window of `per_ms` milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Starts allowed per window.
    pub starts: u32,
    /// The window, in milliseconds.
    pub per_ms: u64,
}

/// The file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindsFile {
    version: u32,
    kinds: BTreeMap<String, KindSettings>,
}

const KINDS_FILE_VERSION: u32 = 1;

/// The times of recent starts of one kind, oldest first: a sliding window.
#[derive(Debug, Default)]
pub struct RateWindow {
    starts: VecDeque<i64>,
}

impl RateWindow {
    /// How long until one more start fits (0: now), forgetting starts older than the window.
    pub fn wait_ms(&mut self, limit: &RateLimit, now_ms: i64) -> u64 {
        let per = i64::try_from(limit.per_ms).unwrap_or(i64::MAX);
        while self
            .starts
            .front()
            .is_some_and(|&t| t <= now_ms.saturating_sub(per))
        {
            self.starts.pop_front();
        }
        if self.starts.len() < limit.starts as usize {
            return 0;
        }
        // Full: the oldest start leaves the window first.
        let oldest = self.starts.front().copied().unwrap_or(now_ms);
        u64::try_from(oldest.saturating_add(per).saturating_sub(now_ms))
            .unwrap_or(0)
            .max(1)
    }
    /// Records a start.
    pub fn record(&mut self, now_ms: i64) {
        self.starts.push_back(now_ms);
    }
}

/// The admission rules of every kind and the rate windows.
#[derive(Debug, Default)]
pub struct Gate {
    settings: BTreeMap<String, KindSettings>,
    windows: HashMap<String, RateWindow>,
}

impl Gate {
    /// Reads `<dir>/kinds.json` (none: no rules).
    pub fn load(storage: &dyn Storage, dir: &Path) -> Result<Gate> {
        let path = dir.join(KINDS_FILE);
        if !storage.exists(&path) {
            return Ok(Gate::default());
        }
        let file = storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io("open", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        if len > KINDS_FILE_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "kinds.json",
                len,
                max: KINDS_FILE_BYTES_MAX,
            });
        }
        let bytes = file
            .read_prefix(KINDS_FILE_BYTES_MAX)
            .map_err(|e| Error::io("read", &path, e))?;
        Gate::parse(&bytes, &path)
    }

    /// The rules in `bytes`, a settings file's contents; errors name `path` (where they came
    /// from).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Gate> {
        if bytes.len() as u64 > KINDS_FILE_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "kinds.json",
                len: bytes.len() as u64,
                max: KINDS_FILE_BYTES_MAX,
            });
        }
        let parsed: KindsFile = serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupt(
                path,
                None,
                None,
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        if parsed.version != KINDS_FILE_VERSION {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: parsed.version,
                supported: KINDS_FILE_VERSION,
            });
        }
        if parsed.kinds.len() > KINDS_MAX {
            return Err(Error::corrupt(
                path,
                None,
                None,
                format!("{} kinds, more than {KINDS_MAX}", parsed.kinds.len()),
            ));
        }
        for (kind, s) in &parsed.kinds {
            s.check(kind)
                .map_err(|e| Error::corrupt(path, None, None, e.to_string()))?;
        }
        Ok(Gate {
            settings: parsed.kinds,
            windows: HashMap::new(),
        })
    }

    /// The settings of every kind that has some.
    pub fn settings(&self) -> &BTreeMap<String, KindSettings> {
        &self.settings
    }

    /// The settings with `kind` set to `s`, checked (the caller saves them, then installs them
    /// with [`Gate::install`]: nothing changes unless the file was written).
    pub fn with(&self, kind: &str, s: KindSettings) -> Result<BTreeMap<String, KindSettings>> {
        s.check(kind)?;
        let mut all = self.settings.clone();
        if s.is_empty() {
            all.remove(kind);
        } else {
            all.insert(kind.to_string(), s);
        }
        if all.len() > KINDS_MAX {
            return Err(Error::InvalidInput {
                at: Some("kind".into()),
                reason: format!("more than {KINDS_MAX} kinds have settings"),
            });
        }
        Ok(all)
    }

    /// Replaces the settings (already saved).
    pub fn install(&mut self, settings: BTreeMap<String, KindSettings>) {
        self.windows.retain(|k, _| settings.contains_key(k));
        self.settings = settings;
    }

    /// The settings file's contents for `settings`.
    pub fn encode(settings: &BTreeMap<String, KindSettings>) -> Result<Vec<u8>> {
        let doc = KindsFile {
            version: KINDS_FILE_VERSION,
            kinds: settings.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::InvalidInput {
            at: Some("kinds".into()),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Writes a settings file's `bytes` ([`Gate::encode`]) to `<dir>/kinds.json` durably:
    /// temp file, fsync, rename, fsync dir.
    pub fn save(storage: &dyn Storage, dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
        let path = dir.join(KINDS_FILE);
        let tmp = dir.join(format!("{KINDS_FILE}.tmp"));
        if storage.exists(&tmp) {
            storage
                .remove_file(&tmp)
                .map_err(|e| Error::io("remove", &tmp, e))?;
        }
        let file = storage
            .open(&tmp, OpenMode::CreateNew)
            .map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all_at(bytes, 0)
            .map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(file);
        storage
            .rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
        Ok(path)
    }

    /// True when no kind has a rule (starts need no check).
    pub fn is_open(&self) -> bool {
        self.settings.is_empty()
    }

    /// Checks every start among `events` (a batch about to commit, judged against `state`
    /// before it) and, when all are admitted, records them in the rate windows. `meta_of`
    /// finds a starting task's metadata as the batch sees it.
    pub fn admit<'a>(
        &mut self,
        state: &'a State,
        events: &'a [Event],
        meta_of: impl Fn(&str) -> Option<&'a Meta>,
        now_ms: i64,
    ) -> Result<()> {
        // Starts admitted earlier in this batch, by kind and by (kind, key).
        let mut batch_kind: HashMap<&str, u32> = HashMap::new();
        let mut batch_key: HashMap<(&str, String), u32> = HashMap::new();
        let mut admitted: Vec<&str> = Vec::new();
        // NOTE: the running counts before the batch, counted once per kind (and per key) for
        // the whole batch: each count walks every running task, ~0.2 µs a task
        // (benches/admission.rs), so a batch of 100 starts would otherwise walk them 100 times.
        let mut before_kind: HashMap<&str, u32> = HashMap::new();
        let mut before_key: HashMap<(&str, String), u32> = HashMap::new();
        for e in events {
            if !matches!(e.kind, EventKind::Started { .. }) {
                continue;
            }
            let Some(meta) = meta_of(&e.task_id) else {
                continue;
            };
            let Some(kind) = kind_in(meta) else { continue };
            let Some(s) = self.settings.get(kind) else {
                continue;
            };
            let refuse = |reason: String, retry_after_ms: Option<u64>| Error::Throttled {
                id: e.task_id.clone(),
                kind: kind.to_string(),
                reason,
                retry_after_ms,
            };
            if s.paused {
                return Err(refuse("the kind is paused".into(), None));
            }
            if let Some(max) = s.max_running {
                let base = *before_kind
                    .entry(kind)
                    .or_insert_with(|| running_of(state, kind, None));
                let now = base + batch_kind.get(kind).copied().unwrap_or(0);
                if now >= max {
                    return Err(refuse(
                        format!("{now} of at most {max} tasks of the kind are running"),
                        None,
                    ));
                }
            }
            if let Some(p) = &s.per_key {
                let key = key_in(meta, &p.field);
                let base = *before_key
                    .entry((kind, key.clone()))
                    .or_insert_with(|| running_of(state, kind, Some((&p.field, &key))));
                let now = base + batch_key.get(&(kind, key.clone())).copied().unwrap_or(0);
                if now >= p.max_running {
                    return Err(refuse(
                        format!(
                            "{now} of at most {} tasks of the kind with {} = {key} are running",
                            p.max_running, p.field
                        ),
                        None,
                    ));
                }
                *batch_key.entry((kind, key)).or_default() += 1;
            }
            if let Some(r) = &s.rate {
                let window = self.windows.entry(kind.to_string()).or_default();
                let pending = admitted.iter().filter(|k| **k == kind).count();
                // Starts admitted earlier in this batch are not in the window yet.
                for _ in 0..pending {
                    window.record(now_ms);
                }
                let wait = window.wait_ms(r, now_ms);
                for _ in 0..pending {
                    window.starts.pop_back();
                }
                if wait > 0 {
                    return Err(refuse(
                        format!("{} starts per {} ms reached", r.starts, r.per_ms),
                        Some(wait),
                    ));
                }
            }
            *batch_kind.entry(kind).or_default() += 1;
            admitted.push(kind);
        }
        for kind in admitted {
            if self.settings.get(kind).is_some_and(|s| s.rate.is_some()) {
                self.windows
                    .entry(kind.to_string())
                    .or_default()
                    .record(now_ms);
            }
        }
        Ok(())
    }
}

/// A task's metadata.
pub type Meta = BTreeMap<String, Value>;

/// The kind of a task, when it has one.
pub fn kind_of(task: &Task) -> Option<&str> {
    kind_in(&task.metadata)
}

fn kind_in(meta: &Meta) -> Option<&str> {
    meta.get(META_KIND).and_then(Value::as_str)
}

/// A task's key for a per-key limit: the field's value (a string as is, anything else as JSON).
fn key_in(meta: &Meta, field: &str) -> String {
    match meta.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "null".into(),
    }
}

/// Running tasks of `kind` (with `field` = `key`, when given). Walks the running tasks only.
fn running_of(state: &State, kind: &str, key: Option<(&str, &str)>) -> u32 {
    let n = state
        .tasks_in(TaskState::Running)
        .filter(|t| kind_of(t) == Some(kind))
        .filter(|t| key.is_none_or(|(f, k)| key_in(&t.metadata, f) == k))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate window with a hand-driven clock: no sleeping, no timing.
    #[test]
    fn rate_window_admits_n_per_window() {
        let limit = RateLimit {
            starts: 3,
            per_ms: 1_000,
        };
        let mut w = RateWindow::default();
        for t in [0, 10, 20] {
            assert_eq!(w.wait_ms(&limit, t), 0);
            w.record(t);
        }
        // Full until the start at 0 leaves the window at 1,000.
        assert_eq!(w.wait_ms(&limit, 500), 500);
        assert_eq!(w.wait_ms(&limit, 999), 1);
        assert_eq!(w.wait_ms(&limit, 1_000), 0);
        w.record(1_000);
        assert_eq!(w.wait_ms(&limit, 1_000), 10);
        assert_eq!(w.wait_ms(&limit, 1_010), 0);
    }

    #[test]
    fn settings_are_checked() {
        let g = Gate::default();
        assert!(g.with("k", KindSettings::new().max_running(0)).is_err());
        assert!(g.with("k", KindSettings::new().rate(0, 10)).is_err());
        assert!(g.with("k", KindSettings::new().rate(1, 0)).is_err());
        assert!(
            g.with("k", KindSettings::new().max_running_per_key("", 1))
                .is_err()
        );
        assert!(g.with("", KindSettings::new().paused(true)).is_err());
        assert!(g.with("k\n", KindSettings::new().paused(true)).is_err());
        let all = g.with("k", KindSettings::new().max_running(2)).unwrap();
        assert_eq!(all.len(), 1);
        // Settings back to the default remove the entry.
        let mut g = Gate::default();
        g.install(all);
        assert!(g.with("k", KindSettings::new()).unwrap().is_empty());
    }
}
