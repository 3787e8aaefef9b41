//! Writes the W3/W4 workload of `benches/compare` through the public store API (200,000 tasks,
//! 1,000,000 events, buffered, one sync at the end) and prints the time. With
//! `open_store DIR` it makes a quick profiling loop for the write and open paths:
//! `cargo run --release --example bulk_store -- DIR [TASKS] [--batch]`. With `--batch`, each
//! step of a block (1,000 operations) is one `Store::write_batch`.

use std::time::Instant;

use tasklog::store::mutation::{Change, Mutation};
use tasklog::wal::Durability;
use tasklog::{NewTask, StoreOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: bulk_store DIR [TASKS]");
    let rest: Vec<String> = args.collect();
    let batched = rest.iter().any(|a| a == "--batch");
    let tasks: usize = rest
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(200_000, |t| t.parse().expect("TASKS"));
    let ids: Vec<String> = (0..tasks).map(|i| i.to_string()).collect();
    let text = "x".repeat(100);
    let store = StoreOptions::new()
        .durability(Durability::Buffered)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open(&dir)
        .expect("open");
    let started = Instant::now();
    // Blocks of 1,000 running tasks, each getting its five events in turn (as in W3).
    for block in ids.chunks(1000) {
        for step in 0..5u32 {
            if batched {
                let ops = block
                    .iter()
                    .enumerate()
                    .map(|(i, id)| mutation(step, i, id, &text))
                    .collect();
                store.write_batch(ops).expect("write");
                continue;
            }
            for (i, id) in block.iter().enumerate() {
                match step {
                    0 => store.submit(NewTask::new(text.as_str()).id(id.as_str())),
                    1 => store.start(id),
                    2 | 3 => store.progress(id, (step as u8 - 1) * 40, None, Some(&text)),
                    _ => match i % 10 {
                        0 => store.cancel(id, Some(&text)),
                        1 | 2 => store.fail(id, &text),
                        _ => store.complete(id, None),
                    },
                }
                .expect("write");
            }
        }
    }
    // Close makes everything durable (one fdatasync), as W3 requires.
    store.close().expect("close");
    let took = started.elapsed();
    println!(
        "wrote {} events in {:.3} s: {:.0} events/s",
        tasks * 5,
        took.as_secs_f64(),
        (tasks * 5) as f64 / took.as_secs_f64()
    );
}

/// Step `step` of task `id` (the `i`th of its block) as a mutation.
fn mutation(step: u32, i: usize, id: &str, text: &str) -> Mutation {
    let change = match step {
        0 => return Mutation::submit(NewTask::new(text).id(id)),
        1 => Change::Start {
            owner: None,
            lease_ms: None,
        },
        2 | 3 => Change::Progress {
            percent: (step as u8 - 1) * 40,
            step: None,
            message: Some(text.to_string()),
        },
        _ => match i % 10 {
            0 => Change::Cancel {
                reason: Some(text.to_string()),
            },
            1 | 2 => Change::Fail {
                error: text.to_string(),
            },
            _ => Change::Complete { result: None },
        },
    };
    Mutation::new(id, change)
}
