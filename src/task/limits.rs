//! One set of limits on what a task may hold, enforced at every entry: the store's mutation
//! validation (so the library, the CLI and the HTTP API all refuse the same values), and
//! import validation (so a document is refused with its JSON path before anything is written).
//!
//! The rule they serve: whatever is accepted is exported in a form that import accepts again,
//! and re-imports to the same state. Each limit exists because the export could not write a
//! larger value back:
//! - times: RFC 3339 has four-digit years, so 0000-01-01 to 9999-12-31 (in milliseconds);
//! - nesting: serde_json refuses documents nested deeper than 128; a free-form value sits at
//!   most 8 levels down in an export (`tasks` → task → `history` → event → `details` → `task` →
//!   `checkpoint` → `data`), so free-form values may nest [`JSON_DEPTH_MAX`] = 64 levels;
//! - strings (and object keys) at most [`TEXT_BYTES_MAX`], the import's per-string limit;
//! - percentages at most 100, priorities at most 10, task ids at most 256 bytes.

use serde_json::Value;

use super::{Checkpoint, EventKind, Lease, Output, Task, TaskUpdate, Timestamp};

/// Earliest time: 0000-01-01T00:00:00.000Z, in milliseconds since the Unix epoch.
pub const TIME_MS_MIN: i64 = -62_167_219_200_000;
/// Latest time: 9999-12-31T23:59:59.999Z, in milliseconds since the Unix epoch.
pub const TIME_MS_MAX: i64 = 253_402_300_799_999;
/// Deepest nesting of a free-form JSON value (metadata values, results, checkpoint data): an
/// object or array counts one level, so `{"a": [1]}` is 2 deep.
pub const JSON_DEPTH_MAX: usize = 64;
/// Longest string, or object key, anywhere in a task: 16 MiB.
pub const TEXT_BYTES_MAX: usize = 16 << 20;
/// Longest task id.
pub const TASK_ID_BYTES_MAX: usize = 256;
/// Highest percentage (progress, checkpoint progress).
pub const PERCENT_MAX: u8 = 100;
/// Highest priority.
pub const PRIORITY_MAX: u8 = 10;
/// Longest excerpt of a value quoted in a message, in characters.
pub const EXCERPT_CHARS_MAX: usize = 64;

/// A value over a limit: the field (a dotted path inside the task or event) and what is wrong.
pub type Violation = (String, String);

/// Checks a time against [`TIME_MS_MIN`]..=[`TIME_MS_MAX`].
pub fn check_time(t: Timestamp) -> Result<(), String> {
    if (TIME_MS_MIN..=TIME_MS_MAX).contains(&t.0) {
        Ok(())
    } else {
        Err(format!(
            "the time {} ms since the epoch is outside the years 0000 to 9999",
            t.0
        ))
    }
}

/// Checks a string's length against [`TEXT_BYTES_MAX`].
pub fn check_text(s: &str) -> Result<(), String> {
    if s.len() > TEXT_BYTES_MAX {
        Err(format!(
            "a string of {} bytes is over the limit of {TEXT_BYTES_MAX} bytes",
            s.len()
        ))
    } else {
        Ok(())
    }
}

/// Checks a task id: non-empty, at most [`TASK_ID_BYTES_MAX`] bytes, no control characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        Err("the task id is empty".into())
    } else if id.len() > TASK_ID_BYTES_MAX {
        Err(format!(
            "the task id of {} bytes is longer than {TASK_ID_BYTES_MAX} bytes",
            id.len()
        ))
    } else if id.chars().any(char::is_control) {
        Err("the task id contains control characters".into())
    } else {
        Ok(())
    }
}

/// Checks a free-form JSON value: nested at most [`JSON_DEPTH_MAX`] deep, every string and key
/// at most [`TEXT_BYTES_MAX`]. Iterative, so that a value built in memory (not parsed) and
/// nested far deeper cannot overflow the stack here.
pub fn check_json(v: &Value) -> Result<(), String> {
    check_json_below(v, 0)
}

