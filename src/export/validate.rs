//! Validating imported tasks: every field is read with its type and range checked, aliases are
//! resolved, unknown fields go into metadata, and every problem is recorded with its JSON path
//! so that a bad document is rejected as a whole, with all of its problems listed at once.

use std::borrow::Cow;
use std::collections::BTreeMap;

// NOTE: foldhash, as the store: these maps hash every key of every object of a document
// (SipHash was 15 % of a 1,000,000-task import's CPU time); seeded per process.
use foldhash::{HashMap, HashMapExt as _};
use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::parse::Json;
use super::{ImportTask, aliases, rebuild};
use crate::task::{Lease, Progress, Task, TaskState, Timestamp, limits};

/// Most problems listed for one document; the rest are counted.
pub(crate) const PROBLEMS_MAX: usize = 1_000;

/// The problems found in a document, each `path: message`.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<String>,
    more: usize,
}

impl Problems {
    /// Records a problem at a JSON path.
    pub(crate) fn push(&mut self, path: &str, message: impl Display) {
        if self.list.len() < PROBLEMS_MAX {
            let path = if path.is_empty() { "$" } else { path };
            self.list.push(format!("{path}: {message}"));
        } else {
            self.more += 1;
        }
    }
    /// True when nothing is wrong.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// How many problems were found (listed or not).
    pub(crate) fn total(&self) -> usize {
        self.list.len() + self.more
    }
    /// The list, with a last line counting problems left out.
    pub(crate) fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list
                .push(format!("... and {} more problem(s) not listed", self.more));
        }
        self.list
    }
}

/// `prefix["key"]`, with the key quoted as a JSON string (cut to a readable length).
pub(crate) fn key_path(prefix: &str, key: &str) -> String {
    // Almost every key (a task id) is short and needs no escape: one allocation, no JSON
    // encoder (this ran for every task of an import, in both readings).
    let plain = key.len() <= limits::EXCERPT_CHARS_MAX
        && key
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f);
    if plain {
        let mut path = String::with_capacity(prefix.len() + key.len() + 4);
        path.push_str(prefix);
        path.push_str("[\"");
        path.push_str(key);
        path.push_str("\"]");
        return path;
    }
    let key = limits::excerpt(key);
    let quoted = serde_json::to_string(&key).unwrap_or_else(|_| format!("{key:?}"));
    format!("{prefix}[{quoted}]")
}

/// `prefix.name` for a plain name, otherwise `prefix["name"]`.
pub(crate) fn member_path(prefix: &str, name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= limits::EXCERPT_CHARS_MAX;
    if plain && prefix.is_empty() {
        name.to_string()
    } else if plain {
        format!("{prefix}.{name}")
    } else {
        key_path(prefix, name)
    }
}

