//! Import modes, conflicts, dry runs, rejection without side effects, and the CSV and file
//! exports.
//!
//! Method: small stores built in each test; after each import the store's tasks, histories and
//! last LSN are compared with what the mode promises: merge skips / overwrites / fails on an
//! existing id as asked, replace records the tasks that go as removed (history kept), a dry run
//! or a rejected document leaves the last LSN unchanged.

#[path = "export_support.rs"]
mod support;

use serde_json::json;
use tasklog::export::{
    ExportOptions, HISTORY_CSV_COLUMNS, ImportMode, ImportOptions, OnConflict, REPLACED_REASON,
    TASK_CSV_COLUMNS, export_history_csv, export_json_to_path, export_tasks_csv, import_json,
};
use tasklog::{Error, NewTask, Store, TaskState};

const DOC: &str = r#"{"version": "1.0", "exported_at": "2024-01-02T03:04:05", "cluster_name": "east",
  "tasks": {
    "keep": {"title": "from the file", "status": "done"},
    "new-1": {"title": "new one", "status": "queued"},
    "new-2": {"name": "new two", "status": "RUNNING"}
  }}"#;

fn store_with(ids: &[&str]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    for id in ids {
        store
            .submit(NewTask::new(format!("existing {id}")).id(*id))
            .expect("submit");
    }
    (dir, store)
}

fn import(
    store: &Store,
    doc: &str,
    options: &ImportOptions,
) -> tasklog::Result<tasklog::export::ImportReport> {
    import_json(store, doc.as_bytes(), "doc.json", options, |_, _| {})
}

#[test]
fn merge_skips_existing_ids_and_reports_them() {
    let (_d, store) = store_with(&["keep"]);
    let mut calls = Vec::new();
    let report = import_json(
        &store,
        DOC.as_bytes(),
        "doc.json",
        &ImportOptions::new(),
        |done, total| calls.push((done, total)),
    )
    .expect("import");
    assert_eq!(
        (
            report.imported,
            report.skipped,
            report.overwritten,
            report.removed
        ),
        (2, 1, 0, 0)
    );
    assert_eq!(report.skipped_ids, ["keep"]);
    assert_eq!(report.metadata.get("cluster_name"), Some(&json!("east")));
    assert_eq!(store.get("keep").expect("get").title, "existing keep");
    assert_eq!(store.get("new-2").expect("get").state, TaskState::Running);
    assert_eq!(calls.last(), Some(&(3, 3)));
}

