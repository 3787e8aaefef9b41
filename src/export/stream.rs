//! Reading an import document as a stream: the top level is walked by a serde visitor, and the
//! members of `tasks` (or the items of a top-level array) are parsed one task at a time, each
//! into a small [`Json`] tree that is validated and handed to a sink before the next is read.
//! Neither the document nor a tree of it is ever held, so what a reader keeps is what its sink
//! keeps, plus the set of ids seen (for duplicate ids).
//!
//! The layout is decided as in [`super::parse`], with one difference forced by reading once:
//! `tasks` is streamed when it is the first member or follows a scalar member (`format`,
//! `version`, ...), as in every tasklog export and every wrapper. A plain map of tasks (every
//! member an object) is held whole, as before; a plain map whose first task is named `tasks`
//! and that has no scalar member is refused as ambiguous (it would otherwise be read twice).

use std::borrow::Cow;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt as _};
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::parse::{Json, Key, check_header, layout_of, syntax_message};
use super::validate::{self, Problems};
use super::{ImportTask, SourceFormat};
use crate::task::limits;

/// What a streamed document held besides its tasks.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// The layout it was read as.
    pub(crate) format: SourceFormat,
    /// Top-level members other than `tasks` (only for a wrapper or a tasklog export).
    pub(crate) metadata: BTreeMap<String, serde_json::Value>,
}

/// Where the tasks of a document go, one at a time, in document order.
pub(crate) type Sink<'s> = dyn FnMut(ImportTask) + 's;

/// Told, after each task, where in the input a string of that task starts (a key borrowed from
/// an in-memory input), so that the input's pages before it can be released; a pointer outside
/// the input (a string that had to be copied) is ignored.
pub(crate) type Behind<'s> = dyn Fn(*const u8) + 's;

/// Reads a document from a serde_json deserializer (a slice or a reader), validating every task
/// and passing each valid one to `sink`. Every problem is recorded in `problems`; the sink's
/// tasks only count when `problems` stays empty. A syntax error is returned as its message.
pub(crate) fn read_stream<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    head: &[u8],
    problems: &mut Problems,
    sink: &mut Sink<'_>,
    behind: Option<&Behind<'_>>,
) -> Result<Option<Streamed>, String> {
    let mut state = State {
        problems,
        sink,
        behind,
        seen: HashMap::new(),
        count: 0,
    };
    let top = de::Deserializer::deserialize_any(&mut *de, Top { state: &mut state })
        .and_then(|t| de.end().map(|()| t));
    let top = top.map_err(|e| syntax_message(&e, head))?;
    Ok(finish(top, state))
}

/// Per-document reading state.
struct State<'p, 's> {
    problems: &'p mut Problems,
    sink: &'p mut Sink<'s>,
    behind: Option<&'p Behind<'s>>,
    /// Ids seen so far and the entry (1-based for maps, index for arrays) that had them.
    seen: HashMap<String, usize>,
    /// Entries of the streamed container (tasks or not).
    count: usize,
}

/// The document's top level as read.
enum TopLevel<'de> {
    /// A top-level array (already streamed).
    Array,
    /// A top-level object: its members, with the streamed `tasks` standing as an empty
    /// container of the same kind; `streamed` tells whether it was streamed.
    Object {
        entries: Vec<(Cow<'de, str>, Json<'de>)>,
        streamed: bool,
        tasks_twice: bool,
    },
    /// Anything else (refused).
    Other(Json<'de>),
}

struct Top<'a, 'p, 's> {
    state: &'a mut State<'p, 's>,
}

