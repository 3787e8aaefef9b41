//! Queries: filters, sorting, pagination with a cursor that stays correct while tasks change.

use std::cmp::Ordering;

use serde_json::Value;

use super::state::State;
use crate::task::{Task, TaskState, Timestamp};

/// Which time a listing is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SortKey {
    /// Creation time (the default).
    #[default]
    Created,
    /// Last update time.
    Updated,
}

/// A filter over tasks. Every set field must match (AND); `states` matches any of its entries.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Any of these states (empty: any state).
    pub states: Vec<TaskState>,
    /// Exactly this role.
    pub role: Option<String>,
    /// Exactly this provider.
    pub provider: Option<String>,
    /// Exactly this model.
    pub model: Option<String>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Every one of these metadata entries. A string value also matches a JSON value whose
    /// text is equal (so `--meta cost=5` matches the number 5).
    pub metadata: Vec<(String, Value)>,
    /// Case-insensitive substring of the title or description.
    pub text: Option<String>,
    /// Created at or after.
    pub created_since: Option<Timestamp>,
    /// Created before.
    pub created_until: Option<Timestamp>,
    /// Updated at or after.
    pub updated_since: Option<Timestamp>,
    /// Updated before.
    pub updated_until: Option<Timestamp>,
}

/// A listing: a filter plus order and a page.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// What to match.
    pub filter: Filter,
    /// Sort key.
    pub sort: SortKey,
    /// Newest first.
    pub descending: bool,
    /// At most this many tasks (None: all).
    pub limit: Option<usize>,
    /// Skip this many matches first.
    pub offset: usize,
    /// Continue after this cursor (from a previous page's `next_cursor`).
    pub after: Option<Cursor>,
}

/// A position in a listing: the sort time and id of the last task returned. Stays correct
/// while tasks are added, changed or removed: the next page starts strictly after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Sort time of the last task returned (ms).
    pub at_ms: i64,
    /// Its id.
    pub id: String,
}

impl Cursor {
    /// An opaque text form (`<ms>:<id>`).
    pub fn encode(&self) -> String {
        format!("{}:{}", self.at_ms, self.id)
    }
    /// Parses the text form.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (ms, id) = text.split_once(':')?;
        Some(Cursor {
            at_ms: ms.parse().ok()?,
            id: id.to_string(),
        })
    }
}

/// One page of results.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The tasks.
    pub tasks: Vec<Task>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<Cursor>,
}

impl Filter {
    /// True when `task` matches.
    pub fn matches(&self, task: &Task) -> bool {
        (self.states.is_empty() || self.states.contains(&task.state))
            && eq_opt(&self.role, &task.role)
            && eq_opt(&self.provider, &task.provider)
            && eq_opt(&self.model, &task.model)
            && self.tags.iter().all(|t| task.tags.contains(t))
            && self
                .metadata
                .iter()
                .all(|(k, v)| task.metadata.get(k).is_some_and(|have| meta_eq(have, v)))
            && in_range(task.created_at, self.created_since, self.created_until)
            && in_range(task.updated_at, self.updated_since, self.updated_until)
            && self.text.as_ref().is_none_or(|needle| {
                contains_ci(&task.title, needle) || contains_ci(&task.description, needle)
            })
    }
}

fn eq_opt(want: &Option<String>, have: &Option<String>) -> bool {
    want.as_ref()
        .is_none_or(|w| have.as_deref() == Some(w.as_str()))
}

fn meta_eq(have: &Value, want: &Value) -> bool {
    if have == want {
        return true;
    }
    match (have, want) {
        (Value::String(h), w) => w.as_str() == Some(h.as_str()),
        // Text that is not JSON matches nothing else (it used to be read as `null`, so any
        // such text matched a `null` value).
        (h, Value::String(w)) => serde_json::from_str::<Value>(w).is_ok_and(|v| *h == v),
        _ => false,
    }
}

fn in_range(t: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    if needle.is_ascii() && haystack.is_ascii() {
        return contains_ascii_ci(haystack.as_bytes(), needle.as_bytes());
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// ASCII case-insensitive substring search: looks for the needle's first byte (in either
/// case) and compares the rest only there.
fn contains_ascii_ci(h: &[u8], n: &[u8]) -> bool {
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let last = h.len() - n.len();
    h[..=last]
        .iter()
        .enumerate()
        .any(|(i, &b)| (b == lo || b == up) && h[i + 1..i + n.len()].eq_ignore_ascii_case(rest))
}

fn sort_time(task: &Task, key: SortKey) -> i64 {
    match key {
        SortKey::Created => task.created_at.0,
        SortKey::Updated => task.updated_at.0,
    }
}

/// Runs a query over the state.
pub fn run(state: &State, q: &Query) -> Page {
    let key = q.sort;
    let cmp = |a: &(i64, &str), b: &(i64, &str)| -> Ordering {
        let o = a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1));
        if q.descending { o.reverse() } else { o }
    };
    let after = q.after.as_ref().map(|c| (c.at_ms, c.id.as_str()));
    let mut hits: Vec<(i64, &str, &Task)> = state
        .tasks()
        .filter(|t| q.filter.matches(t))
        .map(|t| (sort_time(t, key), t.id.as_str(), t))
        .filter(|(ms, id, _)| after.is_none_or(|a| cmp(&(*ms, id), &a) == Ordering::Greater))
        .collect();
    let wanted = q.limit.map(|l| l.saturating_add(q.offset));
    let order = |a: &(i64, &str, &Task), b: &(i64, &str, &Task)| cmp(&(a.0, a.1), &(b.0, b.1));
    match wanted {
        // Only the first `offset + limit` need ordering: select them, then sort just those.
        Some(n) if n < hits.len() => {
            if n > 0 {
                hits.select_nth_unstable_by(n - 1, order);
            }
            hits.truncate(n);
            hits.sort_unstable_by(order);
        }
        _ => hits.sort_unstable_by(order),
    }
    let more = wanted.is_some_and(|n| n <= hits.len());
    let tasks: Vec<Task> = hits
        .into_iter()
        .skip(q.offset)
        .map(|(_, _, t)| t.clone())
        .collect();
    let next_cursor = if more {
        tasks.last().map(|t| Cursor {
            at_ms: sort_time(t, key),
            id: t.id.clone(),
        })
    } else {
        None
    };
    Page { tasks, next_cursor }
}

/// Counts the tasks matching a filter.
pub fn count(state: &State, filter: &Filter) -> usize {
    state.tasks().filter(|t| filter.matches(t)).count()
}
