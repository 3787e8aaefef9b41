//! Helpers shared by the golden-fixture tests (`golden_v1`, `golden_v2`).
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};
use tasklog::store::Store;

/// Copies a fixture directory (the tests open copies, never the fixtures themselves).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every task and history as JSON, in id order (the fixtures' removed task "removed-1"
/// included: its history outlives it).
pub fn dump(store: &Store) -> Value {
    let mut ids: Vec<String> = store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.push("removed-1".into());
    ids.sort();
    let mut out = serde_json::Map::new();
    for id in ids {
        let task = store
            .get(&id)
            .ok()
            .map(|t| serde_json::to_value(t).unwrap());
        let history = serde_json::to_value(store.history(&id).unwrap()).unwrap();
        out.insert(id, json!({"task": task, "history": history}));
    }
    Value::Object(out)
}
