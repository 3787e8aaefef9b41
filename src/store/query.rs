//! Queries: filters, sorting, pagination with a cursor that stays correct while tasks change.
//!
//! A listing sorted by creation time walks one of the state's creation-ordered indexes — the
//! filter's role, its provider, or its states (those merged), whichever holds fewest tasks —
//! forwards or backwards from the cursor or `created_since`/`created_until`, applies the whole
//! filter to each task and stops after `offset + limit` matches. Its cost is the number of
//! tasks walked: a page of a common filter walks a few dozen, a filter that matches few tasks
//! of the chosen index walks all of it. A listing sorted by update time scans every task.
//! Counts with no filter but states come from the counters; other counts walk the smallest
//! index when it holds fewer than half the tasks, and scan otherwise.

use std::cmp::Ordering;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use super::state::{CreatedKey, IdKey, Ordered, State, TaskRef};
use crate::task::{Task, TaskState, Timestamp};

/// Tasks per page of [`Store::for_each_task`](super::Store::for_each_task).
pub const SCAN_PAGE_TASKS: usize = 1024;

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
    /// Any of these roles (empty: any role). ANDed with `role`.
    pub roles: Vec<String>,
    /// Any of these providers (empty: any provider). ANDed with `provider`.
    pub providers: Vec<String>,
    /// Any of these models (empty: any model). ANDed with `model`.
    pub models: Vec<String>,
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
#[non_exhaustive]
pub struct Page {
    /// The tasks.
    pub tasks: Vec<Task>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<Cursor>,
}

/// Builders: `Filter::new().state(TaskState::Pending).tag("x")`. Each adds to what is set
/// (`state` and `tag` can be called several times), and every setter is `#[must_use]`.
impl Filter {
    /// A filter matching every task.
    pub fn new() -> Self {
        Filter::default()
    }
    /// Also matches tasks in this state (any of the states given).
    #[must_use]
    pub fn state(mut self, state: TaskState) -> Self {
        self.states.push(state);
        self
    }
    /// Matches tasks in any of these states.
    #[must_use]
    pub fn states(mut self, states: impl IntoIterator<Item = TaskState>) -> Self {
        self.states.extend(states);
        self
    }
    /// Matches tasks with exactly this role.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }
    /// Matches tasks with exactly this provider.
    #[must_use]
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }
    /// Matches tasks with exactly this model.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// Matches tasks carrying this tag (and every other tag given).
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Matches tasks whose metadata `key` equals `value` (and every other entry given).
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }
    /// Matches tasks whose title or description contains `text` (case-insensitive).
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
    /// Matches tasks created at or after `t`.
    #[must_use]
    pub fn created_since(mut self, t: Timestamp) -> Self {
        self.created_since = Some(t);
        self
    }
    /// Matches tasks created before `t`.
    #[must_use]
    pub fn created_until(mut self, t: Timestamp) -> Self {
        self.created_until = Some(t);
        self
    }
    /// Matches tasks updated at or after `t`.
    #[must_use]
    pub fn updated_since(mut self, t: Timestamp) -> Self {
        self.updated_since = Some(t);
        self
    }
    /// Matches tasks updated before `t`.
    #[must_use]
    pub fn updated_until(mut self, t: Timestamp) -> Self {
        self.updated_until = Some(t);
        self
    }
}

/// Builders: `Query::new().state(TaskState::Pending).tag("x").limit(10)`. The filter methods
/// are those of [`Filter`]; every setter is `#[must_use]`.
///
/// ```
/// use tasklog::{Query, TaskState};
///
/// let q = Query::new().state(TaskState::Failed).tag("nightly").descending().limit(10);
/// assert_eq!(q.filter.states, [TaskState::Failed]);
/// assert_eq!(q.limit, Some(10));
/// ```
impl Query {
    /// Every task, oldest first, no limit.
    pub fn new() -> Self {
        Query::default()
    }
    /// Replaces the filter.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Sorts by this time (creation by default).
    #[must_use]
    pub fn sort(mut self, key: SortKey) -> Self {
        self.sort = key;
        self
    }
    /// Newest first.
    #[must_use]
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }
    /// At most `n` tasks.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
    /// Skips the first `n` matches.
    #[must_use]
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }
    /// Continues after `cursor` (a previous page's `next_cursor`).
    #[must_use]
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.after = Some(cursor);
        self
    }
}