/// A JSON path rendered only when a problem needs it, so that walking a valid document makes
/// no string per member (building them eagerly was a tenth of an import's CPU time).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path<'a> {
    /// An already rendered path (`""` for the document's top level).
    Text(&'a str),
    /// `parent.name` or `parent["name"]` (see [`member_path`]).
    Member(&'a Path<'a>, &'a str),
    /// `parent[index]`.
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    pub(crate) fn render(&self) -> String {
        match self {
            Path::Text(text) => (*text).to_string(),
            Path::Member(parent, name) => member_path(&parent.render(), name),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// Objects up to this many members look for an earlier equal key by a scan, not a hash map
/// (almost every object of a task is this small).
const SCAN_MEMBERS_MAX: usize = 16;

/// Reports every key given twice in any object inside `node` (serde_json's own maps keep the
/// last one silently; a duplicate must never pass unnoticed, wherever it is). A key given
/// three times is reported twice, at its second and third places.
pub(crate) fn report_duplicates(node: &Json<'_>, path: &Path<'_>, problems: &mut Problems) {
    let nested = |v: &Json<'_>| matches!(v, Json::Array(_) | Json::Object(_));
    match node {
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if nested(item) {
                    report_duplicates(item, &Path::Index(path, i), problems);
                }
            }
        }
        Json::Object(entries) => {
            let mut seen: HashMap<&str, ()> = if entries.len() > SCAN_MEMBERS_MAX {
                HashMap::with_capacity(entries.len())
            } else {
                HashMap::new()
            };
            for (n, (k, v)) in entries.iter().enumerate() {
                let here = Path::Member(path, k);
                let again = if entries.len() > SCAN_MEMBERS_MAX {
                    seen.insert(k, ()).is_some()
                } else {
                    entries.iter().take(n).any(|(earlier, _)| earlier == k)
                };
                if again {
                    problems.push(&here.render(), "duplicate key");
                }
                if nested(v) {
                    report_duplicates(v, &here, problems);
                }
            }
        }
        _ => {}
    }
}

/// Reads an object of tasks keyed by id, reporting duplicate ids.
pub(crate) fn read_task_map(
    entries: &[(Cow<'_, str>, Json<'_>)],
    prefix: &str,
    problems: &mut Problems,
) -> Vec<ImportTask> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
    let mut tasks = Vec::with_capacity(entries.len());
    for (n, (id, value)) in entries.iter().enumerate() {
        let path = key_path(prefix, id);
        if let Some(first) = seen.insert(&**id, n) {
            problems.push(
                &path,
                format!(
                    "duplicate task id (entries {} and {} of the object)",
                    first + 1,
                    n + 1
                ),
            );
            continue;
        }
        match value {
            Json::Object(fields) => {
                if let Some(t) = read_task(path, Some(id), fields, problems) {
                    tasks.push(t);
                }
            }
            other => problems.push(
                &path,
                format!("expected a task object, found {}", other.type_name()),
            ),
        }
    }
    tasks
}

/// Reads an array of task objects (ids from their `id` field, or generated).
pub(crate) fn read_task_array(
    items: &[Json],
    prefix: &str,
    problems: &mut Problems,
) -> Vec<ImportTask> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut tasks = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{prefix}[{i}]");
        let Json::Object(fields) = item else {
            problems.push(
                &path,
                format!("expected a task object, found {}", item.type_name()),
            );
            continue;
        };
        let Some(task) = read_task(path, None, fields, problems) else {
            continue;
        };
        if let Some(first) = seen.insert(task.task.id.clone(), i) {
            problems.push(
                &format!("{}.id", task.path),
                format!(
                    "duplicate task id {:?} (also at {prefix}[{first}])",
                    limits::excerpt(&task.task.id)
                ),
            );
            continue;
        }
        tasks.push(task);
    }
    tasks
}

/// The task fields tasklog knows (after alias resolution).
const KNOWN_FIELDS: [&str; 25] = [
    "id",
    "title",
    "description",
    "role",
    "state",
    "progress",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "provider",
    "model",
    "tags",
    "metadata",
    "result",
    "last_error",
    "error_count",
    "attempt",
    "priority",
    "checkpoint",
    "outputs",
    "lease",
    "version",
    "last_lsn",
    "history",
];

/// A task object's fields by canonical name, each with the name it was given under.
struct Fields<'a> {
    path: &'a str,
    known: Known<'a>,
    problems: &'a mut Problems,
}

/// The known fields of one task object, each at its place in `KNOWN_FIELDS`, with the name it
/// was given under (an alias or the canonical one). An array, not a map: a hash map per task
/// (allocated, grown three times) was a tenth of a large import's CPU.
struct Known<'a>([Option<(&'a str, &'a Json<'a>)>; KNOWN_FIELDS.len()]);

impl<'a> Known<'a> {
    fn place(canonical: &str) -> Option<usize> {
        KNOWN_FIELDS.iter().position(|k| *k == canonical)
    }

    fn get(&self, canonical: &str) -> Option<(&'a str, &'a Json<'a>)> {
        let place = Known::place(canonical);
        debug_assert!(place.is_some(), "{canonical:?} is a known field");
        *self.0.get(place?)?
    }
}

