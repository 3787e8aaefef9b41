//! Runs `tasklog verify`'s checks ([`tasklog::store::verify::verify`], what the CLI command
//! calls) on a store and prints the time, the summary and the resident memory at the end.
//! With `/usr/bin/time -v` it gives the peak RSS and wall time of docs/benchmarks.md
//! ("#20: verify"): `cargo run --release --example verify_store -- DIR`.
//! Build the 1,000,000-task store with `examples/bulk_store DIR 1000000 --batch`.

use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: verify_store DIR");
    let started = Instant::now();
    let report = tasklog::store::verify::verify(std::path::Path::new(&dir), &mut |phase| {
        eprintln!("{:>8.3} s  {phase}", started.elapsed().as_secs_f64());
    })
    .expect("verify");
    println!(
        "verified in {:.3} s: ok {}, {} problem(s), replay {:?}",
        started.elapsed().as_secs_f64(),
        report.ok,
        report.problems.len(),
        report.replay
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
    {
        println!("peak resident (VmHWM): {}", line["VmHWM:".len()..].trim());
    }
}
