//! Opens a store and prints how long it took and what the recovery report says. Useful for
//! profiling open: `cargo run --release --example open_store -- DIR [--read-only] [--skip-drop]
//! [--snapshot] [--figures]`. With `--snapshot`, takes a snapshot after the open (to make the
//! snapshot case of a store written by `bulk_store` without the CLI). With `--figures`, times
//! the runtime's recovery figures (what `GET /v1/stats` computes) twice, then the runtime's
//! health (what `tasklog stats` computes) once.

use std::time::Instant;

use tasklog::store::StoreOptions;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: open_store DIR [--read-only] [--skip-drop]");
    let flags: Vec<String> = args.collect();
    let read_only = flags.iter().any(|a| a == "--read-only");
    // For profiling open alone: leave without dropping the store (no clean close).
    let skip_drop = flags.iter().any(|a| a == "--skip-drop");
    let started = Instant::now();
    let store = StoreOptions::new()
        .read_only(read_only)
        .open(&dir)
        .expect("open");
    let took = started.elapsed();
    let r = store.recovery_report();
    println!(
        "opened {} tasks in {:.3} s: {} events replayed, snapshot {:?}",
        store.len(),
        took.as_secs_f64(),
        r.events_replayed,
        r.snapshot_used
    );
    // Resident memory now that the store is open (Linux only): what a long-running process
    // keeps, as opposed to the peak during open that `/usr/bin/time` reports.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:"))
    {
        println!("resident after open: {}", line["VmRSS:".len()..].trim());
    }
    if flags.iter().any(|a| a == "--snapshot") {
        let info = store.snapshot().expect("snapshot");
        println!("snapshot taken: {info:?}");
    }
    if flags.iter().any(|a| a == "--figures") {
        for round in 1..=2 {
            let started = Instant::now();
            let f = tasklog::runtime::recovery_figures(&store, tasklog::task::Timestamp::now())
                .expect("figures");
            println!(
                "recovery figures #{round} in {:.3} s: {} attempts in 24 h",
                started.elapsed().as_secs_f64(),
                f.total_recovery_attempts_24h
            );
        }
        let started = Instant::now();
        let h = tasklog::runtime::health_from_store(&store).expect("health");
        println!(
            "runtime health (tasklog stats) in {:.3} s: {} recovered",
            started.elapsed().as_secs_f64(),
            h.recovered.values().sum::<u64>()
        );
    }
    if skip_drop {
        std::process::exit(0);
    }
}