/// The report lists the first `SKIPPED_IDS_LISTED_MAX` skipped ids in document order and counts
/// them all: its size does not grow with the number of ids skipped.
#[test]
fn a_report_lists_the_first_hundred_skipped_ids_and_counts_all() {
    use tasklog::export::SKIPPED_IDS_LISTED_MAX;
    let ids: Vec<String> = (0..SKIPPED_IDS_LISTED_MAX + 7)
        .map(|i| format!("t{i:04}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (_d, store) = store_with(&refs);
    let tasks: Vec<String> = ids
        .iter()
        .rev()
        .map(|id| format!(r#""{id}": {{"title": "again", "status": "pending"}}"#))
        .collect();
    let doc = format!(r#"{{"tasks": {{{}}}}}"#, tasks.join(", "));
    let report = import(&store, &doc, &ImportOptions::new()).expect("import");
    assert_eq!(report.skipped, ids.len() as u64);
    let first: Vec<&str> = refs
        .iter()
        .rev()
        .take(SKIPPED_IDS_LISTED_MAX)
        .copied()
        .collect();
    assert_eq!(report.skipped_ids, first);
}

#[test]
fn merge_overwrites_when_asked_and_keeps_the_history() {
    let (_d, store) = store_with(&["keep"]);
    let options = ImportOptions::new().on_conflict(OnConflict::Overwrite);
    let report = import(&store, DOC, &options).expect("import");
    assert_eq!((report.imported, report.overwritten), (2, 1));
    let kept = store.get("keep").expect("get");
    assert_eq!(
        (kept.title.as_str(), kept.state),
        ("from the file", TaskState::Completed)
    );
    let kinds: Vec<&str> = store
        .history("keep")
        .expect("history")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "imported"]);
}

#[test]
fn merge_fails_on_conflict_listing_every_id_and_writes_nothing() {
    let (_d, store) = store_with(&["keep", "new-1"]);
    let before = store.last_lsn();
    let options = ImportOptions::new().on_conflict(OnConflict::Fail);
    match import(&store, DOC, &options) {
        Err(Error::InvalidDocument { problems, .. }) => {
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert!(problems[0].starts_with(r#"tasks["keep"]"#), "{problems:?}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(store.last_lsn(), before);
    assert!(store.get("new-2").is_err());
}

#[test]
fn replace_removes_the_others_with_their_history_kept() {
    let (_d, store) = store_with(&["keep", "old-1", "old-2"]);
    let options = ImportOptions::new().mode(ImportMode::Replace);
    let report = import(&store, DOC, &options).expect("import");
    assert_eq!(
        (report.imported, report.overwritten, report.removed),
        (2, 1, 2)
    );
    let mut ids: Vec<String> = store
        .all_tasks()
        .expect("all")
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["keep", "new-1", "new-2"]);
    let h = store
        .history("old-1")
        .expect("a removed task keeps its history");
    let last = h.last().expect("events");
    assert_eq!(last.kind, "removed");
    assert_eq!(last.details["reason"], json!(REPLACED_REASON));
    assert_eq!(last.actor.as_deref(), Some(tasklog::export::IMPORT_ACTOR));
}

#[test]
fn dry_run_and_bad_documents_leave_the_store_untouched() {
    let (_d, store) = store_with(&["keep"]);
    let before = store.last_lsn();
    let options = ImportOptions::new().mode(ImportMode::Replace).dry_run(true);
    let report = import(&store, DOC, &options).expect("dry run");
    assert!(report.dry_run);
    assert_eq!(
        (report.imported, report.overwritten, report.removed),
        (2, 1, 0)
    );
    assert_eq!(store.last_lsn(), before);

    let bad = DOC.replace("\"queued\"", "\"finished\"");
    match import(&store, &bad, &ImportOptions::new()) {
        Err(Error::InvalidDocument {
            problems,
            source_name,
            ..
        }) => {
            assert_eq!(source_name, "doc.json");
            assert_eq!(
                problems,
                [r#"tasks["new-1"].status: unknown state "finished""#]
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(store.last_lsn(), before);
    assert_eq!(store.len(), 1);
}

#[test]
fn export_to_a_directory_writes_one_complete_file_atomically() {
    let (_d, store) = store_with(&["a", "b"]);
    let out = tempfile::tempdir().expect("temp dir");
    let (path, summary) =
        export_json_to_path(&store, &ExportOptions::new(), Some(out.path())).expect("export");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("tasks_export_") && name.ends_with(".json"),
        "{name}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).expect("list").count(),
        1,
        "no temp file left"
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.len() as u64, summary.bytes);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let keys: Vec<&String> = doc.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "format",
            "version",
            "exported_at",
            "task_count",
            "last_lsn",
            "tasks"
        ]
    );
    assert_eq!(doc["task_count"], json!(2));
    assert_eq!(doc["tasks"]["a"]["history"][0]["kind"], json!("created"));

    let file = out.path().join("named.json");
    export_json_to_path(&store, &ExportOptions::new(), Some(&file)).expect("export to a file");
    assert!(file.exists());
}

#[test]
fn csv_exports_have_the_documented_columns_and_quote_by_rfc_4180() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = support::populated_store(dir.path());
    let mut out = Vec::new();
    let s = export_tasks_csv(&store, &ExportOptions::new(), &mut out, |_, _| {}).expect("csv");
    assert_eq!(s.tasks, 5);
    let text = String::from_utf8(out).expect("utf-8");
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some(TASK_CSV_COLUMNS.join(",").as_str()));
    assert!(
        text.contains(r#"a,Alpha,"first, with ""quotes""",dev,completed,100,fetch,1/3,"#),
        "{text}"
    );
    assert!(
        text.contains("\"Ünïcode ✓, comma\",\"two\nlines\""),
        "{text}"
    );
    assert!(
        text.contains(r#""[""x""]","{""cost"":1.5}","{""n"":3}""#),
        "{text}"
    );

    let mut out = Vec::new();
    let s = export_history_csv(&store, &ExportOptions::new(), &mut out, |_, _| {}).expect("csv");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.starts_with(&format!("{}\r\n", HISTORY_CSV_COLUMNS.join(","))));
    assert_eq!(text.matches("\r\n").count() as u64, s.events + 1);
    assert!(
        text.contains(",removed,pending,,,\"{\"\"reason\"\":\"\"mistake\"\"}\"\r\n"),
        "{text}"
    );
}
