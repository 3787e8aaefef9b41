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

/// A merge that skips many ids lists the first 100 and counts the rest, in the report and in
/// the CLI's line (it printed every one: 1,000,000 ids for a repeated import of that size).
#[test]
fn skipped_ids_are_listed_up_to_a_hundred_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let doc = tmp.path().join("doc.json");
    std::fs::write(&doc, tiny_tasks(150)).unwrap();
    ok(&store, &["import", doc.to_str().unwrap()]);
    let out = ok(&store, &["import", doc.to_str().unwrap()]);
    assert!(out.contains("150 skipped"), "{out}");
    let listed = out.lines().find(|l| l.starts_with("skipped")).unwrap();
    assert!(listed.contains("big-0000000, big-0000001"), "{listed}");
    assert!(listed.contains("big-0000099 and 50 more"), "{listed}");
    assert!(!listed.contains("big-0000100"), "{listed}");
}

/// A document of `n` tiny tasks (`big-0000000`...), as the issue's 1,000,000-task benchmark.
fn tiny_tasks(n: usize) -> String {
    let tasks: Vec<String> = (0..n)
        .map(|i| format!(r#""big-{i:07}": {{"title": "t{i}", "status": "pending"}}"#))
        .collect();
    format!(r#"{{"tasks": {{{}}}}}"#, tasks.join(", "))
}

/// Above the staging threshold (4,096 tasks) the CLI validates the input, then reads it again
/// and streams it into the staging segment (`import_json_staged`); stdin is first copied to a
/// temporary file. A bad document on stdin is refused before the store is created, and a
/// replacing import removes the tasks it does not hold (after streaming the others).
#[test]
fn a_large_import_from_a_file_or_stdin_is_streamed_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let doc = tmp.path().join("big.json");
    std::fs::write(&doc, tiny_tasks(5_000)).unwrap();

    // stdin, with a problem at the very end: refused, nothing created.
    let mut bad = tiny_tasks(5_000);
    bad.truncate(bad.len() - 2);
    bad.push_str(r#", "big-0000000": {"title": "again", "status": "pending"}}}"#);
    let pipe = |input: String| {
        cli_support::tasklog(&store)
            .args(["import", "-"])
            .write_stdin(input)
            .output()
            .unwrap()
    };
    let refused = pipe(bad);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("big-0000000"),
        "{refused:?}"
    );
    assert!(!store.exists(), "a refused import created the store");

    let done = pipe(tiny_tasks(5_000));
    assert!(done.status.success(), "{done:?}");
    assert_eq!(json(&store, &["stats", "--json"])["total"], 5_000);

    // A replacing import of 4,500 of them from a file: 500 removed, whatever order it wrote.
    let fewer = tmp.path().join("fewer.json");
    std::fs::write(&fewer, tiny_tasks(4_500)).unwrap();
    let out = ok(
        &store,
        &["import", fewer.to_str().unwrap(), "--mode", "replace"],
    );
    assert!(out.contains("500 removed"), "{out}");
    assert_eq!(json(&store, &["stats", "--json"])["total"], 4_500);
    let gone = json(&store, &["history", "big-0004999", "--json"]);
    assert!(
        gone.to_string().contains("replaced by import"),
        "the removed task's history says why: {gone}"
    );
    // And the file import of all 5,000 into the store: merge skips the 4,500 it holds.
    let out = ok(&store, &["import", doc.to_str().unwrap()]);
    assert!(out.contains("imported 500 new task(s)"), "{out}");
}
