//! Unique tasks: a submit whose metadata names a unique key returns the task that already
//! holds the key within the submit's scope instead of creating another.
//!
//! Scopes: by default, while the holder is pending or running (`active`); with
//! `runtime.unique_for_ms`, for that long after the holder's creation, whatever its state.
//!
//! NOTE: enforced in the store's commit path, under the state lock, so racing submits from any
//! number of threads (or HTTP requests) see each other: exactly one creates. The key lives in
//! the task's metadata, so it is as durable as the task; the index is rebuilt from the tasks
//! on first use after open and kept up by every commit after that.

use std::collections::HashMap;

use serde_json::Value;

use super::mutation::{Change, Mutation};
use super::state::{State, TaskRef};
use crate::error::{Error, Result};
use crate::task::{Event, EventKind, Task, TaskState, Timestamp};

/// Metadata key holding a task's unique key (a string of 1 to 256 bytes).
pub const META_UNIQUE_KEY: &str = "runtime.unique_key";
/// Metadata key holding the uniqueness period in milliseconds (absent: while pending or
/// running).
pub const META_UNIQUE_FOR_MS: &str = "runtime.unique_for_ms";
/// Longest unique key, in bytes.
pub const UNIQUE_KEY_BYTES_MAX: usize = 256;
/// Longest uniqueness period: 10 years, in milliseconds.
pub const UNIQUE_FOR_MS_MAX: u64 = 10 * 365 * 86_400_000;

/// What a submit asks for.
struct Wanted<'a> {
    key: &'a str,
    for_ms: Option<u64>,
}

fn wanted(m: &Mutation) -> Result<Option<Wanted<'_>>> {
    let Change::Submit(new) = &m.change else {
        return Ok(None);
    };
    let Some(key) = new.metadata.get(META_UNIQUE_KEY) else {
        return Ok(None);
    };
    let bad = |field: &str, reason: String| Error::InvalidInput {
        at: Some(format!("metadata.{field}")),
        reason,
    };
    let key = match key {
        Value::String(s) if !s.is_empty() && s.len() <= UNIQUE_KEY_BYTES_MAX => s.as_str(),
        other => {
            return Err(bad(
                META_UNIQUE_KEY,
                format!("{other} is not a string of 1 to {UNIQUE_KEY_BYTES_MAX} bytes"),
            ));
        }
    };
    let for_ms = match new.metadata.get(META_UNIQUE_FOR_MS) {
        None => None,
        Some(v) => match v.as_u64() {
            Some(ms) if (1..=UNIQUE_FOR_MS_MAX).contains(&ms) => Some(ms),
            _ => {
                return Err(bad(
                    META_UNIQUE_FOR_MS,
                    format!("{v} is not a number of milliseconds from 1 to {UNIQUE_FOR_MS_MAX}"),
                ));
            }
        },
    };
    Ok(Some(Wanted { key, for_ms }))
}

fn key_of(t: &Task) -> Option<&str> {
    t.metadata.get(META_UNIQUE_KEY).and_then(Value::as_str)
}

fn in_scope(t: &Task, w: &Wanted<'_>, now: Timestamp) -> bool {
    match w.for_ms {
        None => matches!(t.state, TaskState::Pending | TaskState::Running),
        Some(ms) => {
            let age = now.0.saturating_sub(t.created_at.0);
            u64::try_from(age).unwrap_or(0) < ms
        }
    }
}

/// Unique key -> the tasks that held it, oldest first.
#[derive(Debug, Default)]
pub struct UniqueIndex {
    built: bool,
    by_key: HashMap<String, Vec<String>>,
}

impl UniqueIndex {
    fn build(&mut self, st: &State) {
        if self.built {
            return;
        }
        let mut tasks: Vec<TaskRef<'_>> = st.tasks().filter(|t| key_of(t).is_some()).collect();
        tasks.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        for t in tasks {
            self.note(&t);
        }
        self.built = true;
    }

    fn note(&mut self, t: &Task) {
        if let Some(k) = key_of(t) {
            let ids = self.by_key.entry(k.to_string()).or_default();
            if !ids.contains(&t.id) {
                ids.push(t.id.clone());
            }
        }
    }

    /// When `m` is a submit with a unique key held in its scope, the holder's id. `batch` holds
    /// the events staged so far in the same batch (a key taken earlier in it counts).
    pub fn holder(
        &mut self,
        st: &State,
        batch: &[Event],
        m: &Mutation,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let Some(w) = wanted(m)? else {
            return Ok(None);
        };
        let in_batch = batch.iter().find_map(|e| match &e.kind {
            EventKind::Created { metadata, .. }
                if metadata.get(META_UNIQUE_KEY).and_then(Value::as_str) == Some(w.key) =>
            {
                Some(e.task_id.clone())
            }
            _ => None,
        });
        if in_batch.is_some() {
            return Ok(in_batch);
        }
        self.build(st);
        let Some(ids) = self.by_key.get_mut(w.key) else {
            return Ok(None);
        };
        // Forget holders that were removed or lost the key (their history keeps them).
        ids.retain(|id| st.task(id).is_some_and(|t| key_of(&t) == Some(w.key)));
        Ok(ids
            .iter()
            .rev()
            .filter_map(|id| st.task(id))
            .find(|t| in_scope(t, &w, now))
            .map(|t| t.id.clone()))
    }

    /// True once built: commits must then report the tasks they touch (`after_commit`).
    pub fn is_built(&self) -> bool {
        self.built
    }

    /// True when `e` may give its task a unique key.
    pub fn may_key(e: &Event) -> bool {
        matches!(
            e.kind,
            EventKind::Created { .. } | EventKind::Updated(_) | EventKind::Imported { .. }
        )
    }

    /// Takes note of tasks a committed batch created, imported or updated.
    pub fn after_commit(&mut self, st: &State, ids: &[String]) {
        for id in ids {
            if let Some(t) = st.task(id) {
                self.note(&t);
            }
        }
    }

    /// True when some mutation asks for a unique key (only then is the index consulted).
    pub fn wanted_by(mutations: &[Mutation]) -> bool {
        mutations.iter().any(
            |m| matches!(&m.change, Change::Submit(n) if n.metadata.contains_key(META_UNIQUE_KEY)),
        )
    }
}
