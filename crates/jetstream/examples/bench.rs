//! W1 (shared/benchmark-workloads.md: one writer, each event durable before the next) through
//! this log, against raw JetStream publishes with awaited acks, in the same run, on the same
//! freshly started 3-node cluster (`sync_interval: always`, 3 replicas, file storage).
//!
//! ```sh
//! NATS_SERVER_BIN=$(which nats-server) cargo run --release -p tasklog-jetstream --example bench -- --events 3000 --reps 2
//! ```
//!
//! W2 (T = 8 and 32 writers) compares raw publishes (T tasks) with `Store::submit` from T
//! threads (the store pipelines their batches into the stream).
//!
//! Three W1 rows, interleaved `reps` times (each on a stream of its own): `raw` publishes a
//! 160-byte message and awaits its ack (async-nats, on a tokio runtime); `log` submits one
//! 160-byte record through `JetStreamLog` and waits for it to be durable; `store` submits one
//! task through a store opened over `JetStreamLog` (what an application sees).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tasklog::store::Log;
use tasklog::{NewTask, StoreOptions};

const RECORD_BYTES: usize = 160;

struct Sample {
    name: &'static str,
    events: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Sample {
    fn row(&mut self) -> String {
        self.lat.sort();
        let pct = |p: f64| {
            let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
            self.lat.get(i).copied().unwrap_or_default()
        };
        format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            self.name,
            self.events as f64 / self.elapsed.as_secs_f64(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        )
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The raw baseline's stream (3 replicas, file storage) and its subject.
async fn raw_stream(urls: &str, stream: &str) -> (async_nats::jetstream::Context, String) {
    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>())
        .await
        .expect("should connect");
    let js = async_nats::jetstream::new(client);
    let subject = format!("raw.{stream}");
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream.to_string(),
        subjects: vec![subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("should create the raw stream");
    (js, subject)
}

fn raw(urls: &str, stream: &str, events: usize) -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("should build a runtime");
    rt.block_on(async {
        let (js, subject) = raw_stream(urls, stream).await;
        let payload = bytes::Bytes::from(vec![7u8; RECORD_BYTES]);
        let mut lat = Vec::with_capacity(events);
        let start = Instant::now();
        for _ in 0..events {
            let t = Instant::now();
            js.publish(subject.clone(), payload.clone())
                .await
                .expect("should publish")
                .await
                .expect("should be acked");
            lat.push(t.elapsed());
        }
        Sample {
            name: "raw JetStream publish + awaited ack",
            events,
            elapsed: start.elapsed(),
            lat,
        }
    })
}

fn log(cluster: &support::Cluster, stream: &str, events: usize) -> Sample {
    let log = cluster.open(cluster.options(stream));
    let record = vec![7u8; RECORD_BYTES];
    let mut lat = Vec::with_capacity(events);
    let start = Instant::now();
    for _ in 0..events {
        let t = Instant::now();
        let ticket = log.submit(&[&record]).expect("should submit");
        log.wait_durable(ticket.last_lsn())
            .expect("should be durable");
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    log.close().expect("should close");
    Sample {
        name: "JetStreamLog submit + wait_durable",
        events,
        elapsed,
        lat,
    }
}

fn store(cluster: &support::Cluster, stream: &str, events: usize) -> Sample {
    let dir = tempfile::tempdir().expect("should make a directory");
    let store = StoreOptions::default()
        .open_with_log(dir.path(), Arc::new(cluster.open(cluster.options(stream))))
        .expect("should open the store");
    let mut lat = Vec::with_capacity(events);
    let start = Instant::now();
    for _ in 0..events {
        let t = Instant::now();
        store.submit(NewTask::new("bench")).expect("should submit");
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    store.close().expect("should close");
    Sample {
        name: "Store::submit over JetStreamLog",
        events,
        elapsed,
        lat,
    }
}

/// W2: `threads` writers, each with its share of `events`, each append durable before that
/// writer's next; the clock runs from the start to the last writer's end.
fn raw_w2(urls: &str, stream: &str, events: usize, threads: usize) -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("should build a runtime");
    rt.block_on(async {
        let (js, subject) = raw_stream(urls, stream).await;
        let payload = bytes::Bytes::from(vec![7u8; RECORD_BYTES]);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..threads {
            let (js, subject, payload) = (js.clone(), subject.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for _ in 0..events / threads {
                    let t = Instant::now();
                    js.publish(subject.clone(), payload.clone())
                        .await
                        .expect("should publish")
                        .await
                        .expect("should be acked");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("should join"));
        }
        Sample {
            name: "raw JetStream publish + awaited ack",
            events: lat.len(),
            elapsed: start.elapsed(),
            lat,
        }
    })
}

fn store_w2(cluster: &support::Cluster, stream: &str, events: usize, threads: usize) -> Sample {
    let dir = tempfile::tempdir().expect("should make a directory");
    let store = Arc::new(
        StoreOptions::default()
            .open_with_log(dir.path(), Arc::new(cluster.open(cluster.options(stream))))
            .expect("should open the store"),
    );
    let start = Instant::now();
    let writers: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                for _ in 0..events / threads {
                    let t = Instant::now();
                    store.submit(NewTask::new("bench")).expect("should submit");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for w in writers {
        lat.extend(w.join().expect("should join"));
    }
    let elapsed = start.elapsed();
    store.close().expect("should close");
    Sample {
        name: "Store::submit over JetStreamLog",
        events: lat.len(),
        elapsed,
        lat,
    }
}

fn main() {
    let events = arg("--events", 3000);
    let reps = arg("--reps", 2);
    let Some(cluster) = support::cluster_or_skip("bench") else {
        std::process::exit(2);
    };
    // Waits out the cluster's first leader elections (the log's open retries) before timing.
    cluster
        .open(cluster.options("WARMUP"))
        .close()
        .expect("should close");
    println!("W1, {events} events a run, {reps} runs each, 3-node cluster on loopback");
    println!("| system | ev/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for rep in 0..reps {
        println!(
            "{}",
            raw(&cluster.urls(), &format!("RAW{rep}"), events).row()
        );
        println!("{}", log(&cluster, &format!("LOG{rep}"), events).row());
        println!("{}", store(&cluster, &format!("STORE{rep}"), events).row());
    }
    for threads in [8, 32] {
        println!("\nW2, T = {threads}, {events} events a run");
        println!("| system | ev/s | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|");
        for rep in 0..reps {
            let raw = format!("RAWT{threads}R{rep}");
            println!("{}", raw_w2(&cluster.urls(), &raw, events, threads).row());
            let store = format!("STORET{threads}R{rep}");
            println!("{}", store_w2(&cluster, &store, events, threads).row());
        }
    }
}