/// Forwards a filter builder method of [`Filter`] on [`Query`].
macro_rules! forward_filter {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        impl Query {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, $($arg: $ty),*) -> Self {
                    self.filter = self.filter.$name($($arg),*);
                    self
                }
            )*
        }
    };
}

forward_filter! {
    /// See [`Filter::state`].
    state(state: TaskState);
    /// See [`Filter::states`].
    states(states: impl IntoIterator<Item = TaskState>);
    /// See [`Filter::role`].
    role(role: impl Into<String>);
    /// See [`Filter::provider`].
    provider(provider: impl Into<String>);
    /// See [`Filter::model`].
    model(model: impl Into<String>);
    /// See [`Filter::tag`].
    tag(tag: impl Into<String>);
    /// See [`Filter::meta`].
    meta(key: impl Into<String>, value: impl Into<Value>);
    /// See [`Filter::text`].
    text(text: impl Into<String>);
    /// See [`Filter::created_since`].
    created_since(t: Timestamp);
    /// See [`Filter::created_until`].
    created_until(t: Timestamp);
    /// See [`Filter::updated_since`].
    updated_since(t: Timestamp);
    /// See [`Filter::updated_until`].
    updated_until(t: Timestamp);
}

/// All matches of the filter, oldest first: what `Store::list` and `Store::count` take.
impl From<Filter> for Query {
    fn from(filter: Filter) -> Self {
        Query::new().filter(filter)
    }
}

impl From<&Filter> for Query {
    fn from(filter: &Filter) -> Self {
        Query::new().filter(filter.clone())
    }
}

impl From<&Query> for Query {
    fn from(query: &Query) -> Self {
        query.clone()
    }
}

impl Filter {
    /// True when `task` matches.
    pub fn matches(&self, task: &Task) -> bool {
        (self.states.is_empty() || self.states.contains(&task.state))
            && eq_opt(&self.role, &task.role)
            && eq_opt(&self.provider, &task.provider)
            && eq_opt(&self.model, &task.model)
            && any_of(&self.roles, &task.role)
            && any_of(&self.providers, &task.provider)
            && any_of(&self.models, &task.model)
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

fn any_of(want: &[String], have: &Option<String>) -> bool {
    want.is_empty() || have.as_ref().is_some_and(|h| want.contains(h))
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
    match q.sort {
        SortKey::Created => run_by_created(state, q),
        SortKey::Updated => run_scan(state, q),
    }
}

/// A page from the ordered matches after the cursor, of which at most `offset + limit` were
/// collected; `more` says whether `offset + limit` were found.
fn page(hits: Vec<TaskRef<'_>>, q: &Query, more: bool) -> Page {
    let tasks: Vec<Task> = hits
        .into_iter()
        .skip(q.offset)
        .map(TaskRef::into_owned)
        .collect();
    let next_cursor = if more {
        tasks.last().map(|t| Cursor {
            at_ms: sort_time(t, q.sort),
            id: t.id.clone(),
        })
    } else {
        None
    };
    Page { tasks, next_cursor }
}

/// The index whose tasks include every match of a filter, in creation order: the sets of
/// the allowed states, or the one set of the filter's role or provider. `Vec` holds one set or
/// several disjoint ones.
struct Source<'a> {
    sets: Vec<&'a Ordered>,
    /// How many tasks the sets hold.
    len: usize,
}

/// Of the indexes that cover a filter's matches, the one with fewest tasks.
fn source<'a>(state: &'a State, f: &Filter) -> Source<'a> {
    let sets: Vec<&Ordered> = allowed_states(f)
        .into_iter()
        .map(|s| state.by_state(s))
        .collect();
    let len = sets.iter().map(|s| s.len()).sum();
    let mut best = Source { sets, len };
    let named = [
        f.role.as_deref().map(|r| state.by_role(r)),
        f.provider.as_deref().map(|p| state.by_provider(p)),
    ];
    for set in named.into_iter().flatten() {
        // No live task has the name: nothing matches.
        let set = set.unwrap_or(EMPTY);
        if set.len() < best.len {
            best = Source {
                sets: vec![set],
                len: set.len(),
            };
        }
    }
    // Several roles (or providers): the union of their sets, which are disjoint (a task has
    // one role), each name once.
    let lists: [(&[String], NamedIndex<'a>); 2] = [
        (&f.roles, |st, r| st.by_role(r)),
        (&f.providers, |st, p| st.by_provider(p)),
    ];
    for (names, index) in lists {
        if names.is_empty() {
            continue;
        }
        let mut sets: Vec<&Ordered> = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if !names.iter().take(i).any(|n| n == name) {
                sets.extend(index(state, name));
            }
        }
        let len = sets.iter().map(|s| s.len()).sum();
        if len < best.len {
            best = Source { sets, len };
        }
    }
    best
}

