//! Golden tests for every import layout tasklog accepts and for every alias.
//!
//! Method: each small fixture under `tests/fixtures/import/` is parsed with
//! `tasklog::export::parse_import` (no store involved) and the resulting tasks are checked field
//! by field: the layout recognised, aliases resolved (`status`, `name`, `error`, every state
//! spelling), Python-style and epoch timestamps read as UTC, unknown fields kept as metadata and
//! the wrapper's extra top-level keys returned as import metadata.

use std::path::PathBuf;

use serde_json::json;
use tasklog::TaskState;
use tasklog::export::{ImportTask, ParsedImport, SourceFormat, parse_import};
use tasklog::task::Timestamp;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse(name: &str) -> ParsedImport {
    parse_import(&fixture(name), name).unwrap_or_else(|e| panic!("{name} should parse: {e}"))
}

fn task<'a>(p: &'a ParsedImport, id: &str) -> &'a ImportTask {
    p.tasks
        .iter()
        .find(|t| t.task.id == id)
        .unwrap_or_else(|| panic!("no task {id}"))
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("should be a valid time")
}

#[test]
fn wrapped_v1_format_keeps_header_as_metadata_and_resolves_aliases() {
    let p = parse("wrapped_v1.json");
    assert_eq!(p.format, SourceFormat::Wrapped);
    assert_eq!(p.tasks.len(), 3);
    assert_eq!(p.metadata.get("cluster_name"), Some(&json!("prod-east")));
    assert_eq!(p.metadata.get("version"), Some(&json!("1.0")));
    assert_eq!(p.metadata.get("task_count"), Some(&json!(3)));
    assert!(!p.metadata.contains_key("tasks"));

    let t1 = &task(&p, "task-1").task;
    assert_eq!(t1.title, "Crawl the docs");
    assert_eq!(t1.state, TaskState::Completed);
    assert_eq!(t1.created_at, ts("2024-01-02T03:04:05.678Z"));
    assert_eq!(t1.updated_at, Timestamp(1_704_164_700_000));
    assert_eq!(t1.completed_at, Some(ts("2024-01-02T03:05:00Z")));
    assert_eq!(t1.progress.percent, 100);
    assert_eq!(t1.priority, 3);
    assert_eq!(t1.tags, ["crawl", "docs"]);
    assert_eq!(t1.result.as_deref(), Some(&json!({"pages": 12})));
    assert_eq!(
        t1.metadata.get("worker"),
        Some(&json!("node-7")),
        "unknown fields go to metadata"
    );
    assert_eq!(t1.metadata.get("cost"), Some(&json!(0.25)));

    let t2 = &task(&p, "task-2").task;
    assert_eq!(t2.state, TaskState::Running);
    assert_eq!(t2.created_at, ts("2024-01-02T03:06:00Z"));
    assert_eq!(
        t2.updated_at, t2.created_at,
        "updated_at defaults to created_at"
    );
    assert_eq!(t2.started_at, Some(ts("2024-01-02T03:06:01.500Z")));
    assert_eq!(t2.progress.percent, 40);
    assert_eq!(t2.progress.step.as_deref(), Some("reading"));
    assert_eq!(t2.provider.as_deref(), Some("acme"));

    let t3 = &task(&p, "task-3").task;
    assert_eq!(t3.state, TaskState::Pending);
    assert_eq!(t3.created_at, ts("2024-01-02T00:00:00Z"));
    assert_eq!(t3.attempt, 1);
}

#[test]
fn plain_map_format_reads_the_older_layout() {
    let p = parse("legacy_map.json");
    assert_eq!(p.format, SourceFormat::Map);
    assert!(p.metadata.is_empty());
    let ids: Vec<&str> = p.tasks.iter().map(|t| t.task.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"], "document order is kept");
    let a1 = &task(&p, "a1").task;
    assert_eq!(a1.state, TaskState::Completed);
    assert_eq!(a1.created_at, ts("2023-05-06T07:08:09.123Z"));
    assert_eq!(a1.metadata.get("retries"), Some(&json!(2)));
    let a2 = &task(&p, "a2").task;
    assert_eq!(a2.state, TaskState::Failed);
    assert_eq!(a2.last_error.as_deref(), Some("exit code 1"));
    assert_eq!(a2.error_count, 1);
    assert_eq!(task(&p, "a3").task.state, TaskState::Cancelled);
    assert!(p.tasks.iter().all(|t| t.history.is_none()));
}

#[test]
fn array_format_takes_ids_from_the_tasks_or_generates_them() {
    let p = parse("array.json");
    assert_eq!(p.format, SourceFormat::Array);
    assert_eq!(p.tasks.len(), 3);
    assert_eq!(p.tasks[0].task.id, "x-1");
    let generated = &p.tasks[1].task;
    assert!(
        uuid::Uuid::parse_str(&generated.id).is_ok(),
        "{}",
        generated.id
    );
    assert_eq!(generated.state, TaskState::Running);
    assert_eq!(generated.created_at, Timestamp(1_700_000_000_500));
    let numeric = &p.tasks[2].task;
    assert_eq!(numeric.id, "42");
    assert_eq!(numeric.title, "Numeric id");
    assert_eq!(numeric.state, TaskState::Cancelled);
    assert_eq!(numeric.metadata.get("owner"), Some(&json!({"team": "ops"})));
}

#[test]
fn every_state_and_field_alias_is_accepted() {
    let p = parse("aliases.json");
    let expect = [
        (1..=4, TaskState::Pending),
        (5..=10, TaskState::Running),
        (11..=17, TaskState::Completed),
        (18..=22, TaskState::Failed),
        (23..=26, TaskState::Cancelled),
    ];
    for (range, state) in expect {
        for n in range {
            let id = format!("s{n:02}");
            assert_eq!(task(&p, &id).task.state, state, "{id}");
        }
    }
    assert_eq!(task(&p, "f01").task.title, "named by name");
    assert_eq!(task(&p, "f02").task.last_error.as_deref(), Some("boom"));
    assert!(
        p.tasks.iter().all(|t| t.task.metadata.is_empty()),
        "aliases are not unknown fields"
    );
}

#[test]
fn a_utf8_bom_and_an_empty_document_are_accepted() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(br#"[{"id": "a", "title": "t", "state": "pending"}]"#);
    assert_eq!(
        parse_import(&bytes, "bom")
            .expect("should parse")
            .tasks
            .len(),
        1
    );
    assert!(
        parse_import(b"{}", "empty")
            .expect("should parse")
            .tasks
            .is_empty()
    );
    assert!(
        parse_import(b"[]", "empty")
            .expect("should parse")
            .tasks
            .is_empty()
    );
}

#[test]
fn tasklog_format_reads_histories_that_rebuild_the_exported_fields() {
    let p = parse("tasklog_v1.json");
    assert_eq!(p.format, SourceFormat::Tasklog);
    assert_eq!(p.metadata.get("last_lsn"), Some(&json!(6)));
    let job1 = task(&p, "job-1");
    let history = job1.history.as_ref().expect("should have a history");
    let lsns: Vec<u64> = history.iter().map(|e| e.lsn).collect();
    assert_eq!(lsns, [1, 3, 4, 6]);
    assert_eq!(history[1].actor.as_deref(), Some("worker-1"));
    for t in &p.tasks {
        let rebuilt = t.rebuilt().expect("a history rebuilds its task");
        let mut exported = t.task.clone();
        exported.version = rebuilt.version;
        exported.last_lsn = rebuilt.last_lsn;
        assert_eq!(&exported, rebuilt, "{}", t.task.id);
    }
}