/// [`check_json`] for a value that sits `levels` deep inside a free-form value (a metadata
/// entry sits one level down: the metadata object counts as one).
fn check_json_below(v: &Value, levels: usize) -> Result<(), String> {
    let mut stack: Vec<(&Value, usize)> = vec![(v, levels)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(_) | Value::Object(_) if depth + 1 > JSON_DEPTH_MAX => {
                return Err(format!(
                    "nested deeper than {JSON_DEPTH_MAX} levels of objects and arrays"
                ));
            }
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => {
                for (k, item) in map {
                    check_text(k).map_err(|e| format!("an object key: {e}"))?;
                    stack.push((item, depth + 1));
                }
            }
            Value::String(s) => check_text(s)?,
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Ok(())
}

/// Collects violations with their field names.
#[derive(Default)]
struct Check {
    found: Vec<Violation>,
}

impl Check {
    fn at(&mut self, field: &str, r: Result<(), String>) {
        if let Err(e) = r {
            self.found.push((field.to_string(), e));
        }
    }
    fn text(&mut self, field: &str, s: &str) {
        self.at(field, check_text(s));
    }
    fn opt_text(&mut self, field: &str, s: Option<&String>) {
        if let Some(s) = s {
            self.text(field, s);
        }
    }
    fn texts(&mut self, field: &str, list: &[String]) {
        for (i, s) in list.iter().enumerate() {
            self.text(&format!("{field}[{i}]"), s);
        }
    }
    fn time(&mut self, field: &str, t: Timestamp) {
        self.at(field, check_time(t));
    }
    fn json(&mut self, field: &str, v: &Value) {
        self.at(field, check_json(v));
    }
    fn map(&mut self, field: &str, m: &std::collections::BTreeMap<String, Value>) {
        for (k, v) in m {
            self.at(field, check_text(k).map_err(|e| format!("a key: {e}")));
            // The map is one level itself, so its values may nest one level less.
            self.at(&format!("{field}.{}", excerpt(k)), check_json_below(v, 1));
        }
    }
    fn percent(&mut self, field: &str, p: u8) {
        if p > PERCENT_MAX {
            self.found
                .push((field.into(), format!("{p} is above {PERCENT_MAX}")));
        }
    }
    fn priority(&mut self, field: &str, p: u8) {
        if p > PRIORITY_MAX {
            self.found
                .push((field.into(), format!("{p} is above {PRIORITY_MAX}")));
        }
    }
    fn checkpoint(&mut self, field: &str, c: &Checkpoint) {
        self.text(&format!("{field}.name"), &c.name);
        self.percent(&format!("{field}.progress"), c.progress);
        self.json(&format!("{field}.data"), &c.data);
        self.time(&format!("{field}.at"), c.at);
    }
    fn output(&mut self, field: &str, o: &Output) {
        self.text(&format!("{field}.content"), &o.content);
        self.opt_text(&format!("{field}.path"), o.path.as_ref());
        self.opt_text(&format!("{field}.mime"), o.mime.as_ref());
        self.time(&format!("{field}.at"), o.at);
    }
    fn lease(&mut self, field: &str, l: &Lease) {
        self.text(&format!("{field}.owner"), &l.owner);
        self.time(&format!("{field}.expires_at"), l.expires_at);
    }
    fn update(&mut self, u: &TaskUpdate) {
        for (field, v) in [
            ("title", &u.title),
            ("description", &u.description),
            ("role", &u.role),
            ("provider", &u.provider),
            ("model", &u.model),
        ] {
            self.opt_text(field, v.as_ref());
        }
        if let Some(p) = u.priority {
            self.priority("priority", p);
        }
        self.texts("add_tags", &u.add_tags);
        self.texts("remove_tags", &u.remove_tags);
        self.map("set_metadata", &u.set_metadata);
        self.texts("remove_metadata", &u.remove_metadata);
    }
    fn task(&mut self, t: &Task) {
        // The id is checked by the caller (an `imported` event persists its task without one).
        for (field, v) in [
            ("title", Some(&t.title)),
            ("description", Some(&t.description)),
            ("role", t.role.as_ref()),
            ("provider", t.provider.as_ref()),
            ("model", t.model.as_ref()),
            ("last_error", t.last_error.as_ref()),
        ] {
            self.opt_text(field, v);
        }
        self.percent("progress.percent", t.progress.percent);
        self.opt_text("progress.step", t.progress.step.as_ref());
        self.opt_text("progress.message", t.progress.message.as_ref());
        self.time("created_at", t.created_at);
        self.time("updated_at", t.updated_at);
        if let Some(s) = t.started_at {
            self.time("started_at", s);
        }
        if let Some(c) = t.completed_at {
            self.time("completed_at", c);
        }
        self.texts("tags", &t.tags);
        self.map("metadata", &t.metadata);
        if let Some(r) = &t.result {
            self.json("result", r);
        }
        self.priority("priority", t.priority);
        if let Some(c) = &t.checkpoint {
            self.checkpoint("checkpoint", c);
        }
        for (i, o) in t.outputs.iter().enumerate() {
            self.output(&format!("outputs[{i}]"), o);
        }
        if let Some(l) = &t.lease {
            self.lease("lease", l);
        }
    }
    fn event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Created {
                title,
                description,
                role,
                provider,
                model,
                tags,
                metadata,
                priority,
                request_id,
            } => {
                self.text("title", title);
                self.text("description", description);
                self.opt_text("role", role.as_ref());
                self.opt_text("provider", provider.as_ref());
                self.opt_text("model", model.as_ref());
                self.texts("tags", tags);
                self.map("metadata", metadata);
                self.priority("priority", *priority);
                self.opt_text("request_id", request_id.as_ref());
            }
            EventKind::Updated(u) => self.update(u),
            EventKind::Started {
                owner,
                lease_expires_at,
                ..
            } => {
                self.opt_text("owner", owner.as_ref());
                if let Some(t) = lease_expires_at {
                    self.time("lease_expires_at", *t);
                }
            }
            EventKind::Heartbeat {
                owner,
                lease_expires_at,
            } => {
                self.text("owner", owner);
                self.time("lease_expires_at", *lease_expires_at);
            }
            EventKind::Progress {
                percent,
                step,
                message,
            } => {
                self.percent("percent", *percent);
                self.opt_text("step", step.as_ref());
                self.opt_text("message", message.as_ref());
            }
            EventKind::Checkpoint {
                name,
                progress,
                data,
            } => {
                self.text("name", name);
                self.percent("progress", *progress);
                self.json("data", data);
            }
            EventKind::Output {
                content,
                path,
                mime,
                ..
            } => {
                self.text("content", content);
                self.opt_text("path", path.as_ref());
                self.opt_text("mime", mime.as_ref());
            }
            EventKind::Completed { result } => {
                if let Some(r) = result {
                    self.json("result", r);
                }
            }
            EventKind::Failed { error: text } | EventKind::Interrupted { reason: text, .. } => {
                self.text("reason", text);
            }
            EventKind::Cancelled { reason }
            | EventKind::Requeued { reason }
            | EventKind::Removed { reason }
            | EventKind::Discarded { reason } => self.opt_text("reason", reason.as_ref()),
            EventKind::Retried => {}
            EventKind::Imported { task } => self.task(task),
        }
    }
}

