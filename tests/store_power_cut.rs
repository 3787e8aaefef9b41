//! Power cuts under load, on the simulated disk. Each seeded run opens a store on `SimStorage`
//! with small segments, runs concurrent writers (single mutations and 3-event atomic batches),
//! takes snapshots (which compact the log) and sometimes injects a failing fsync, then cuts the
//! power at a random moment (keeping only synced bytes, or also a torn prefix of unsynced
//! writes at 512 B / 4 KiB). After reopening the crash image:
//! - every event acknowledged before the cut is present, at its LSN, exactly once;
//! - every batch is all or nothing (a task created by a batch has all three of its events);
//! - LSNs are unique and increase along each history;
//! - the recovered store accepts writes and reopens again.
//!
//! CI runs `TASKLOG_POWER_CUT_SEEDS` seeds (default 150); `TASKLOG_SEED=n` reruns one seed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tasklog::store::{Change, InterruptedPolicy, Mutation, Store, StoreOptions};
use tasklog::task::NewTask;
use tasklog::wal::sim::SimStorage;

#[derive(Clone, Debug)]
struct Ack {
    task: String,
    lsn: u64,
    kind: &'static str,
}

fn options(sim: &SimStorage, segment_bytes: u64) -> StoreOptions {
    StoreOptions::new()
        .storage(Arc::new(sim.clone()))
        .segment_bytes_max(segment_bytes)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .snapshots_kept(2)
        .interrupted_policy(InterruptedPolicy::Leave)
}

/// One writer thread: a seeded mix of lifecycles and batches, recording every acknowledgement.
fn writer(
    store: &Store,
    seed: u64,
    thread: usize,
    acks: &Mutex<Vec<Ack>>,
    acked: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut rng = fastrand::Rng::with_seed(seed ^ (thread as u64 * 0x9E37_79B9));
    let mut mine: Vec<String> = Vec::new();
    for n in 0..60 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let record = |task: &str, lsn: u64, kind: &'static str| {
            acks.lock().push(Ack {
                task: task.to_string(),
                lsn,
                kind,
            });
            acked.fetch_add(1, Ordering::Release);
        };
        if rng.u8(0..4) == 0 {
            let id = format!("b{thread}-{n}");
            let batch = vec![
                Mutation::submit(NewTask::new("batched").id(&id)),
                Mutation::new(
                    &id,
                    Change::Start {
                        owner: None,
                        lease_ms: None,
                    },
                ),
                Mutation::new(
                    &id,
                    Change::Progress {
                        percent: 10,
                        step: None,
                        message: None,
                    },
                ),
            ];
            if let Ok(out) = store.batch(batch) {
                let last = out[2].last_lsn;
                record(&id, last - 2, "created");
                record(&id, last - 1, "started");
                record(&id, last, "progress");
            }
            continue;
        }
        if mine.is_empty() || rng.u8(0..3) == 0 {
            let id = format!("t{thread}-{n}");
            if let Ok(t) = store.submit(NewTask::new(format!("task {n}")).id(&id)) {
                record(&id, t.last_lsn, "created");
                mine.push(id);
            }
            continue;
        }
        let id = mine[rng.usize(0..mine.len())].clone();
        let (result, kind) = match rng.u8(0..5) {
            0 => (store.start(&id), "started"),
            1 => (
                store.progress(&id, rng.u8(0..=100), Some("s"), None),
                "progress",
            ),
            2 => (store.complete(&id, None), "completed"),
            3 => (store.fail(&id, "boom"), "failed"),
            _ => (store.retry(&id), "retried"),
        };
        if let Ok(t) = result {
            record(&id, t.last_lsn, kind);
        }
    }
}

