//! `import` refuses before it writes: a dry run and every rejected import leave the store
//! directory byte for byte unchanged (and a missing store uncreated); a tasklog document
//! without `tasks` never wipes a store with `--mode replace`; messages give the true count of
//! problems and the OS error once; the JSON arguments `--meta`, `--result` and `--data` are held
//! to the store's limits.
//!
//! Method: the real binary, directly on the store (through a server the server owns the
//! directory, so its bytes are not the CLI's to keep). The directory is hashed (every file's
//! path and contents) before and after each command.

#[macro_use]
mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;

use cli_support::{fails, json, ok, submit};

/// Every file under `dir` (relative path → contents).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn dry_runs_and_rejected_imports_leave_the_store_byte_for_byte_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let a = submit(&store, "alpha", &[]);
    submit(&store, "beta", &[]);
    let export = tmp.path().join("export.json");
    ok(&store, &["export", "--out", export.to_str().unwrap()]);
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"id": "x", "title": "t", "state": "sleeping"}]"#).unwrap();
    let no_tasks = tmp.path().join("no_tasks.json");
    std::fs::write(
        &no_tasks,
        r#"{"format": "tasklog", "version": 1, "task_count": 0}"#,
    )
    .unwrap();
    let before = snapshot(&store);

    let e = export.to_str().unwrap();
    let out = ok(&store, &["import", e, "--dry-run", "--mode", "replace"]);
    assert!(out.contains("dry run"), "{out}");
    ok(&store, &["import", e, "--dry-run"]);
    fails(&store, &["import", bad.to_str().unwrap()], 1);
    fails(&store, &["import", e, "--on-conflict", "fail"], 1);
    let err = fails(
        &store,
        &["import", no_tasks.to_str().unwrap(), "--mode", "replace"],
        1,
    );
    assert!(err.contains("tasks: missing"), "{err}");
    assert!(
        before == snapshot(&store),
        "a dry run or a rejected import changed the store's files"
    );
    // And the tasks are all still there.
    assert_eq!(
        json(&store, &["list", "--json"]).as_array().unwrap().len(),
        2
    );
    ok(&store, &["get", &a]);

    // A dry run into a directory with no store creates nothing.
    let fresh = tmp.path().join("fresh");
    ok(&fresh, &["import", e, "--dry-run"]);
    assert!(!fresh.exists());
}

#[test]
fn the_true_number_of_problems_and_one_os_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let many = tmp.path().join("many.json");
    let tasks: Vec<String> = (0..2500)
        .map(|i| format!(r#"{{"id": "t{i}", "title": "t", "state": "sleeping"}}"#))
        .collect();
    std::fs::write(&many, format!("[{}]", tasks.join(","))).unwrap();
    let err = fails(&store, &["import", many.to_str().unwrap()], 1);
    assert!(err.contains("2500 problem(s) in"), "{}", &err[..200]);
    assert!(
        err.contains("... and 1500 more problem(s) not listed"),
        "{}",
        &err[err.len() - 200..]
    );

    let err = fails(&store, &["import", tmp.path().to_str().unwrap()], 1);
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(!store.exists(), "a failed import created the store");
}

#[test]
fn json_arguments_are_held_to_the_store_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    // A metadata value sits one level down: 63 levels is the most it may nest.
    submit(&store, "ok", &["--meta", &format!("k={}", deep(63))]);
    let err = fails(
        &store,
        &[
            "submit",
            "--title",
            "t",
            "--meta",
            &format!("k={}", deep(120)),
        ],
        2,
    );
    assert!(err.contains("nested deeper than 64"), "{err}");
    let id = submit(&store, "r", &[]);
    ok(&store, &["start", &id]);
    let err = fails(&store, &["checkpoint", &id, "c", "--data", &deep(65)], 2);
    assert!(err.contains("nested deeper than 64"), "{err}");
    let err = fails(&store, &["complete", &id, "--result", &deep(100)], 2);
    assert!(err.contains("nested deeper than 64"), "{err}");
    ok(&store, &["complete", &id, "--result", &deep(64)]);
    // What was accepted exports and re-imports.
    let export = tmp.path().join("e.json");
    ok(&store, &["export", "--out", export.to_str().unwrap()]);
    let other = tmp.path().join("other");
    let out = ok(&other, &["import", export.to_str().unwrap()]);
    assert!(out.contains("imported 2"), "{out}");
}
