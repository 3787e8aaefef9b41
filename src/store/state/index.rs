//! Indexes over the live tasks, kept up as events apply so that statistics, counts and listings
//! by creation time need not scan every task:
//!
//! - per state, per role and per provider, the live tasks ordered by `(created_ms, id)` (the
//!   order of a listing sorted by creation time), each with its slot in the state, so a first
//!   page walks the smallest fitting set for a few entries and stops; the tasks without a role
//!   (or provider) are only counted, since no query lists them by that absence;
//! - the sums of attempts and error counts.
//!
//! Counts by state, role and provider are the sizes of these sets. Each task is in exactly one
//! set of each kind; the sets share one `Arc<str>` id per task, so moving a task between sets
//! copies no string. `State::check_indexes` rebuilds all of this from the tasks and compares.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap;

use crate::task::{Task, TaskState};

/// A position in a creation-ordered index: creation time (ms), then id.
pub type CreatedKey = (i64, IdKey);

/// A task id as the creation-ordered indexes order it: by its bytes, as `str` orders, with
/// its first 8 bytes also held beside it as a big-endian number (zero-padded). Tasks a batch
/// creates share their creation time, so a tree's descent compares ids at nearly every node;
/// the number settles most of those comparisons in a register, where comparing the strings
/// meant a call and two pointers followed into memory that is rarely in cache.
///
/// Consistent with `str`'s order: where the numbers differ, the first byte that differs is one
/// of the first 8, and the smaller number has the smaller byte there or has ended (padding
/// is zero), so its id sorts first. Equal numbers fall back to comparing the ids whole (ids
/// that share 8 bytes, or that differ only by trailing zero bytes).
#[derive(Clone)]
pub struct IdKey {
    prefix: u64,
    id: Arc<str>,
}

impl IdKey {
    /// The key of `id`.
    pub fn new(id: Arc<str>) -> IdKey {
        IdKey {
            prefix: prefix_of(&id),
            id,
        }
    }
}

/// The first 8 bytes of `id` as a big-endian number, zero-padded (see [`IdKey`]).
// NOTE: big-endian on purpose: only then do the numbers order as the bytes do. Nothing here
// is written to disk (the house rule the lint enforces is for formats).
#[allow(clippy::big_endian_bytes)]
fn prefix_of(id: &str) -> u64 {
    let mut first = [0u8; 8];
    let bytes = id.as_bytes();
    let n = bytes.len().min(8);
    if let (Some(to), Some(from)) = (first.get_mut(..n), bytes.get(..n)) {
        to.copy_from_slice(from);
    }
    u64::from_be_bytes(first)
}

/// Shown as its id alone (an index check names the id: `State::check`).
impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.id, f)
    }
}

impl std::ops::Deref for IdKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.id
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &IdKey) -> bool {
        self.prefix == other.prefix && self.id == other.id
    }
}

impl Eq for IdKey {}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &IdKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &IdKey) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// Live tasks ordered by creation time, then id, each with its slot in the state.
pub type Ordered = BTreeMap<CreatedKey, u32>;

/// Number of task states.
pub const STATES: usize = TaskState::ALL.len();

/// The position of `s` in `TaskState::ALL`.
pub fn state_index(s: TaskState) -> usize {
    TaskState::ALL
        .iter()
        .position(|&x| x == s)
        .expect("TaskState::ALL lists every state")
}

/// Live tasks by an optional name (role, provider), each name's in creation order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ByName {
    /// How many live tasks have no name. Counted, not indexed: no query lists the tasks
    /// without a role or provider (a filter names one), and most tasks have neither, so their
    /// set repeated `by_state` whole: a tree entry per task in each of two trees (about 16 MB
    /// of 200,000 tasks), two tree inserts per submit and a third of the index build at open
    /// (docs/benchmarks.md, "Tasks without a role are counted, not indexed").
    none: usize,
    /// Name -> tasks with it; a name is forgotten when its last task goes.
    named: HashMap<Box<str>, Ordered>,
}