fn run_seed(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sim = SimStorage::new(seed);
    sim.set_torn_crash([None, Some(512), Some(4096)][rng.usize(0..3)]);
    let segment_bytes = [4096u64, 8192, 1 << 20][rng.usize(0..3)];
    let store = options(&sim, segment_bytes).open("/db").unwrap();
    if rng.u8(0..4) == 0 {
        sim.fail_nth_sync(rng.u64(5..120));
    }
    let acks = Mutex::new(Vec::new());
    let acked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let threads = rng.usize(1..=4);
    let cut_after = rng.u64(0..120);
    let (image, known) = std::thread::scope(|s| {
        for t in 0..threads {
            let (store, acks, acked, stop, finished) = (&store, &acks, &acked, &stop, &finished);
            s.spawn(move || {
                writer(store, seed, t, acks, acked, stop);
                finished.fetch_add(1, Ordering::Release);
            });
        }
        let mut snapshots = 0;
        loop {
            let n = acked.load(Ordering::Acquire);
            if n >= cut_after || (n > 0 && rng.u8(0..200) == 0) {
                break;
            }
            if snapshots < 3 && rng.u8(0..40) == 0 {
                let _ = store.snapshot();
                snapshots += 1;
            }
            std::thread::yield_now();
            if finished.load(Ordering::Acquire) == threads {
                break;
            }
        }
        // Everything in `acks` now was acknowledged before the cut.
        let known: Vec<Ack> = acks.lock().clone();
        let image = sim.crash();
        stop.store(true, Ordering::Relaxed);
        (image, known)
    });
    drop(store);
    verify(seed, &image, segment_bytes, &known);
}

fn verify(seed: u64, image: &SimStorage, segment_bytes: u64, known: &[Ack]) {
    let ctx = |what: String| {
        format!(
            "seed {seed}: {what} (rerun: TASKLOG_SEED={seed} cargo test --release --test store_power_cut)"
        )
    };
    let store = options(image, segment_bytes)
        .open("/db")
        .unwrap_or_else(|e| panic!("{}", ctx(format!("reopen failed: {e}"))));
    let mut histories: HashMap<String, Vec<(u64, &'static str)>> = HashMap::new();
    let mut all_lsns = HashSet::new();
    let mut ids: Vec<String> = store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.extend(known.iter().map(|a| a.task.clone()));
    ids.sort();
    ids.dedup();
    for id in &ids {
        let Ok(h) = store.history(id) else { continue };
        assert!(
            h.windows(2).all(|w| w[0].lsn < w[1].lsn),
            "{}",
            ctx(format!("history of {id} out of order"))
        );
        for e in &h {
            assert!(
                all_lsns.insert(e.lsn),
                "{}",
                ctx(format!("LSN {} appears twice", e.lsn))
            );
        }
        if id.starts_with('b') {
            let kinds: Vec<&str> = h.iter().take(3).map(|e| e.kind).collect();
            assert_eq!(
                kinds,
                ["created", "started", "progress"],
                "{}",
                ctx(format!("batch {id} is partial"))
            );
        }
        histories.insert(id.clone(), h.iter().map(|e| (e.lsn, e.kind)).collect());
    }
    for a in known {
        let found = histories
            .get(&a.task)
            .is_some_and(|h| h.contains(&(a.lsn, a.kind)));
        assert!(
            found,
            "{}",
            ctx(format!(
                "acknowledged {} of {} at LSN {} is missing",
                a.kind, a.task, a.lsn
            ))
        );
    }
    let t = store
        .submit(NewTask::new("after the crash"))
        .unwrap_or_else(|e| panic!("{}", ctx(format!("write after recovery: {e}"))));
    store.close().unwrap();
    drop(store);
    let again = options(image, segment_bytes).open("/db").unwrap();
    assert!(
        again.get(&t.id).is_ok(),
        "{}",
        ctx("the post-crash write was lost".into())
    );
}

#[test]
fn acknowledged_events_survive_power_cuts() {
    if let Ok(seed) = std::env::var("TASKLOG_SEED") {
        run_seed(seed.parse().expect("TASKLOG_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("TASKLOG_POWER_CUT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    for seed in 0..seeds {
        run_seed(seed);
    }
}
