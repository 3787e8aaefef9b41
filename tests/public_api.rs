//! The curated public surface (issue #21). Goal: without the `testing` feature a dependent
//! crate reaches the store, tasks, queries, the runtime, export/import, backup and the
//! verify/repair entry points, and cannot reach the codecs, the simulated disk, the storage
//! seam, `store::State` or a way to write forged history. Method: this test's own build always
//! has `testing` on (the package's dev-dependency on itself), so it cannot probe visibility
//! directly; it writes a tiny crate depending on tasklog *without* features into a temporary
//! directory and runs `cargo check` on it: once with only public paths (must compile), once
//! with one line per internal item and per forged-history change (each must fail as private,
//! not found or not constructible, and nothing else).
//! The probe uses the workspace's lock file and a subdirectory of this build's target
//! directory (its own, so the outer cargo's lock is never waited on): the first run checks the
//! dependencies once (about half a minute), later runs take seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths a user needs: each must resolve without `testing`.
const PUBLIC: &[&str] = &[
    "tasklog::Store",
    "tasklog::StoreOptions",
    "tasklog::Durability",
    "tasklog::Error",
    "tasklog::Query",
    "tasklog::Filter",
    "tasklog::ReadView",
    "tasklog::NewTask",
    "tasklog::Task",
    "tasklog::TaskState",
    "tasklog::task::Event",
    "tasklog::task::EventKind",
    "tasklog::task::Timestamp",
    "tasklog::store::HistoryEvent",
    "tasklog::store::HistoryStep",
    "tasklog::store::Stats",
    "tasklog::store::Subscription",
    "tasklog::store::Committed",
    "tasklog::store::Mutation",
    "tasklog::store::Change",
    "tasklog::store::Log",
    "tasklog::store::RecoveryReport",
    "tasklog::store::wal_dir",
    "tasklog::store::backup::restore_into",
    "tasklog::store::backup::backup_rotate",
    "tasklog::store::verify::verify",
    "tasklog::store::verify::VerifyReport",
    "tasklog::store::repair::repair",
    "tasklog::store::repair::StoreRepairReport",
    "tasklog::wal::Lsn",
    "tasklog::wal::Ticket",
    "tasklog::wal::TruncateReport",
    "tasklog::wal::WalStats",
    "tasklog::runtime::Runtime",
    "tasklog::runtime::Kind",
    "tasklog::export::export_json",
    "tasklog::export::import_json",
];

/// Internals: each must be unreachable without `testing`.
const INTERNAL: &[&str] = &[
    "tasklog::wal::frame",
    "tasklog::wal::segment",
    "tasklog::wal::sim",
    "tasklog::wal::storage",
    "tasklog::wal::Storage",
    "tasklog::wal::StdStorage",
    "tasklog::wal::fuzzing",
    "tasklog::wal::lock",
    "tasklog::store::state",
    "tasklog::store::snapshot",
    "tasklog::store::record",
    "tasklog::store::recovery",
    "tasklog::store::fuzzing",
    "tasklog::store::unique",
    "tasklog::store::kinds",
    "tasklog::store::history",
    "tasklog::store::backup::restore",
    "tasklog::store::repair::repair_with_storage",
    "tasklog::task::apply",
    "tasklog::task::wire",
    "tasklog::export::fuzz_import_json",
];

/// Forged history: each construction must be refused without `testing`.
const FORGERIES: &str = "pub fn forge(task: tasklog::Task, kind: tasklog::task::EventKind) {
    let _ = tasklog::store::Change::Import(Box::new(task));
    let _ = tasklog::store::Change::Historical { kind: Box::new(kind), at: tasklog::task::Timestamp(0) };
    let _ = tasklog::store::Change::Interrupt { reason: String::new(), to: tasklog::TaskState::Failed };
}
";

