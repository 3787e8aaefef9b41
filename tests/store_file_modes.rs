//! Goal: a store's files are private by default (issue #24, finding 9): every file it creates
//! is `0600` and every directory `0700`; `StoreOptions::file_mode` chooses other bits.
//!
//! Method: open a store in a fresh directory on the real file system, write, snapshot (so the
//! log, snapshot, lock and directories all exist), close, then walk the tree and check each
//! entry's mode with `PermissionsExt`. Assumes a umask that clears no owner or group bits
//! (`022`, `002` or `0`).
#![cfg(unix)] // Unix permission bits: Unix only; the cross-platform checks compile the rest.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tasklog::NewTask;
use tasklog::store::StoreOptions;

fn modes(root: &Path, out: &mut Vec<(String, bool, u32)>) {
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((e.path().display().to_string(), meta.is_dir(), mode));
        if meta.is_dir() {
            modes(&e.path(), out);
        }
    }
}

fn fill(options: StoreOptions, dir: &Path) -> Vec<(String, bool, u32)> {
    let store = options.snapshot_every_records(0).open(dir).unwrap();
    store.submit(NewTask::new("t").id("t")).unwrap();
    store.snapshot().unwrap();
    store.submit(NewTask::new("u").id("u")).unwrap();
    store.close().unwrap();
    let mut out = vec![(
        dir.display().to_string(),
        true,
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
    )];
    modes(dir, &mut out);
    assert!(out.iter().filter(|(_, d, _)| !d).count() >= 3, "{out:?}");
    assert!(out.iter().filter(|(_, d, _)| *d).count() >= 2, "{out:?}");
    out
}

#[test]
fn new_files_are_0600_and_directories_0700_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    for (path, is_dir, mode) in fill(StoreOptions::new(), &dir) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path}: mode {mode:o}, want {want:o}");
    }
}

#[test]
fn file_mode_chooses_the_bits_of_files_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    for (path, is_dir, mode) in fill(StoreOptions::new().file_mode(0o640), &dir) {
        let want = if is_dir { 0o750 } else { 0o640 };
        assert_eq!(mode, want, "{path}: mode {mode:o}, want {want:o}");
    }
}
