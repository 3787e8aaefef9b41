//! Bad import documents are rejected whole, with every problem listed.
//!
//! Method: golden files. Each `tests/fixtures/import/bad/<name>.json` is parsed and the list of
//! problems in the `InvalidDocument` error must equal `<name>.problems` line for line (each
//! problem names its JSON path, and line/column for syntax errors). Run with
//! `UPDATE_GOLDEN=1` to rewrite the golden files after a deliberate change, then review the
//! diff. A 100 MB string, built in the test and never committed, must be refused by the
//! per-string limit rather than copied.

use std::path::PathBuf;

use tasklog::Error;
use tasklog::export::{
    IMPORT_BYTES_MAX, IMPORT_STRING_BYTES_MAX, parse_import, validate_import_bytes,
};

fn bad_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/bad")
}

fn problems_of(bytes: &[u8], name: &str) -> Vec<String> {
    match parse_import(bytes, name) {
        Err(Error::InvalidDocument {
            source_name,
            problems,
            ..
        }) => {
            assert_eq!(source_name, name);
            assert!(!problems.is_empty());
            problems
        }
        Err(other) => panic!("{name}: expected InvalidDocument, got {other}"),
        Ok(p) => panic!(
            "{name}: expected a rejection, parsed {} tasks",
            p.tasks.len()
        ),
    }
}

#[test]
fn every_bad_fixture_matches_its_golden_problem_list() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(bad_dir())
        .expect("should list the fixtures")
        .map(|e| e.expect("should read the entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 8, "fixtures missing: {entries:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for path in entries {
        let name = path
            .file_name()
            .expect("should have a name")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).expect("should read the fixture");
        let got = problems_of(&bytes, &name).join("\n") + "\n";
        let golden = path.with_extension("problems");
        if update {
            std::fs::write(&golden, &got).expect("should write the golden file");
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn the_issue_example_path_is_reported_exactly() {
    let bytes = std::fs::read(bad_dir().join("unknown_state.json")).expect("should read");
    let problems = problems_of(&bytes, "unknown_state.json");
    assert!(
        problems.contains(&r#"tasks["task-7"].status: unknown state "finished""#.to_string()),
        "{problems:?}"
    );
    assert_eq!(
        problems.len(),
        2,
        "both bad tasks are reported: {problems:?}"
    );
}

#[test]
fn truncated_input_reports_line_and_column() {
    let bytes = std::fs::read(bad_dir().join("truncated.json")).expect("should read");
    let problems = problems_of(&bytes, "truncated.json");
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("truncated JSON") && problems[0].contains("line 3"),
        "{problems:?}"
    );
    // Every prefix of a valid document is rejected, never half-read.
    let good =
        br#"{"t1": {"title": "a", "status": "pending"}, "t2": {"title": "b", "status": "done"}}"#;
    for cut in 0..good.len() {
        assert!(
            parse_import(&good[..cut], "prefix").is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
}

#[test]
fn a_100_mb_string_is_refused_without_being_copied() {
    let len = 100 << 20;
    let mut doc = Vec::with_capacity(len + 100);
    doc.extend_from_slice(br#"[{"id": "big", "state": "pending", "title": ""#);
    doc.resize(doc.len() + len, b'a');
    doc.extend_from_slice(br#""}]"#);
    let problems = problems_of(&doc, "big.json");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let limit = IMPORT_STRING_BYTES_MAX.to_string();
    assert!(
        problems[0].contains(&limit) && problems[0].contains("column"),
        "{problems:?}"
    );

    // The same with an escape in it, which serde_json must unescape into a buffer first.
    let pos = doc.len() - 10;
    doc[pos] = b'\\';
    doc[pos + 1] = b'n';
    let problems = problems_of(&doc, "big-escaped.json");
    assert!(problems[0].contains(&limit), "{problems:?}");

    // A string just under the limit is fine.
    let mut ok = br#"[{"id": "big", "state": "pending", "title": ""#.to_vec();
    ok.resize(ok.len() + IMPORT_STRING_BYTES_MAX, b'b');
    ok.extend_from_slice(br#""}]"#);
    assert!(parse_import(&ok, "under.json").is_ok());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut doc =
        br#"[{"id": "deep", "title": "t", "state": "pending", "metadata": {"x": "#.to_vec();
    doc.extend(std::iter::repeat_n(b'[', 100_000));
    doc.extend(std::iter::repeat_n(b']', 100_000));
    doc.extend_from_slice(b"}}]");
    let problems = problems_of(&doc, "deep.json");
    assert!(
        problems[0].contains("nested deeper than 128 levels"),
        "{problems:?}"
    );
}

/// A document in memory one byte over `IMPORT_BYTES_MAX` is refused as too large before any of
/// it is read; one of exactly the limit is read (and here refused as invalid JSON at its first
/// byte). The zeroed buffers are allocated lazily, so the 1 GiB costs nothing until touched.
#[test]
fn a_document_in_memory_over_the_size_limit_is_refused_before_it_is_read() {
    let limit = usize::try_from(IMPORT_BYTES_MAX).expect("fits");
    let over = vec![0u8; limit + 1];
    let err = validate_import_bytes(&over, "huge.json").expect_err("too large");
    assert!(
        matches!(err, Error::TooLarge { what: "import document", len, max } if len == IMPORT_BYTES_MAX + 1 && max == IMPORT_BYTES_MAX),
        "{err:?}"
    );
    drop(over);
    let at_limit = vec![0u8; limit];
    let err = validate_import_bytes(&at_limit, "limit.json").expect_err("not JSON");
    assert!(
        matches!(err, Error::InvalidDocument { .. }),
        "a document of exactly the limit is read: {err:?}"
    );
}