impl<'de> Visitor<'de> for Top<'_, '_, '_> {
    type Value = TopLevel<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or an array of tasks")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TopLevel<'de>, A::Error> {
        stream_array(self.state, "", seq)?;
        Ok(TopLevel::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        let mut streamed = false;
        let mut tasks_twice = false;
        let mut scalar_seen = false;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "tasks" && streamed {
                // Reported by `finish`; the second container is not read into memory.
                tasks_twice = true;
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if key == "tasks" && (entries.is_empty() || scalar_seen) {
                let placeholder = map.next_value_seed(Tasks {
                    state: &mut *self.state,
                })?;
                streamed = matches!(placeholder, Json::Object(_) | Json::Array(_));
                scalar_seen |= !matches!(placeholder, Json::Object(_));
                entries.push((key, placeholder));
                continue;
            }
            let value = map.next_value::<Json<'de>>()?;
            scalar_seen |= !matches!(value, Json::Object(_)) || key == "version";
            entries.push((key, value));
        }
        Ok(TopLevel::Object {
            entries,
            streamed,
            tasks_twice,
        })
    }
    fn visit_unit<E>(self) -> Result<TopLevel<'de>, E> {
        Ok(TopLevel::Other(Json::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<TopLevel<'de>, E> {
        Ok(TopLevel::Other(Json::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<TopLevel<'de>, E> {
        Ok(TopLevel::Other(Json::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<TopLevel<'de>, E> {
        Ok(TopLevel::Other(Json::Number(v.into())))
    }
    fn visit_f64<E>(self, _: f64) -> Result<TopLevel<'de>, E> {
        Ok(TopLevel::Other(Json::Number(0.into())))
    }
    fn visit_str<E>(self, _: &str) -> Result<TopLevel<'de>, E> {
        Ok(TopLevel::Other(Json::String(Cow::Borrowed(""))))
    }
}

/// The value of `tasks`: a container is streamed (and stands as an empty one afterwards),
/// anything else is returned as it is.
struct Tasks<'a, 'p, 's> {
    state: &'a mut State<'p, 's>,
}

impl<'de> DeserializeSeed<'de> for Tasks<'_, '_, '_> {
    type Value = Json<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tasks<'_, '_, '_> {
    type Value = Json<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of tasks")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let state = self.state;
        while let Some(Key(id)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<Json<'de>>()?;
            state.count += 1;
            if let Some(behind) = state.behind {
                behind(id.as_ptr());
            }
            let n = state.count;
            let path = validate::key_path("tasks", &id);
            if let Some(first) = state.seen.get(&*id) {
                state.problems.push(
                    &path,
                    format!("duplicate task id (entries {first} and {n} of the object)"),
                );
                continue;
            }
            state.seen.insert(id.to_string(), n);
            match value {
                Json::Object(fields) => {
                    if let Some(t) = validate::read_task(path, Some(&id), &fields, state.problems) {
                        (state.sink)(t);
                    }
                }
                other => state.problems.push(
                    &path,
                    format!("expected a task object, found {}", other.type_name()),
                ),
            }
        }
        Ok(Json::Object(Vec::new()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Json<'de>, A::Error> {
        stream_array(self.state, "tasks", seq)?;
        Ok(Json::Array(Vec::new()))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Json<'de>, E> {
        // Only its type is reported ("expected an object of tasks, found a string").
        Ok(Json::String(Cow::Borrowed("")))
    }
}

/// Streams an array of task objects (ids from their `id` field, or generated).
fn stream_array<'de, A: SeqAccess<'de>>(
    state: &mut State<'_, '_>,
    prefix: &str,
    mut seq: A,
) -> Result<(), A::Error> {
    let mut i = 0usize;
    while let Some(item) = seq.next_element::<Json<'de>>()? {
        let path = format!("{prefix}[{i}]");
        let here = i;
        i += 1;
        state.count += 1;
        if let (Some(behind), Json::Object(fields)) = (state.behind, &item)
            && let Some((key, _)) = fields.first()
        {
            behind(key.as_ptr());
        }
        let Json::Object(fields) = item else {
            state.problems.push(
                &path,
                format!("expected a task object, found {}", item.type_name()),
            );
            continue;
        };
        let Some(task) = validate::read_task(path, None, &fields, state.problems) else {
            continue;
        };
        if let Some(first) = state.seen.get(&task.task.id) {
            state.problems.push(
                &format!("{}.id", task.path),
                format!(
                    "duplicate task id {:?} (also at {prefix}[{first}])",
                    limits::excerpt(&task.task.id)
                ),
            );
            continue;
        }
        state.seen.insert(task.task.id.clone(), here);
        (state.sink)(task);
    }
    Ok(())
}

/// Decides the layout of what was read and checks the top level.
fn finish(top: TopLevel<'_>, state: State<'_, '_>) -> Option<Streamed> {
    let State {
        problems,
        sink,
        count,
        ..
    } = state;
    let (entries, streamed, tasks_twice) = match top {
        TopLevel::Array => {
            return Some(Streamed {
                format: SourceFormat::Array,
                metadata: BTreeMap::new(),
            });
        }
        TopLevel::Other(other) => {
            problems.push(
                "$",
                format!(
                    "expected an object or an array of tasks, found {}",
                    other.type_name()
                ),
            );
            return None;
        }
        TopLevel::Object {
            entries,
            streamed,
            tasks_twice,
        } => (entries, streamed, tasks_twice),
    };
    let format = layout_of(&entries);
    if format == SourceFormat::Map {
        if streamed {
            problems.push(
                "tasks",
                "ambiguous: the document reads as a plain map of tasks, one of them named \"tasks\", \
                 but \"tasks\" comes first; give the document a \"version\" member first, or rename the task",
            );
            return None;
        }
        for t in validate::read_task_map(&entries, "", problems) {
            sink(t);
        }
        return Some(Streamed {
            format,
            metadata: BTreeMap::new(),
        });
    }
    let mut metadata = BTreeMap::new();
    let mut seen_tasks = false;
    let mut found = count;
    for (key, value) in &entries {
        if key != "tasks" {
            let top = validate::Path::Text("");
            validate::report_duplicates(value, &validate::Path::Member(&top, key), problems);
            if metadata.insert(key.to_string(), value.to_value()).is_some() {
                problems.push(&validate::member_path("", key), "duplicate top-level key");
            }
            continue;
        }
        if std::mem::replace(&mut seen_tasks, true) {
            problems.push("tasks", "duplicate top-level key");
            continue;
        }
        if streamed {
            continue;
        }
        // `tasks` held whole (it came after object members only).
        found = match value {
            Json::Object(map) => map.len(),
            Json::Array(items) => items.len(),
            _ => 0,
        };
        let tasks = match value {
            Json::Object(map) => validate::read_task_map(map, "tasks", problems),
            Json::Array(items) => validate::read_task_array(items, "tasks", problems),
            other => {
                problems.push(
                    "tasks",
                    format!("expected an object of tasks, found {}", other.type_name()),
                );
                Vec::new()
            }
        };
        for t in tasks {
            sink(t);
        }
    }
    if tasks_twice {
        problems.push("tasks", "duplicate top-level key");
    }
    if format == SourceFormat::Tasklog {
        // NOTE: a tasklog export always has `tasks`; without it the document would import as
        // empty, and with `--mode replace` remove every task.
        if !seen_tasks {
            problems.push("tasks", "missing (a tasklog export always has its tasks)");
        }
        check_header(&metadata, found, problems);
    }
    Some(Streamed { format, metadata })
}
