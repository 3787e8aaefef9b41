#!/usr/bin/env python3
"""Mutation testing in the working tree, with incremental builds (issue #23).

cargo-mutants builds each mutant in a fresh copy of the tree, which on a 2-core machine costs
60-90 s a mutant. This script takes the same mutants from cargo-mutants (`--list --json
--diff`), applies each one to the tree itself, runs the chosen tests (first once on the unmutated tree, which must pass) with an incremental debug
build (a few seconds when only one file of the library changed), and restores the file with
`git checkout`. Verdicts mean what they mean for cargo-mutants: CAUGHT (the tests failed),
MISSED (they passed), TIMEOUT (they ran past --timeout: counted as caught), UNVIABLE (the mutant
does not compile).

cargo-mutants follows `mod` items, not macro calls, so it lists nothing in a module declared
through `testing_pub_mod!`; for the listing only, this script rewrites those declarations as
plain `pub mod`s and restores them right after (the diffs it applies are to the module files
themselves, which that rewrite does not touch).

Run it in a clean checkout that nothing else is building (a scratch worktree with its own
CARGO_TARGET_DIR): it refuses to start if `src/` has uncommitted changes, and stopping it
mid-run can leave a mutant in place (`git checkout -- src` restores the tree).

    scripts/mutants_in_tree.py -f src/store/commit.rs -o /tmp/m/commit.txt \
        -- --test store_commit_mutation_kills --test import_staged

A workspace crate's files need its package named, for the listing (`-p`) and the tests:

    scripts/mutants_in_tree.py -p tasklog-server -f crates/server/src/state.rs \
        -- -p tasklog-server --test tasks
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

MACRO_DECL = re.compile(r"^testing_pub_mod!\((\w+)\);", re.M)


def git(*args, **kw):
    return subprocess.run(["git", *args], check=True, text=True, capture_output=True, **kw)


def list_mutants(files, packages):
    """The mutants cargo-mutants finds in `files` (of `packages`, the root package when none),
    with `testing_pub_mod!` modules visible."""
    rewritten = []
    for root, _, names in os.walk("src"):
        for name in names:
            path = os.path.join(root, name)
            if not path.endswith(".rs"):
                continue
            text = open(path, encoding="utf-8").read()
            if MACRO_DECL.search(text):
                new = MACRO_DECL.sub(
                    r"#[allow(dead_code, unused_imports, unreachable_pub)] pub mod \1;", text
                )
                open(path, "w", encoding="utf-8").write(new)
                rewritten.append(path)
    try:
        cmd = ["cargo", "mutants", "--list", "--json", "--diff"]
        for p in packages:
            cmd += ["-p", p]
        for f in files:
            cmd += ["-f", f]
        out = subprocess.run(cmd, check=True, text=True, capture_output=True).stdout
    finally:
        if rewritten:
            git("checkout", "--", *rewritten)
    return json.loads(out)


def run_tests(test_args, timeout):
    """(verdict, seconds) for one mutant already applied to the tree."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["cargo", "test", "-q", *test_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "TIMEOUT", time.monotonic() - start
    took = time.monotonic() - start
    if proc.returncode == 0:
        return "MISSED", took
    if "could not compile" in out or "error[E" in out:
        return "UNVIABLE", took
    return "CAUGHT", took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-f", "--file", action="append", required=True, help="source file to mutate")
    ap.add_argument(
        "-p", "--package", action="append", default=[],
        help="workspace package the files belong to (e.g. tasklog-server); default the root",
    )
    ap.add_argument("--re", help="only mutants whose name matches")
    ap.add_argument("--exclude-re", help="leave out mutants whose name matches")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per test run")
    ap.add_argument("-o", "--output", help="also write the verdicts to this file")
    ap.add_argument("test_args", nargs="*", help="arguments for `cargo test` (after --)")
    a = ap.parse_args()

    if git("status", "--porcelain", "--", "src", "crates").stdout.strip():
        sys.exit("src/ or crates/ has uncommitted changes: run this in a clean checkout")
    mutants = list_mutants(a.file, a.package)
    if a.re:
        mutants = [m for m in mutants if re.search(a.re, m["name"])]
    if a.exclude_re:
        mutants = [m for m in mutants if not re.search(a.exclude_re, m["name"])]
    out = open(a.output, "w", encoding="utf-8") if a.output else None
    counts = {}
    began = time.monotonic()
    # The unmutated tree must pass: otherwise every mutant would count as caught (a `--test`
    # naming a file that does not exist once made a whole run "caught in 0 s").
    # Built first without a time limit: a first build takes longer than a mutant's test run.
    subprocess.run(["cargo", "test", "-q", "--no-run", *a.test_args], check=True)
    verdict, took = run_tests(a.test_args, a.timeout)
    if verdict != "MISSED":
        sys.exit(f"the tests do not pass on the unmutated tree ({verdict.lower()}, {took:.0f} s)")
    print(f"baseline passes in {took:.0f} s", flush=True)
    print(f"{len(mutants)} mutants; tests: cargo test {' '.join(a.test_args)}", flush=True)
    for m in mutants:
        patch = subprocess.run(
            ["patch", "-s", "--no-backup-if-mismatch", m["file"]],
            input=m["diff"],
            text=True,
            capture_output=True,
        )
        if patch.returncode != 0:
            verdict, took = "PATCH-FAILED", 0.0
        else:
            try:
                verdict, took = run_tests(a.test_args, a.timeout)
            finally:
                git("checkout", "--", m["file"])
        counts[verdict] = counts.get(verdict, 0) + 1
        line = f"{verdict:8} {m['name']} ({took:.0f} s)"
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()
    summary = ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
    line = f"{len(mutants)} mutants in {time.monotonic() - began:.0f} s: {summary}"
    print(line)
    if out:
        out.write(line + "\n")


if __name__ == "__main__":
    main()
