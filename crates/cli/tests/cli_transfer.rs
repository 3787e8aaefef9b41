//! `export` and `import` through the `tasklog` binary: a JSON export (default file name in the
//! current directory, `--out FILE`, `--out -` to stdout, filters, `--no-history`) and a CSV
//! export, then an import into a fresh store (dry run first, then for real, then again to see
//! conflicts skipped, or rejected with `--on-conflict fail`), a `--mode replace` import, and an
//! invalid document rejected with exit 1 naming its JSON path. Runs the real binary.

#[macro_use]
mod cli_support;

use cli_support::{fails, json, ok, submit, tasklog};
use serde_json::{Value, json};

// Each scenario runs twice: directly, and through a `tasklog serve` on its store directory.
both_ways!(
    export_then_import_round_trips,
    an_invalid_document_is_rejected_with_its_json_path,
);

fn export_then_import_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let a = submit(&src, "alpha", &["--role", "coder", "--meta", "n=1"]);
    let b = submit(&src, "beta", &[]);
    ok(&src, &["start", &a]);
    ok(&src, &["complete", &a, "--result", "42"]);

    // Default file name, in the current directory.
    let out = tasklog(&src)
        .current_dir(tmp.path())
        .arg("export")
        .assert()
        .success();
    let said = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let file = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("tasks_export_") && n.ends_with(".json") && n.len() == 33
        })
        .expect("tasks_export_YYYYMMDD_HHMMSS.json in the current directory");
    assert!(said.contains("exported 2 task(s), 4 event(s)"), "{said}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["format"], json!("tasklog"));

    // To stdout, filtered, without history: exactly JSON.
    let out = ok(
        &src,
        &[
            "export",
            "--out",
            "-",
            "--state",
            "completed",
            "--no-history",
        ],
    );
    let doc: Value = serde_json::from_str(&out).expect("export --out - is JSON");
    assert_eq!(doc["tasks"].as_object().unwrap().len(), 1);
    assert!(doc["tasks"][&a].is_object());
    // CSV with a header row.
    let csv = ok(&src, &["export", "--out", "-", "--format", "csv"]);
    assert!(csv.starts_with("id,"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let named = tmp.path().join("named.csv");
    ok(
        &src,
        &[
            "export",
            "--format",
            "csv",
            "--out",
            named.to_str().unwrap(),
        ],
    );
    assert!(named.exists());

    // Import into a fresh store: a dry run writes nothing.
    let dst = tmp.path().join("dst");
    let f = file.to_str().unwrap();
    let out = ok(&dst, &["import", f, "--dry-run"]);
    assert!(out.contains("would import 2"), "{out}");
    // Directly, a dry run does not even create the store; through a server, the store the
    // server opened stays empty.
    if dst.join("wal").is_dir() {
        assert_eq!(json(&dst, &["list", "--json"]), json!([]));
    } else {
        assert!(!dst.exists());
    }
    let out = ok(&dst, &["import", f]);
    assert!(out.contains("imported 2"), "{out}");
    let t = json(&dst, &["get", &a, "--json"]);
    assert_eq!(
        (t["state"].clone(), t["result"].clone()),
        (json!("completed"), json!(42))
    );
    assert_eq!(t["metadata"]["n"], json!(1));
    let h = json(&dst, &["history", &a, "--json"]);
    assert!(h.as_array().unwrap().len() >= 3, "{h}");
    // Again: the ids exist, so they are skipped, or the import fails as a whole.
    let out = ok(&dst, &["import", f]);
    assert!(out.contains("2 skipped"), "{out}");
    let err = fails(&dst, &["import", f, "--on-conflict", "fail"], 1);
    assert!(err.contains(&b), "{err}");
    ok(&dst, &["import", f, "--on-conflict", "overwrite"]);

    // Replace: the store holds exactly the file's tasks afterwards.
    let extra = submit(&dst, "not in the file", &[]);
    ok(&dst, &["import", f, "--mode", "replace"]);
    fails(&dst, &["get", &extra], 1);
    assert_eq!(json(&dst, &["list", "--json"]).as_array().unwrap().len(), 2);
    ok(&dst, &["verify"]);
}

fn an_invalid_document_is_rejected_with_its_json_path() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"tasks": [{"id": "x", "title": "t", "state": "sleeping"}]}"#,
    )
    .unwrap();
    let err = fails(&d, &["import", bad.to_str().unwrap()], 1);
    assert!(err.starts_with("tasklog: error: "), "{err}");
    assert!(
        err.contains("bad.json") && err.contains("sleeping"),
        "{err}"
    );
    fails(
        &d,
        &["import", tmp.path().join("missing.json").to_str().unwrap()],
        1,
    );
    fails(&d, &["import", "x.json", "--mode", "sideways"], 2);
}