static EMPTY: &Ordered = &Ordered::new();

/// The creation-ordered index of the tasks with one role (or provider).
type NamedIndex<'a> = fn(&'a State, &str) -> Option<&'a Ordered>;

/// A listing by creation time: walks the smallest index that covers the filter, in order, and
/// stops once `offset + limit` tasks matched.
fn run_by_created(state: &State, q: &Query) -> Page {
    let wanted = q.limit.map(|l| l.saturating_add(q.offset));
    let mut hits: Vec<TaskRef<'_>> = Vec::with_capacity(wanted.unwrap_or(0).min(1024));
    if wanted != Some(0) {
        for slot in created_walk(state, q) {
            // Every indexed slot holds a live task (`State::check_indexes`).
            let Some(t) = state.task_at(slot) else {
                continue;
            };
            if q.filter.matches(&t) {
                hits.push(t);
                if wanted == Some(hits.len()) {
                    break;
                }
            }
        }
    }
    let more = wanted.is_some_and(|n| n <= hits.len());
    page(hits, q, more)
}

/// The states a filter allows, each once.
fn allowed_states(f: &Filter) -> Vec<TaskState> {
    TaskState::ALL
        .into_iter()
        .filter(|s| f.states.is_empty() || f.states.contains(s))
        .collect()
}

/// The slots of the tasks of the filter's source in the listing's order (creation time,
/// then id; reversed when descending), from just after the cursor and within the creation
/// range.
fn created_walk<'a>(state: &'a State, q: &Query) -> impl Iterator<Item = u32> + 'a {
    let f = &q.filter;
    let cursor = q
        .after
        .as_ref()
        .map(|c| (c.at_ms, IdKey::new(Arc::from(c.id.as_str()))));
    // The smallest key at a time: `(ms, "")` sorts before every id.
    let at = |ms: i64| (ms, IdKey::new(Arc::from("")));
    // Where to start: strictly after the cursor, and at `created_since` (ascending) or before
    // `created_until` (descending); whichever is further along.
    let start = if q.descending {
        let until = f.created_until.map(|u| at(u.0));
        match (cursor, until) {
            (Some(c), Some(u)) => Bound::Excluded(c.min(u)),
            (Some(k), None) | (None, Some(k)) => Bound::Excluded(k),
            (None, None) => Bound::Unbounded,
        }
    } else {
        let since = f.created_since.map(|s| at(s.0));
        match (cursor, since) {
            (Some(c), Some(s)) if s > c => Bound::Included(s),
            (Some(c), _) => Bound::Excluded(c),
            (None, Some(s)) => Bound::Included(s),
            (None, None) => Bound::Unbounded,
        }
    };
    let heads = source(state, f)
        .sets
        .into_iter()
        .map(|set| {
            let walk: Walk<'a> = if q.descending {
                Box::new(set.range((Bound::Unbounded, start.as_ref())).rev())
            } else {
                Box::new(set.range((start.as_ref(), Bound::Unbounded)))
            };
            walk.peekable()
        })
        .collect();
    // Where to stop: at `created_until` (ascending) or before `created_since` (descending).
    let (descending, since, until) = (q.descending, f.created_since, f.created_until);
    Merge { heads, descending }
        .take_while(move |((ms, _), _)| {
            if descending {
                since.is_none_or(|s| *ms >= s.0)
            } else {
                until.is_none_or(|u| *ms < u.0)
            }
        })
        .map(|(_, &slot)| slot)
}

/// One ordered walk of an index.
type Walk<'a> = Box<dyn Iterator<Item = (&'a CreatedKey, &'a u32)> + 'a>;

