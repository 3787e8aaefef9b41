//! Completion of kinds (issue #21): `pause`/`resume` complete the kinds the store knows.
//! Goal: the hidden `complete-kinds` helper lists the kinds of the tasks and those with rules,
//! never writes (no store is created, an existing one is left byte for byte as it was), and the
//! bash, zsh and fish scripts ask it for `pause`/`resume` but not for `schedule pause`.
//! Method: the real binary on temporary stores; the generated bash script run in a real bash
//! with `COMP_WORDS` set as bash's completion would set them; the zsh and fish scripts checked
//! as text (those shells are not on every machine).

#[macro_use]
mod cli_support;

use cli_support::{bare, ok, submit};
use std::collections::BTreeMap;
use std::path::Path;

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn store_with_kinds(d: &Path) {
    submit(d, "a", &["--meta", "runtime.kind=mail"]);
    submit(d, "b", &["--meta", "runtime.kind=resize"]);
    submit(d, "c", &["--meta", "runtime.kind=mail"]);
    submit(d, "no kind", &[]);
    // A kind with a rule and no task yet.
    ok(d, &["pause", "billing"]);
}

#[test]
fn complete_kinds_lists_task_kinds_and_kinds_with_rules_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    store_with_kinds(&d);
    let before = files(&d);
    let out = ok(&d, &["complete-kinds"]);
    assert_eq!(out, "billing\nmail\nresize\n");
    assert_eq!(
        files(&d),
        before,
        "complete-kinds changed the store's files"
    );
    // Through $TASKLOG_DIR and with $TASKLOG_REMOTE set (as in a shell that talks to a
    // server): still the directory, read-only.
    let out = bare()
        .arg("complete-kinds")
        .env("TASKLOG_DIR", &d)
        .env("TASKLOG_REMOTE", "http://127.0.0.1:9")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap(), "billing\nmail\nresize\n");
}

#[test]
fn complete_kinds_without_a_store_prints_nothing_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("none");
    let out = bare()
        .arg("--dir")
        .arg(&d)
        .arg("complete-kinds")
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(out.stdout.is_empty());
    assert!(!d.exists(), "complete-kinds created the store directory");
}

#[cfg(unix)]
fn bash_script() -> String {
    let out = bare().args(["completions", "bash"]).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

/// What the bash completion offers for `words` (the last one being completed).
#[cfg(unix)]
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let exe = cli_support::exe();
    let mut line = vec![exe.display().to_string()];
    line.extend(words.iter().map(|w| w.to_string()));
    let quoted: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; \
         COMP_POINT=${{#COMP_LINE}}; _tasklog_with_kinds '{}' '{}' '{}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        line.len() - 1,
        line[0],
        line[line.len() - 1],
        line[line.len() - 2],
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .env_remove("TASKLOG_DIR")
        .output()
        .expect("bash should run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

// NOTE: needs a bash, which a Unix machine has.
#[cfg(unix)]
#[test]
fn bash_completes_kinds_for_pause_and_resume_only() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("store");
    store_with_kinds(&d);
    let script = tmp.path().join("tasklog.bash");
    std::fs::write(&script, bash_script()).unwrap();
    let dir = d.display().to_string();
    assert_eq!(
        bash_complete(&script, &["--dir", &dir, "pause", ""]),
        ["billing", "mail", "resize"]
    );
    assert_eq!(
        bash_complete(&script, &[&format!("--dir={dir}"), "resume", "m"]),
        ["mail"]
    );
    // Global flags with values before the subcommand are skipped.
    assert_eq!(
        bash_complete(&script, &["--wait", "3", "--dir", &dir, "pause", "r"]),
        ["resize"]
    );
    // A second positional, and `schedule pause` (schedule names), are not kinds.
    assert!(
        !bash_complete(&script, &["--dir", &dir, "pause", "mail", ""]).contains(&"billing".into())
    );
    let schedule = bash_complete(&script, &["--dir", &dir, "schedule", "pause", ""]);
    assert!(!schedule.contains(&"mail".to_string()), "{schedule:?}");
    // Other commands still complete through clap's function (bash passes the command word
    // as typed, here the binary's path, as $1).
    let list = bash_complete(&script, &["--dir", &dir, "list", "--st"]);
    assert!(list.contains(&"--state".to_string()), "{list:?}");
}

#[test]
fn zsh_and_fish_scripts_ask_complete_kinds_for_pause_and_resume() {
    let zsh = bare().args(["completions", "zsh"]).assert().success();
    let zsh = String::from_utf8(zsh.get_output().stdout.clone()).unwrap();
    assert!(zsh.starts_with("#compdef tasklog\n"), "{}", &zsh[..40]);
    // Both `pause` and `resume` (and nothing else) use the kinds function.
    assert_eq!(zsh.matches("':kind -- The kind:_tasklog_kinds'").count(), 2);
    assert!(!zsh.contains("':kind -- The kind:'"));
    assert!(zsh.contains("complete-kinds"));
    let fish = bare().args(["completions", "fish"]).assert().success();
    let fish = String::from_utf8(fish.get_output().stdout.clone()).unwrap();
    assert!(fish.contains(
        "__fish_seen_subcommand_from pause resume; and not __fish_seen_subcommand_from schedule"
    ));
    assert!(fish.contains("complete-kinds"));
}
