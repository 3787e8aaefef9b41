//! Spellings accepted on import: task states and field names used by the JSON-file schedulers
//! tasklog replaces. Matching is case-insensitive; the lists are documented in `docs/export.md`.

use crate::task::TaskState;

/// Accepted spellings of each state (compared case-insensitively, `-` and ` ` read as `_`).
const STATE_SPELLINGS: [(TaskState, &[&str]); 6] = [
    (TaskState::Pending, &["pending", "queued", "waiting"]),
    (
        TaskState::Running,
        &["running", "processing", "in_progress", "started"],
    ),
    (
        TaskState::Completed,
        &["completed", "complete", "done", "succeeded", "success"],
    ),
    (
        TaskState::Failed,
        &["failed", "error", "errored", "failure"],
    ),
    (TaskState::Cancelled, &["cancelled", "canceled", "aborted"]),
    (TaskState::Discarded, &["discarded", "dead", "exhausted"]),
];

/// Field names read as another field: `(alias, canonical)`.
const FIELD_ALIASES: [(&str, &str); 3] = [
    ("status", "state"),
    ("name", "title"),
    ("error", "last_error"),
];

/// The state a spelling stands for (`"DONE"` -> completed), or `None` when unknown.
pub fn state_alias(text: &str) -> Option<TaskState> {
    let norm: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    STATE_SPELLINGS
        .iter()
        .find(|(_, names)| names.contains(&norm.as_str()))
        .map(|(state, _)| *state)
}

/// The canonical field an alias stands for (`"status"` -> `"state"`), or `None`.
pub fn field_alias(name: &str) -> Option<&'static str> {
    FIELD_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map(|(_, canonical)| *canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_spelling_maps_case_insensitively() {
        for (state, names) in STATE_SPELLINGS {
            for name in names {
                assert_eq!(state_alias(name), Some(state));
                assert_eq!(state_alias(&name.to_uppercase()), Some(state));
            }
        }
        assert_eq!(state_alias("In-Progress"), Some(TaskState::Running));
        assert_eq!(state_alias("finished"), None);
        assert_eq!(state_alias(""), None);
    }

    #[test]
    fn field_aliases_map_to_canonical_names() {
        assert_eq!(field_alias("status"), Some("state"));
        assert_eq!(field_alias("name"), Some("title"));
        assert_eq!(field_alias("title"), None);
    }
}