/// Merges ordered walks of disjoint sets into one ordered walk.
struct Merge<'a> {
    heads: Vec<Peekable<Walk<'a>>>,
    descending: bool,
}

impl<'a> Iterator for Merge<'a> {
    type Item = (&'a CreatedKey, &'a u32);

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, &'a CreatedKey)> = None;
        for (i, head) in self.heads.iter_mut().enumerate() {
            let Some(&(key, _)) = head.peek() else {
                continue;
            };
            let better = best.is_none_or(|(_, b)| if self.descending { key > b } else { key < b });
            if better {
                best = Some((i, key));
            }
        }
        let (i, _) = best?;
        self.heads.get_mut(i)?.next()
    }
}

/// A listing by update time: filters every task, then orders the first `offset + limit`.
fn run_scan(state: &State, q: &Query) -> Page {
    let key = q.sort;
    let cmp = |a: &(i64, &str), b: &(i64, &str)| -> Ordering {
        let o = a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1));
        if q.descending { o.reverse() } else { o }
    };
    let after = q.after.as_ref().map(|c| (c.at_ms, c.id.as_str()));
    // Matches are kept as (time, id, slot), not as tasks: a terminal task is decoded to be
    // filtered and dropped at once, and only the page's tasks are read again at the end (so
    // a scan of many finished tasks holds no more than one decoded at a time).
    let mut hits: Vec<(i64, &str, u32)> = state
        .entries_by_slot()
        .filter_map(|(slot, id, entry)| {
            let t = entry.get()?;
            q.filter.matches(&t).then(|| (sort_time(&t, key), id, slot))
        })
        .filter(|(ms, id, _)| after.is_none_or(|a| cmp(&(*ms, id), &a) == Ordering::Greater))
        .collect();
    let wanted = q.limit.map(|l| l.saturating_add(q.offset));
    let order = |a: &(i64, &str, u32), b: &(i64, &str, u32)| cmp(&(a.0, a.1), &(b.0, b.1));
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
    let tasks = hits
        .into_iter()
        .filter_map(|(_, _, slot)| state.task_at(slot))
        .collect();
    page(tasks, q, more)
}

/// Counts the tasks matching a filter.
pub fn count(state: &State, filter: &Filter) -> usize {
    let source = source(state, filter);
    if constrains_only_states(filter) {
        return source.len;
    }
    if source.len < state.len() / 2 {
        // Walking an index reaches each task through its slot, out of memory order; a scan
        // reads the slots in order: it is cheaper once the index holds most tasks.
        return source
            .sets
            .iter()
            .flat_map(|set| set.values())
            .filter_map(|&slot| state.task_at(slot))
            .filter(|t| filter.matches(t))
            .count();
    }
    state.tasks().filter(|t| filter.matches(t)).count()
}

/// True when the filter sets nothing but (perhaps) states.
/// The creation time and id of every task matching `filter`, in no particular order. A filter
/// on states alone (an export of everything, say) reads them from the indexes, decoding no
/// task; any other walks the smallest fitting index and reads each task.
pub(crate) fn matching_keys(state: &State, filter: &Filter) -> Vec<(i64, String)> {
    let source = source(state, filter);
    let keys = source.sets.iter().flat_map(|set| set.iter());
    if constrains_only_states(filter) {
        return keys.map(|((ms, id), _)| (*ms, id.to_string())).collect();
    }
    keys.filter(|(_, slot)| state.task_at(**slot).is_some_and(|t| filter.matches(&t)))
        .map(|((ms, id), _)| (*ms, id.to_string()))
        .collect()
}

fn constrains_only_states(f: &Filter) -> bool {
    let Filter {
        states: _,
        role,
        provider,
        model,
        roles,
        providers,
        models,
        tags,
        metadata,
        text,
        created_since,
        created_until,
        updated_since,
        updated_until,
    } = f;
    role.is_none()
        && provider.is_none()
        && model.is_none()
        && roles.is_empty()
        && providers.is_empty()
        && models.is_empty()
        && tags.is_empty()
        && metadata.is_empty()
        && text.is_none()
        && created_since.is_none()
        && created_until.is_none()
        && updated_since.is_none()
        && updated_until.is_none()
}
