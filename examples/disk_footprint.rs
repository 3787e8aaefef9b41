//! Disk footprint of a store with default options (issue #20): writes TASKS completed tasks of
//! five events each (submit with a TEXT-byte title, start, two progress steps, complete), in
//! blocks of 1,000 through `write_batch`, closes the store, and prints what each kind of file
//! takes on disk (allocated blocks, which is what a user's `du` shows, and apparent length).
//! Also prints the footprint of a new, empty store.
//! `cargo run --release --example disk_footprint -- DIR [TASKS] [TEXT]` (defaults 200,000
//! tasks, 40 bytes; DIR must not exist).

use std::collections::BTreeMap;
use std::path::Path;

use tasklog::NewTask;
use tasklog::StoreOptions;
use tasklog::store::mutation::{Change, Mutation};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: disk_footprint DIR [TASKS] [TEXT]");
    let tasks: usize = args.next().map_or(200_000, |t| t.parse().expect("TASKS"));
    let text_len: usize = args.next().map_or(40, |t| t.parse().expect("TEXT"));
    let text = "x".repeat(text_len);

    let store = StoreOptions::new().open(&dir).expect("open");
    report("new store", Path::new(&dir), 0);
    let ids: Vec<String> = (0..tasks).map(|i| format!("task-{i:07}")).collect();
    for block in ids.chunks(1000) {
        for step in 0..5u32 {
            let ops = block.iter().map(|id| mutation(step, id, &text)).collect();
            store.write_batch(ops).expect("write");
        }
    }
    store.close().expect("close");
    report("after close", Path::new(&dir), tasks);
}

fn mutation(step: u32, id: &str, text: &str) -> Mutation {
    let change = match step {
        0 => return Mutation::submit(NewTask::new(text).id(id)),
        1 => Change::Start {
            owner: None,
            lease_ms: None,
        },
        2 | 3 => Change::Progress {
            percent: (step as u8 - 1) * 40,
            step: None,
            message: None,
        },
        _ => Change::Complete { result: None },
    };
    Mutation::new(id, change)
}

/// Prints allocated and apparent bytes per kind of file (by extension) under `dir`.
fn report(label: &str, dir: &Path, tasks: usize) {
    let mut kinds: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = name
                .rsplit_once('.')
                .map_or(name.clone(), |(_, e)| e.to_string());
            let k = kinds.entry(kind).or_default();
            k.0 += 1;
            k.1 += allocated_bytes(&meta);
            k.2 += meta.len();
        }
    }
    let total: u64 = kinds.values().map(|k| k.1).sum();
    println!("{label}: {total} bytes allocated");
    for (kind, (n, alloc, len)) in &kinds {
        println!("  {kind:>10}: {n:>3} files, {alloc:>12} allocated, {len:>12} apparent");
    }
    if tasks > 0 {
        println!(
            "  per 1,000 tasks: {:.3} MB allocated",
            total as f64 / tasks as f64 * 1000.0 / 1e6
        );
    }
}

/// Bytes the file system allocated to a file: its blocks on Unix (a preallocated or sparse
/// file differs from its length), its length elsewhere.
#[cfg(unix)]
fn allocated_bytes(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated_bytes(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}