/// The depth of a value (an object or array is one level), computed iteratively.
pub fn depth_of(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
        deepest = deepest.max(depth + usize::from(matches!(v, Value::Array(_) | Value::Object(_))));
    }
    deepest
}

/// Every limit a task's fields break (the id aside), each with its field.
pub fn task_violations(t: &Task) -> Vec<Violation> {
    let mut c = Check::default();
    c.task(t);
    c.found
}

/// Every limit an event breaks: its time, actor and each of its fields.
pub fn event_violations(at: Timestamp, actor: Option<&str>, kind: &EventKind) -> Vec<Violation> {
    let mut c = Check::default();
    c.time("at", at);
    if let Some(a) = actor {
        c.text("actor", a);
    }
    c.event(kind);
    c.found
}

/// A value cut to a readable length for a message: at most [`EXCERPT_CHARS_MAX`] characters,
/// with the full length noted when cut.
pub fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS_MAX) {
        None => s.to_string(),
        Some((cut, _)) => {
            let head = s.get(..cut).unwrap_or_default();
            format!("{head}… ({} bytes in all)", s.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn time_bounds_are_the_four_digit_years() {
        let first = chrono::DateTime::parse_from_rfc3339("0000-01-01T00:00:00Z")
            .expect("year 0")
            .timestamp_millis();
        let last = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999Z")
            .expect("year 9999")
            .timestamp_millis();
        assert_eq!((first, last), (TIME_MS_MIN, TIME_MS_MAX));
        assert!(check_time(Timestamp(TIME_MS_MAX)).is_ok());
        assert!(check_time(Timestamp(TIME_MS_MAX + 1)).is_err());
        assert!(check_time(Timestamp(TIME_MS_MIN - 1)).is_err());
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!(depth_of(&json!(1)), 0);
        assert_eq!(depth_of(&json!({"a": [1]})), 2);
        assert!(check_json(&nested(JSON_DEPTH_MAX)).is_ok());
        assert!(check_json(&nested(JSON_DEPTH_MAX + 1)).is_err());
        // Deeper than serde_json parses (kept moderate: dropping a `Value` recurses).
        assert!(check_json(&nested(200)).is_err());
    }

    #[test]
    fn metadata_values_sit_one_level_down() {
        let mut t: Task = serde_json::from_value(json!({
            "id": "t", "title": "t", "description": "", "role": null, "state": "pending",
            "progress": {"percent": 0}, "created_at": 0, "updated_at": 0, "started_at": null,
            "completed_at": null, "provider": null, "model": null, "tags": [], "metadata": {},
            "result": null, "last_error": null, "error_count": 0, "attempt": 1, "priority": 0,
            "checkpoint": null, "outputs": [], "lease": null, "version": 0, "last_lsn": 0
        }))
        .expect("a task");
        t.metadata.insert("k".into(), nested(JSON_DEPTH_MAX - 1));
        assert!(task_violations(&t).is_empty());
        t.metadata.insert("k".into(), nested(JSON_DEPTH_MAX));
        let v = task_violations(&t);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v.first().map(|(f, _)| f.as_str()), Some("metadata.k"));
    }

    #[test]
    fn excerpts_are_cut_on_character_boundaries() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"é".repeat(EXCERPT_CHARS_MAX)));
        assert!(cut.ends_with("(2000 bytes in all)"), "{cut}");
    }
}