impl ByName {
    /// The tasks named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Ordered> {
        self.named.get(name)
    }

    /// Each name with its tasks.
    pub fn sets(&self) -> impl Iterator<Item = (&str, &Ordered)> {
        self.named.iter().map(|(k, set)| (&**k, set))
    }

    /// Each name with its number of tasks (`None`: without a name; only when there are some).
    pub fn counts(&self) -> impl Iterator<Item = (Option<&str>, usize)> {
        let none = (self.none > 0).then_some((None, self.none));
        none.into_iter()
            .chain(self.sets().map(|(name, set)| (Some(name), set.len())))
    }

    fn insert(&mut self, name: Option<&str>, key: &CreatedKey, slot: u32) {
        let Some(n) = name else {
            self.none += 1;
            return;
        };
        let set = match self.named.get_mut(n) {
            Some(set) => set,
            None => self.named.entry(n.into()).or_default(),
        };
        let previous = set.insert(key.clone(), slot);
        debug_assert!(previous.is_none(), "a live task is indexed once");
    }

    fn remove(&mut self, name: Option<&str>, key: &CreatedKey) {
        let found = match name {
            None => {
                debug_assert!(self.none > 0, "a live task is counted");
                self.none -= 1;
                Some(0)
            }
            Some(n) => {
                let set = self
                    .named
                    .get_mut(n)
                    .expect("should index every live task's name");
                let found = set.remove(key);
                if set.is_empty() {
                    self.named.remove(n);
                }
                found
            }
        };
        debug_assert!(found.is_some(), "a live task is indexed");
    }
}

/// What the indexes key a live task by: from a `Task`, or from the front of a terminal task's
/// record without decoding the rest (`Held::keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    /// Its state.
    pub state: TaskState,
    /// When it was created (ms).
    pub created_ms: i64,
    /// Its role, if any.
    pub role: Option<&'a str>,
    /// Its provider, if any.
    pub provider: Option<&'a str>,
    /// Its attempt number.
    pub attempt: u32,
    /// Its error count.
    pub error_count: u32,
}

impl<'a> Keys<'a> {
    /// The keys of `t`.
    pub fn of(t: &'a Task) -> Keys<'a> {
        Keys {
            state: t.state,
            created_ms: t.created_at.0,
            role: t.role.as_deref(),
            provider: t.provider.as_deref(),
            attempt: t.attempt,
            error_count: t.error_count,
        }
    }
}

/// The indexed facts of a task that an event applied in place can change (role and provider
/// change only by an update, which is re-indexed whole: see `State`'s `apply_in_place_at`).
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    state: TaskState,
    created_ms: i64,
    attempt: u32,
    error_count: u32,
}

impl Facts {
    /// The facts of `t`.
    pub fn of(t: &Task) -> Facts {
        Facts {
            state: t.state,
            created_ms: t.created_at.0,
            attempt: t.attempt,
            error_count: t.error_count,
        }
    }

    /// The task's state.
    pub fn state(self) -> TaskState {
        self.state
    }
}

/// Every index over the live tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Indexes {
    /// Per state (indexed by `state_index`), the live tasks in creation order.
    pub by_state: [Ordered; STATES],
    /// Live tasks by role, in creation order.
    pub by_role: ByName,
    /// Live tasks by provider, in creation order.
    pub by_provider: ByName,
    /// Sum of the live tasks' attempt numbers.
    pub attempts: u64,
    /// Sum of the live tasks' error counts.
    pub failures: u64,
    /// While set, changes are not indexed (replay at open: the indexes are built once at
    /// the end, which costs far less than keeping them up through every replayed event).
    pub suspended: bool,
}

impl Indexes {
    /// Indexes a task that became live in `slot` under `id` (the entry's shared id).
    pub fn insert(&mut self, slot: u32, id: &Arc<str>, t: Keys<'_>) {
        if self.suspended {
            return;
        }
        let key = (t.created_ms, IdKey::new(id.clone()));
        self.by_role.insert(t.role, &key, slot);
        self.by_provider.insert(t.provider, &key, slot);
        let previous = self.by_state_mut(t.state).insert(key, slot);
        debug_assert!(previous.is_none(), "a live task is indexed once");
        self.attempts += u64::from(t.attempt);
        self.failures += u64::from(t.error_count);
    }

    /// Forgets a task that stops being live (removed, replaced or renamed).
    pub fn remove(&mut self, id: &Arc<str>, t: Keys<'_>) {
        if self.suspended {
            return;
        }
        let key = (t.created_ms, IdKey::new(id.clone()));
        let found = self.by_state_mut(t.state).remove(&key);
        debug_assert!(found.is_some(), "a live task is indexed");
        self.by_role.remove(t.role, &key);
        self.by_provider.remove(t.provider, &key);
        self.attempts -= u64::from(t.attempt);
        self.failures -= u64::from(t.error_count);
    }