impl<'a> Fields<'a> {
    fn field_path(&self, name: &str) -> String {
        member_path(self.path, name)
    }
    fn problem(&mut self, name: &str, message: impl Display) {
        let p = self.field_path(name);
        self.problems.push(&p, message);
    }
    /// The value of a field, `None` when absent or null.
    fn get(&self, canonical: &str) -> Option<(&'a str, &'a Json<'a>)> {
        self.known
            .get(canonical)
            .filter(|(_, v)| !matches!(v, Json::Null))
    }
    fn string(&mut self, canonical: &str) -> Option<String> {
        let (name, v) = self.get(canonical)?;
        match v {
            Json::String(s) => Some(s.to_string()),
            other => {
                self.problem(
                    name,
                    format!("expected a string, found {}", other.type_name()),
                );
                None
            }
        }
    }
    fn uint(&mut self, canonical: &str, max: u64) -> Option<u64> {
        let (name, v) = self.get(canonical)?;
        match v {
            Json::Number(n) => match n.as_u64() {
                Some(x) if x <= max => Some(x),
                _ => {
                    self.problem(
                        name,
                        format!("expected a whole number from 0 to {max}, found {n}"),
                    );
                    None
                }
            },
            other => {
                self.problem(
                    name,
                    format!("expected a number, found {}", other.type_name()),
                );
                None
            }
        }
    }
    fn time(&mut self, canonical: &str) -> Option<Timestamp> {
        let (name, v) = self.get(canonical)?;
        match read_time(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(name, e);
                None
            }
        }
    }
    fn serde<T: DeserializeOwned>(&mut self, canonical: &str) -> Option<T> {
        let (name, v) = self.get(canonical)?;
        match serde_path_to_error::deserialize::<_, T>(super::json_de::JsonDe::Node(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                // The path inside the field, e.g. `outputs[2].at` rather than `outputs`.
                let inner = e.path().to_string();
                let at = match inner.as_str() {
                    "." | "?" => self.field_path(name),
                    p if p.starts_with('[') => format!("{}{p}", self.field_path(name)),
                    p => format!("{}.{p}", self.field_path(name)),
                };
                self.problems.push(&at, e.into_inner());
                None
            }
        }
    }
}

/// A time: RFC 3339, a date, naive ISO (Python's `isoformat()`, read as UTC), or epoch seconds.
pub(crate) fn read_time(v: &Json) -> Result<Timestamp, String> {
    match v {
        Json::String(s) => Timestamp::parse(s),
        Json::Number(n) => match n.as_f64() {
            Some(secs) => Timestamp::from_epoch_seconds(secs),
            None => Err(format!("{n} is not a time in epoch seconds")),
        },
        other => Err(format!("expected a time, found {}", other.type_name())),
    }
}

/// Checks a task id the way the store does: non-empty, at most 256 bytes, no control characters.
pub(crate) fn id_problem(id: &str) -> Option<String> {
    limits::check_id(id).err()
}

/// A task object's fields split into known ones (by canonical name) and unknown ones, with
/// duplicates reported.
type Indexed<'a> = (Known<'a>, Vec<(&'a str, &'a Json<'a>)>);

fn index_fields<'a>(
    path: &str,
    entries: &'a [(Cow<'a, str>, Json<'a>)],
    problems: &mut Problems,
) -> Indexed<'a> {
    let mut known = Known([None; KNOWN_FIELDS.len()]);
    let mut extras: Vec<(&str, &Json)> = Vec::new();
    for (name, value) in entries {
        let canonical = aliases::field_alias(name).unwrap_or(&**name);
        match Known::place(canonical).and_then(|place| known.0.get_mut(place)) {
            Some(slot) => {
                if let Some((other, _)) = slot.replace((&**name, value)) {
                    let also = if other == name {
                        String::new()
                    } else {
                        format!(" (also given as {other:?})")
                    };
                    problems.push(&member_path(path, name), format!("duplicate field{also}"));
                }
            }
            None if extras.iter().any(|(n, _)| n == name) => {
                problems.push(&member_path(path, name), "duplicate field");
            }
            None => extras.push((&**name, value)),
        }
    }
    (known, extras)
}

fn read_title(f: &mut Fields<'_>) -> Option<String> {
    let title = f.string("title");
    match (&title, f.get("title")) {
        (None, None) => f.problem("title", "missing (a task needs a title)"),
        (Some(t), Some((name, _))) if t.trim().is_empty() => f.problem(name, "is empty"),
        _ => {}
    }
    title
}

