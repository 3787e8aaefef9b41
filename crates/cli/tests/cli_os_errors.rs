//! Goal (issue 17): an OS error is one sentence naming the path, what failed and what to do,
//! with the OS error once. Method: real directories: `--dir` naming a file (for a write and a
//! read command), and a mode-700 store of another user opened as `nobody` through `setpriv`
//! (needs root; skipped with a notice without it, a failure under `TASKLOG_REQUIRE_EXTRAS=1`).

#![cfg(target_os = "linux")]

mod cli_support;

use std::os::unix::fs::PermissionsExt;

use cli_support::{exe, fails, ok};

fn once(haystack: &str, needle: &str) -> bool {
    haystack.matches(needle).count() == 1
}

#[test]
fn dir_naming_a_file_says_so_once() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("afile");
    std::fs::write(&f, "x").unwrap();
    let err = fails(&f, &["submit", "--title", "x"], 1);
    assert!(once(&err, "File exists (os error 17)"), "{err}");
    assert!(err.contains("a file is in the way"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = fails(&f, &["list"], 1);
    assert!(err.contains("is a file, not a directory"), "{err}");
}

#[test]
fn another_users_private_store_is_permission_denied_not_missing() {
    let root = rustix::process::geteuid().is_root();
    let setpriv = std::process::Command::new("setpriv")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !setpriv {
        let msg = "cli_os_errors: needs root and setpriv to act as another user; test skipped";
        if std::env::var_os("TASKLOG_REQUIRE_EXTRAS").is_some_and(|v| v == "1") {
            panic!("{msg}, but TASKLOG_REQUIRE_EXTRAS=1");
        }
        eprintln!("{msg}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    let store = private.join("store");
    ok(&store, &["submit", "--title", "x"]);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(exe())
            .arg("--dir")
            .arg(&store)
            .args(args)
            .env_remove("TASKLOG_DIR")
            .env_remove("TASKLOG_REMOTE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody(&["list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("holds no tasklog store"), "{err}");
    assert!(once(&err, "Permission denied (os error 13)"), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    let (code, err) = as_nobody(&["submit", "--title", "y"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(once(&err, "Permission denied (os error 13)"), "{err}");
    assert!(err.contains("give this user access"), "{err}");
}

/// A store on a read-only volume: a writer's open fails in one sentence naming the path, the OS
/// error once and what to do; reads of the existing store still work. Method: a real tmpfs with
/// a store, remounted read-only (needs root; skipped with a notice, a failure under
/// `TASKLOG_REQUIRE_EXTRAS=1`).
#[test]
fn a_read_only_volume_is_named_as_such() {
    let parent = tempfile::tempdir().unwrap();
    let vol = parent.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let mount = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .arg(&vol)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !mount(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"]) {
        let msg = "cli_os_errors: cannot mount a tmpfs (needs root); test skipped";
        if std::env::var_os("TASKLOG_REQUIRE_EXTRAS").is_some_and(|v| v == "1") {
            panic!("{msg}, but TASKLOG_REQUIRE_EXTRAS=1");
        }
        eprintln!("{msg}");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(vol.clone());
    let store = vol.join("store");
    let id = ok(&store, &["submit", "--title", "before"])
        .trim()
        .to_string();
    assert!(mount(&["-o", "remount,ro"]), "remount the tmpfs read-only");
    let err = fails(&store, &["--wait", "0", "submit", "--title", "after"], 1);
    assert!(once(&err, "Read-only file system (os error 30)"), "{err}");
    assert!(err.contains("mounted read-only"), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Reading needs no write: the store is still there, whole.
    let got = ok(&store, &["get", &id]);
    assert!(got.contains("before"), "{got}");
}