    /// The task in `slot` (id `id`) changed in place from `before` to `after`, keeping its
    /// role, provider and creation time (only an import changes that, and an import replaces
    /// the task: see `State::install`).
    pub fn changed(&mut self, slot: u32, id: &Arc<str>, before: Facts, after: &Task) {
        if self.suspended {
            return;
        }
        let now = Facts::of(after);
        debug_assert_eq!(before.created_ms, now.created_ms, "created in place");
        if before.state != now.state {
            let key = (before.created_ms, IdKey::new(id.clone()));
            let found = self.by_state_mut(before.state).remove(&key);
            debug_assert!(found.is_some(), "a live task is indexed");
            self.by_state_mut(now.state).insert(key, slot);
        }
        self.attempts = self.attempts - u64::from(before.attempt) + u64::from(now.attempt);
        self.failures = self.failures - u64::from(before.error_count) + u64::from(now.error_count);
    }

    /// The live tasks in `state`, in creation order.
    pub fn by_state(&self, state: TaskState) -> &Ordered {
        let set = self.by_state.get(state_index(state));
        set.expect("by_state has a set for every state")
    }

    fn by_state_mut(&mut self, state: TaskState) -> &mut Ordered {
        let set = self.by_state.get_mut(state_index(state));
        set.expect("by_state has a set for every state")
    }

    /// Every live task.
    pub fn len(&self) -> usize {
        self.by_state.iter().map(BTreeMap::len).sum()
    }
}

/// The number of a task without a name in `Builder`.
const NO_NAME: u32 = u32::MAX;

/// In what order a [`Builder`] was given its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Given {
    /// In ascending slot order, and slots ascend with ids (a snapshot's records, loaded into
    /// an empty state in id order): ties of creation time are then already in id order.
    SlotAndIdOrder,
    /// In any order (a replay's slots follow first appearance, not ids).
    AnyOrder,
}

/// Builds every index at once from the live tasks: each set's entries are gathered in a
/// vector and the tree is built from them sorted (`BTreeMap::from_iter` fills nodes left to
/// right from sorted input): far cheaper than one insert per task, each a descent from the
/// root and many a node split. Used after a replay and after loading a snapshot, whose tasks
/// come in slot or id order, not in creation order.
///
/// The tasks are sorted once, in creation order, then dealt out to the sets in that order:
/// each tree's `from_iter` then finds its input already sorted (one pass) instead of sorting
/// every set again. Names are numbered so that an entry is small (32 bytes), and the sets are
/// built one kind at a time, so the transient memory is about 32 bytes per task plus one
/// kind's vectors of keys (40 bytes an entry), not the vectors of all three kinds at once.
#[derive(Default)]
pub struct Builder {
    /// Each role or provider name seen, with its number (owned: a snapshot open reads its
    /// records a chunk at a time, so the names it is given do not outlive the call).
    names: HashMap<Box<str>, u32>,
    /// The names by number.
    named: Vec<Box<str>>,
    all: Vec<Entry>,
    attempts: u64,
    failures: u64,
}

impl Builder {
    /// A builder with room for `tasks` live tasks.
    pub fn with_capacity(tasks: usize) -> Builder {
        Builder {
            all: Vec::with_capacity(tasks),
            ..Builder::default()
        }
    }

    /// Adds the live task in `slot`, keyed `t`.
    pub fn push(&mut self, slot: u32, t: Keys<'_>) {
        self.attempts += u64::from(t.attempt);
        self.failures += u64::from(t.error_count);
        let entry = Entry {
            created_ms: t.created_ms,
            id_prefix: 0,
            slot,
            role: self.number(t.role),
            provider: self.number(t.provider),
            state: state_index(t.state) as u8,
        };
        self.all.push(entry);
    }

    fn number(&mut self, name: Option<&str>) -> u32 {
        let Some(n) = name else { return NO_NAME };
        if let Some(&number) = self.names.get(n) {
            return number;
        }
        let number = self.named.len() as u32;
        self.named.push(n.into());
        self.names.insert(n.into(), number);
        number
    }

