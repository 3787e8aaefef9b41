//! Single durable writer: the log's `append` against a raw `write(128 B) + fdatasync` on a
//! preallocated file, interleaved op by op so both see the same (shared, noisy) disk. Prints
//! both rates and their ratio. `cargo run --release --example wal_vs_raw_fsync [ops]`.

//! Linux only (the raw side preallocates with `fallocate`).

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};
    use tasklog::wal::{Wal, WalOptions};
    pub fn main() {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("raw"))
            .unwrap();
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, 256 << 20).unwrap();
        file.sync_all().unwrap();
        let (wal, _) = Wal::open(dir.path().join("wal"), WalOptions::default()).unwrap();
        let rec = [0x5au8; 128];
        let (mut raw, mut log) = (Duration::ZERO, Duration::ZERO);
        let n: u64 = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(3000);
        for i in 0..n {
            let t = Instant::now();
            file.write_all_at(&rec, i * 128).unwrap();
            file.sync_data().unwrap();
            raw += t.elapsed();
            let t = Instant::now();
            wal.append(&rec).unwrap();
            log += t.elapsed();
        }
        println!(
            "raw {:.0}/s wal {:.0}/s ratio {:.3}",
            n as f64 / raw.as_secs_f64(),
            n as f64 / log.as_secs_f64(),
            raw.as_secs_f64() / log.as_secs_f64()
        );
        println!("log fsync latency: {:?}", wal.stats().fsync_latency);
    }
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("wal_vs_raw_fsync runs on Linux only");
}