/// Reads one task object. Returns `None` when it has problems (all of which are recorded).
/// `path` is the task's JSON path, kept in the result (moved, not copied: one string per task).
pub(crate) fn read_task(
    owned_path: String,
    key_id: Option<&str>,
    entries: &[(Cow<'_, str>, Json<'_>)],
    problems: &mut Problems,
) -> Option<ImportTask> {
    let path = owned_path.as_str();
    let before = problems.list.len() + problems.more;
    let (known, extras) = index_fields(path, entries, problems);
    for (name, value) in entries {
        report_duplicates(value, &Path::Member(&Path::Text(path), name), problems);
    }
    let mut f = Fields {
        path,
        known,
        problems,
    };
    let id = read_id(&mut f, key_id);
    let title = read_title(&mut f);
    let state = read_state(&mut f);
    let progress = read_progress(&mut f);
    let created_at = f.time("created_at");
    let updated_at = f.time("updated_at");
    let metadata = read_metadata(&mut f, &extras);
    let tags: Vec<String> = f.serde("tags").unwrap_or_default();
    let checkpoint = f.serde::<crate::task::Checkpoint>("checkpoint");
    let now = Timestamp::now();
    let created_at = created_at.unwrap_or(now);
    let task = Task {
        id: id.clone().unwrap_or_default(),
        title: title.unwrap_or_default(),
        description: f.string("description").unwrap_or_default(),
        role: f.string("role"),
        state: state.unwrap_or(TaskState::Pending),
        progress,
        created_at,
        updated_at: updated_at.unwrap_or(created_at),
        started_at: f.time("started_at"),
        completed_at: f.time("completed_at"),
        provider: f.string("provider"),
        model: f.string("model"),
        tags,
        metadata,
        result: f.get("result").map(|(_, v)| Box::new(v.to_value())),
        last_error: f.string("last_error"),
        error_count: f.uint("error_count", u32::MAX.into()).unwrap_or(0) as u32,
        attempt: f.uint("attempt", u32::MAX.into()).unwrap_or(1) as u32,
        priority: f.uint("priority", 10).unwrap_or(0) as u8,
        checkpoint: checkpoint.map(Box::new),
        outputs: f.serde("outputs").unwrap_or_default(),
        lease: f.serde::<Lease>("lease").map(Box::new),
        session: 0,
        version: 0,
        last_lsn: 0,
    };
    // `version` and `last_lsn` are assigned by the destination store; only their type is checked.
    f.uint("version", u64::MAX);
    f.uint("last_lsn", u64::MAX);
    // The same limits the store applies to every write (`task::limits`), so that what is
    // imported exports and re-imports to the same state.
    for (field, reason) in limits::task_violations(&task) {
        f.problems.push(&format!("{path}.{field}"), reason);
    }
    let history = f.get("history");
    let Fields { problems, .. } = f;
    let (history, rebuilt) = match (history, id.as_deref()) {
        (Some((name, v)), Some(id)) => {
            rebuild::read_history(&format!("{path}.{name}"), id, v, problems)
        }
        _ => (None, None),
    };
    if problems.list.len() + problems.more > before {
        return None;
    }
    Some(ImportTask {
        task,
        history,
        path: owned_path,
        rebuilt: rebuilt.into(),
    })
}

fn read_id(f: &mut Fields<'_>, key_id: Option<&str>) -> Option<String> {
    let given = match f.get("id") {
        None => None,
        Some((_, Json::String(s))) => Some(s.to_string()),
        Some((_, Json::Number(n))) => Some(n.to_string()),
        Some((name, other)) => {
            f.problem(
                name,
                format!("expected a string, found {}", other.type_name()),
            );
            return None;
        }
    };
    let id = match (key_id, given) {
        (Some(key), Some(given)) if key != given => {
            f.problem(
                "id",
                format!(
                    "{:?} differs from the key {:?} the task is filed under",
                    limits::excerpt(&given),
                    limits::excerpt(key)
                ),
            );
            return None;
        }
        (Some(key), _) => key.to_string(),
        (None, Some(given)) => given,
        (None, None) => uuid::Uuid::now_v7().to_string(),
    };
    if let Some(p) = id_problem(&id) {
        f.problem("id", p);
        return None;
    }
    Some(id)
}