    /// The indexes of every task pushed, given in order `given`; `id_of` names a slot's
    /// shared id.
    pub fn finish<'i>(mut self, given: Given, id_of: impl Fn(u32) -> &'i Arc<str>) -> Indexes {
        match given {
            // A stable sort on the creation time alone keeps ties in slot order, which is id
            // order here: no string is compared (a batch's tasks share their creation time,
            // so ties are the rule, not the exception).
            Given::SlotAndIdOrder => {
                debug_assert!(
                    self.all.is_sorted_by(|a, b| a.slot < b.slot),
                    "given in slot order"
                );
                self.all.sort_by_key(|e| e.created_ms);
            }
            // Ties of creation time are ordered by id as `IdKey` orders them: by the ids'
            // first 8 bytes, read once here, then by the whole ids only where those tie.
            Given::AnyOrder => {
                for e in &mut self.all {
                    e.id_prefix = prefix_of(id_of(e.slot));
                }
                self.all.sort_unstable_by(|a, b| {
                    (a.created_ms, a.id_prefix)
                        .cmp(&(b.created_ms, b.id_prefix))
                        .then_with(|| id_of(a.slot).cmp(id_of(b.slot)))
                });
            }
        }
        let all = &self.all;
        let by_state: [Ordered; STATES] = deal(all, STATES, |e| usize::from(e.state), &id_of)
            .try_into()
            .expect("`deal` makes one set per state");
        let by_name = |name_of: fn(&Entry) -> u32| {
            // A task without a name (`NO_NAME`, past the last set) is dealt to no set: counted.
            let sets = deal(all, self.named.len(), |e| name_of(e) as usize, &id_of);
            let mut by = ByName {
                none: all.iter().filter(|e| name_of(e) == NO_NAME).count(),
                named: HashMap::default(),
            };
            for (name, set) in self.named.iter().zip(sets) {
                if !set.is_empty() {
                    by.named.insert(name.clone(), set);
                }
            }
            by
        };
        let by_role = by_name(|e| e.role);
        let by_provider = by_name(|e| e.provider);
        Indexes {
            by_state,
            by_role,
            by_provider,
            attempts: self.attempts,
            failures: self.failures,
            suspended: false,
        }
    }
}

/// A live task as `Builder` sorts it: names and state by number, the id by slot.
struct Entry {
    created_ms: i64,
    /// The id's first 8 bytes as `IdKey` holds them; filled only to sort in `Given::AnyOrder`.
    id_prefix: u64,
    slot: u32,
    role: u32,
    provider: u32,
    state: u8,
}

/// Deals `all` (in creation order) out to `sets` trees by `set_of`, one tree each, built from
/// entries already in order; an entry whose set is `sets` or past it goes to none.
fn deal<'i>(
    all: &[Entry],
    sets: usize,
    set_of: impl Fn(&Entry) -> usize,
    id_of: &impl Fn(u32) -> &'i Arc<str>,
) -> Vec<Ordered> {
    let mut gathered: Vec<Vec<(CreatedKey, u32)>> = (0..sets).map(|_| Vec::new()).collect();
    for e in all {
        if let Some(set) = gathered.get_mut(set_of(e)) {
            set.push(((e.created_ms, IdKey::new(id_of(e.slot).clone())), e.slot));
        }
    }
    gathered
        .into_iter()
        .map(|set| {
            debug_assert!(
                set.is_sorted_by(|a, b| a.0 < b.0),
                "dealt out in creation order"
            );
            set.into_iter().collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::IdKey;

    fn key(id: &str) -> IdKey {
        IdKey::new(Arc::from(id))
    }

    /// Ids built to meet at the edges of the 8-byte number: shorter and longer than 8 bytes,
    /// sharing 8 bytes, differing only past them, and ending in zero bytes (which the number's
    /// padding cannot tell from an end).
    fn edge_ids() -> Vec<String> {
        let mut ids = vec![String::new()];
        for base in [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "9",
            "10",
            "123456789",
        ] {
            for tail in ["", "\0", "\0\0", "\u{1}", "a", "\u{7f}", "é", "\0a"] {
                ids.push(format!("{base}{tail}"));
            }
        }
        ids
    }

    /// The key orders ids exactly as `str` does, at the edges of its 8-byte number.
    #[test]
    fn id_keys_order_edge_ids_as_strings_do() {
        let ids = edge_ids();
        for a in &ids {
            for b in &ids {
                assert_eq!(
                    key(a).cmp(&key(b)),
                    a.as_str().cmp(b),
                    "{a:?} against {b:?}"
                );
                assert_eq!(key(a) == key(b), a == b, "{a:?} against {b:?}");
            }
        }
    }

    proptest! {
        /// And for any ids, short ones over a few bytes (so that ties of the first 8 bytes,
        /// zero bytes and prefixes come up often).
        #[test]
        fn id_keys_order_any_ids_as_strings_do(
            a in "[\\x00ab\u{e9}]{0,12}",
            b in "[\\x00ab\u{e9}]{0,12}",
        ) {
            let expected: Ordering = a.cmp(&b);
            prop_assert_eq!(key(&a).cmp(&key(&b)), expected);
            prop_assert_eq!(key(&a) == key(&b), a == b);
            prop_assert_eq!(format!("{:?}", key(&a)), format!("{a:?}"));
        }
    }
}
