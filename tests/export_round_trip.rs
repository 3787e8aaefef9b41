//! Round trip: export a store, import the document into an empty store, export again.
//!
//! Method: the source store is filled in one session by `support::populated_store` (every
//! event kind, every state, a removed-then-recreated id), so its LSNs are contiguous and every
//! LSN belongs to an exported task. Importing the full export into an empty store re-records
//! each event in LSN order, so the second export must be byte-identical to the first apart
//! from `exported_at` — LSNs, versions and histories included — and each task's history read
//! back from the store must be identical. A second test exports a filtered subset (whose LSNs
//! are therefore not contiguous) and compares after removing `lsn`, `last_lsn` and `version`;
//! a third does the same for a `--no-history` export.

#[path = "export_support.rs"]
mod support;

use tasklog::Store;
use tasklog::export::{ExportOptions, ImportOptions, SourceFormat, export_json, import_json};
use tasklog::store::Filter;
use tasklog::task::{Task, TaskState};

fn import_into(store: &Store, doc: &str) -> tasklog::export::ImportReport {
    import_json(
        store,
        doc.as_bytes(),
        "round-trip",
        &ImportOptions::new(),
        |_, _| {},
    )
    .expect("the export should import")
}

#[test]
fn full_export_reimports_to_an_identical_document_and_identical_histories() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = support::populated_store(dir_a.path());
    let first = support::export_string(&a, true);

    let b = Store::open(dir_b.path()).expect("open the empty store");
    let report = import_into(&b, &first);
    assert_eq!(report.imported, 5);
    assert_eq!(
        report.fields_restored, 0,
        "histories rebuild the exported fields exactly"
    );
    assert_eq!(report.format, Some(SourceFormat::Tasklog));
    assert_eq!(
        report.last_lsn,
        a.last_lsn(),
        "contiguous LSNs are reproduced"
    );

    let second = support::export_string(&b, true);
    assert_eq!(
        support::blank_exported_at(&first),
        support::blank_exported_at(&second)
    );
    for task in a.all_tasks().expect("list") {
        assert_eq!(
            a.history(&task.id).expect("history a"),
            b.history(&task.id).expect("history b")
        );
        // `session` is runtime-only (which process started the attempt): 0 after an import.
        let (ta, tb) = (
            a.get(&task.id).expect("get a"),
            b.get(&task.id).expect("get b"),
        );
        assert_eq!(Task { session: 0, ..ta }, tb);
    }

    // And again after reopening: what was imported is durable. Closing wrote one session
    // record, so only the header's `last_lsn` differs.
    drop(b);
    let b = Store::open(dir_b.path()).expect("reopen");
    let third = support::export_string(&b, true);
    let header = |lsn: u64| format!("\"last_lsn\":{lsn},\"tasks\"");
    let expected = first.replacen(&header(a.last_lsn()), &header(b.last_lsn()), 1);
    assert_eq!(
        support::blank_exported_at(&expected),
        support::blank_exported_at(&third)
    );
}

#[test]
fn filtered_export_round_trips_apart_from_lsns() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = support::populated_store(dir_a.path());
    let filter = Filter {
        states: vec![TaskState::Completed, TaskState::Cancelled],
        ..Filter::default()
    };
    let mut out = Vec::new();
    let summary = export_json(
        &a,
        &ExportOptions::new().filter(filter.clone()),
        &mut out,
        |_, _| {},
    )
    .expect("export");
    assert_eq!(summary.tasks, 2);
    let first = String::from_utf8(out).expect("utf-8");

    let b = Store::open(dir_b.path()).expect("open");
    import_into(&b, &first);
    let mut out = Vec::new();
    export_json(
        &b,
        &ExportOptions::new().filter(filter),
        &mut out,
        |_, _| {},
    )
    .expect("export");
    let second = String::from_utf8(out).expect("utf-8");
    let strip = ["exported_at", "lsn", "last_lsn"];
    assert_eq!(
        support::without_keys(&first, &strip),
        support::without_keys(&second, &strip)
    );
}

#[test]
fn export_without_history_round_trips_the_task_fields() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = support::populated_store(dir_a.path());
    let first = support::export_string(&a, false);
    assert!(!first.contains("\"history\""));
    let b = Store::open(dir_b.path()).expect("open");
    let report = import_into(&b, &first);
    assert_eq!((report.imported, report.events_replayed), (5, 0));
    let second = support::export_string(&b, false);
    let strip = ["exported_at", "last_lsn", "version"];
    assert_eq!(
        support::without_keys(&first, &strip),
        support::without_keys(&second, &strip)
    );
    // Each imported task's history is one `imported` event by the import actor.
    let h = b.history("a").expect("history");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].kind, "imported");
    assert_eq!(h[0].actor.as_deref(), Some(tasklog::export::IMPORT_ACTOR));
}

#[test]
fn edited_fields_win_over_the_history() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = support::populated_store(dir_a.path());
    let doc = support::export_string(&a, true).replacen(
        "\"title\":\"Gamma\",\"description\"",
        "\"title\":\"Gamma (edited)\",\"description\"",
        1,
    );
    let b = Store::open(dir_b.path()).expect("open");
    let report = import_into(&b, &doc);
    assert_eq!(report.fields_restored, 1);
    assert_eq!(b.get("c").expect("get").title, "Gamma (edited)");
    let h = b.history("c").expect("history");
    assert_eq!(h.last().map(|e| e.kind), Some("imported"));
    assert_eq!(h.len(), a.history("c").expect("history").len() + 1);
}