/// A minimal `store::Log` outside the crate (the full one is in tests/store_custom_log.rs).
const CUSTOM_LOG: &str = "use tasklog::store::Log;
use tasklog::wal::{Lsn, Ticket, TruncateReport, WalStats};
pub struct Nothing;
impl Log for Nothing {
    fn submit(&self, payloads: &[&[u8]]) -> tasklog::Result<Ticket> {
        Ok(Ticket::new(1, payloads.len() as Lsn))
    }
    fn wait_durable(&self, _: Lsn) -> tasklog::Result<()> {
        Err(tasklog::Error::io(\"wait\", \"nowhere\", std::io::Error::other(\"no log\")))
    }
    fn replay(&self, _: Lsn, _: &mut dyn FnMut(Lsn, &[u8]) -> tasklog::Result<()>) -> tasklog::Result<u64> {
        Ok(0)
    }
    fn truncate_before(&self, _: Lsn) -> tasklog::Result<TruncateReport> {
        Ok(TruncateReport { segments_removed: 0, bytes_removed: 0 })
    }
    fn sync(&self) -> tasklog::Result<()> { Ok(()) }
    fn next_lsn(&self) -> Lsn { 1 }
    fn durable_lsn(&self) -> Lsn { 0 }
    fn first_lsn(&self) -> Lsn { 1 }
    fn stats(&self) -> WalStats {
        let mut s = WalStats::default();
        s.next_lsn = 1;
        s
    }
    fn close(&self) -> tasklog::Result<()> { Ok(()) }
}
pub fn open(dir: &std::path::Path) -> tasklog::Result<tasklog::Store> {
    tasklog::StoreOptions::new().open_with_log(dir, std::sync::Arc::new(Nothing))
}
";

fn probe(dir: &Path, name: &str, paths: &[&str], extra: &str) -> (bool, String) {
    let crate_dir = dir.join(name);
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[workspace]\n\n[dependencies]\n\
             tasklog = {{ package = \"tasklog-core\", path = {root:?}, default-features = false }}\n"
        ),
    )
    .unwrap();
    // NOTE: the workspace's lock file pins the same dependency versions, so the artifacts in
    // the shared target directory are reused and nothing is resolved from the network.
    std::fs::copy(
        Path::new(root).join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap();
    let mut src = String::from("#![allow(unused_imports)]\n");
    for p in paths {
        src.push_str(&format!("use {p};\n"));
    }
    src.push_str(extra);
    std::fs::write(crate_dir.join("src/lib.rs"), src).unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(root).join("target"))
        .join("public-api-probe");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .arg("check")
        .arg("--offline")
        .arg("--quiet")
        .arg("--message-format=short")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("should run cargo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_public_surface_compiles_without_the_testing_feature_and_internals_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    // A user can build and run a store with the public paths alone, including the in-memory
    // store the CLI's dry runs use.
    let (ok, stderr) = probe(
        tmp.path(),
        "public-probe",
        PUBLIC,
        "pub fn run() -> tasklog::Result<()> {\n\
         let store = StoreOptions::new().in_memory().open(\"/probe\")?;\n\
         store.submit(NewTask::new(\"t\"))?;\n\
         Ok(())\n}\n",
    );
    assert!(ok, "public paths must compile without `testing`:\n{stderr}");

    // A dependent crate can implement `store::Log` (issue #22) and open a store over it: every
    // type in the trait's signatures is constructible without `testing`.
    let (ok, stderr) = probe(tmp.path(), "custom-log-probe", &[], CUSTOM_LOG);
    assert!(ok, "public paths must compile without `testing`:\n{stderr}");

    let (ok, stderr) = probe(tmp.path(), "internal-probe", INTERNAL, FORGERIES);
    assert!(!ok, "internals compiled without `testing`");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error[")).collect();
    for path in INTERNAL {
        let last = path.rsplit("::").next().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("`{last}`")) && is_unreachable(e)),
            "{path} is reachable without `testing`:\n{stderr}"
        );
    }
    let forgeries = errors
        .iter()
        .filter(|e| e.contains("tuple variant `Import` is private") || e.contains("E0639"))
        .count();
    assert_eq!(forgeries, 3, "a history forgery compiled:\n{stderr}");
    assert_eq!(
        errors.len(),
        INTERNAL.len() + 3,
        "one error per internal path, and no other:\n{stderr}"
    );
}

fn is_unreachable(error: &str) -> bool {
    error.contains("E0603") || error.contains("E0432")
}