fn read_state(f: &mut Fields<'_>) -> Option<TaskState> {
    let Some((name, v)) = f.get("state") else {
        f.problem("state", "missing (a task needs a state)");
        return None;
    };
    match v {
        Json::String(s) => {
            let state = aliases::state_alias(s);
            if state.is_none() {
                f.problem(name, format!("unknown state {:?}", limits::excerpt(s)));
            }
            state
        }
        other => {
            f.problem(
                name,
                format!("expected a state name, found {}", other.type_name()),
            );
            None
        }
    }
}

fn read_progress(f: &mut Fields<'_>) -> Progress {
    match f.get("progress") {
        None => Progress::default(),
        Some((name, Json::Number(n))) => match n.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Progress {
                percent: p.round() as u8,
                ..Progress::default()
            },
            _ => {
                f.problem(name, format!("{n} is not a percentage from 0 to 100"));
                Progress::default()
            }
        },
        // Its range is checked with the task's other limits.
        Some(_) => f.serde("progress").unwrap_or_default(),
    }
}

fn read_metadata(f: &mut Fields<'_>, extras: &[(&str, &Json)]) -> BTreeMap<String, Value> {
    let mut metadata = match f.get("metadata") {
        None => BTreeMap::new(),
        // Duplicate keys are reported by `report_duplicates`.
        Some((_, Json::Object(entries))) => entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect(),
        Some((name, other)) => {
            f.problem(
                name,
                format!("expected an object, found {}", other.type_name()),
            );
            BTreeMap::new()
        }
    };
    // Unknown fields are kept, as metadata, rather than dropped.
    for (name, value) in extras {
        if metadata.contains_key(*name) {
            f.problem(
                name,
                "an unknown field is kept as metadata, but metadata already has this key",
            );
            continue;
        }
        metadata.insert((*name).to_string(), value.to_value());
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::{Path, Problems, key_path, report_duplicates};
    use crate::export::parse::parse_tree;
    use crate::task::limits;

    /// The short path for plain keys writes what the JSON encoder writes.
    #[test]
    fn a_key_path_quotes_as_json_does() {
        let long = "x".repeat(limits::EXCERPT_CHARS_MAX);
        let longer = "y".repeat(limits::EXCERPT_CHARS_MAX + 1);
        for key in [
            "",
            "t-1",
            "a b",
            "é✓",
            "\u{7f}",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "nl\n",
            &long,
            &longer,
        ] {
            let quoted = serde_json::to_string(&limits::excerpt(key)).expect("a string encodes");
            assert_eq!(
                key_path("tasks", key),
                format!("tasks[{quoted}]"),
                "{key:?}"
            );
        }
    }

    fn duplicates_in(doc: &str) -> Vec<String> {
        let tree = parse_tree(doc.as_bytes()).expect("valid JSON");
        let mut problems = Problems::default();
        report_duplicates(&tree, &Path::Text("tasks.a"), &mut problems);
        problems.into_vec()
    }

    /// Small objects are scanned, large ones hashed: both find every repeat, at its place.
    #[test]
    fn every_repeated_key_is_reported_at_its_path_in_small_and_large_objects() {
        assert!(duplicates_in(r#"{"x": 1, "y": [{"z": 2}]}"#).is_empty());
        assert_eq!(
            duplicates_in(r#"{"x": 1, "y": [0, {"z": 2, "z": 3, "z": 4}], "x": 5}"#),
            [
                "tasks.a.y[1].z: duplicate key",
                "tasks.a.y[1].z: duplicate key",
                "tasks.a.x: duplicate key"
            ]
        );
        let members: Vec<String> = (0..40).map(|i| format!(r#""k{i}": {i}"#)).collect();
        let large = format!(
            r#"{{"m": {{{}, "k7": 0, "odd key": {{"k": 1, "k": 2}}}}}}"#,
            members.join(", ")
        );
        assert_eq!(
            duplicates_in(&large),
            [
                "tasks.a.m.k7: duplicate key",
                r#"tasks.a.m["odd key"].k: duplicate key"#
            ]
        );
    }
}
